#include "tokenizer_json.hpp"

#include <atomic>
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>

#include <sluice/error.hpp>

#include "bpe.hpp"
#include "unigram.hpp"
#include "wordpiece.hpp"

namespace sluice::tok {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::invalid_model, "tokenizer.json: " + what); }

bool present(object o, std::string_view key) {
  auto r = o[key];
  return r.error() == simdjson::SUCCESS && !r.is_null();
}

std::string_view get_string(object o, std::string_view key, std::string_view where) {
  std::string_view v;
  if (o[key].get_string().get(v) != simdjson::SUCCESS) {
    bad(fmt::format("{}: \"{}\" is missing or not a string", where, key));
  }
  return v;
}

std::string_view get_string_or(object o, std::string_view key, std::string_view fallback) {
  std::string_view v;
  return o[key].get_string().get(v) == simdjson::SUCCESS ? v : fallback;
}

bool get_bool(object o, std::string_view key, bool fallback) {
  bool v = fallback;
  return o[key].get_bool().get(v) == simdjson::SUCCESS ? v : fallback;
}

std::uint64_t get_uint(object o, std::string_view key, std::uint64_t fallback, std::string_view where) {
  if (!present(o, key)) return fallback;
  std::uint64_t v = 0;
  if (o[key].get_uint64().get(v) != simdjson::SUCCESS) {
    bad(fmt::format("{}: \"{}\" is not a non-negative integer", where, key));
  }
  return v;
}

std::int32_t get_id(element e, std::string_view what) {
  std::int64_t id = 0;
  if (e.get_int64().get(id) != simdjson::SUCCESS || id < 0 || id > INT32_MAX) {
    bad(fmt::format("{} is not a valid token id", what));
  }
  return static_cast<std::int32_t>(id);
}

std::u32string to_u32(std::string_view utf8) {
  Symbols s;
  decode_utf8(utf8, 0, s);
  std::u32string out;
  for (const Symbol& sym : s) out.push_back(sym.c);
  return out;
}

std::string base64_decode(std::string_view in, std::string_view what) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = value(c);
    if (v < 0) bad(fmt::format("{} is not valid base64", what));
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

object as_object(element e, std::string_view what) {
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) bad(fmt::format("{} is not an object", what));
  return o;
}

// A {"String": ...} or {"Regex": ...} pattern: the literal (empty for a regex) and the regex.
std::pair<std::u32string, std::unique_ptr<Regex>> make_pattern(object o, std::string_view where) {
  object pattern;
  if (o["pattern"].get_object().get(pattern) != simdjson::SUCCESS) {
    bad(fmt::format("{}: \"pattern\" is missing or not an object", where));
  }
  std::string_view text;
  if (pattern["String"].get_string().get(text) == simdjson::SUCCESS) {
    if (text.empty()) bad(fmt::format("{}: an empty \"String\" pattern is not supported", where));
    return {to_u32(text), nullptr};
  }
  if (pattern["Regex"].get_string().get(text) == simdjson::SUCCESS)
    return {std::u32string(), std::make_unique<Regex>(text)};
  bad(fmt::format("{}: \"pattern\" is neither {{\"String\": ...}} nor {{\"Regex\": ...}}", where));
}

SplitBehavior make_behavior(object o, std::string_view where, std::string_view fallback) {
  const std::string_view b = get_string_or(o, "behavior", fallback);
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  bad(fmt::format("{}: unsupported behavior \"{}\"", where, b));
}

char32_t get_char(object o, std::string_view key, char32_t fallback, std::string_view where) {
  if (!present(o, key)) return fallback;
  const std::u32string c = to_u32(get_string(o, key, where));
  if (c.size() != 1) bad(fmt::format("{}: \"{}\" must be one character", where, key));
  return c[0];
}

std::unique_ptr<Normalizer> make_normalizer(element e) {
  if (e.is_null()) return nullptr;
  object o = as_object(e, "normalizer");
  const std::string_view type = get_string(o, "type", "normalizer");
  if (type == "BertNormalizer") {
    const bool lowercase = get_bool(o, "lowercase", true);
    // strip_accents null (the usual value) follows lowercase, as in BERT.
    const bool strip_accents = get_bool(o, "strip_accents", lowercase);
    return std::make_unique<BertNormalizer>(get_bool(o, "clean_text", true), get_bool(o, "handle_chinese_chars", true),
                                            strip_accents, lowercase);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "NFD") return std::make_unique<NfdNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "NFKD") return std::make_unique<NfkdNormalizer>();
  if (type == "NFC") return std::make_unique<NfcNormalizer>(false);
  if (type == "NFKC") return std::make_unique<NfcNormalizer>(true);
  if (type == "Replace") {
    auto [literal, regex] = make_pattern(o, "Replace normalizer");
    return std::make_unique<ReplaceNormalizer>(std::move(literal), std::move(regex),
                                               to_u32(get_string(o, "content", "Replace normalizer")));
  }
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(to_u32(get_string(o, "prepend", "Prepend normalizer")));
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(get_bool(o, "strip_left", true), get_bool(o, "strip_right", true));
  }
  if (type == "Precompiled") {
    if (!present(o, "precompiled_charsmap")) return nullptr;  // no rules: the identity
    const std::string charsmap =
        base64_decode(get_string(o, "precompiled_charsmap", "Precompiled normalizer"), "precompiled_charsmap");
    if (charsmap.empty()) return nullptr;
    return std::make_unique<PrecompiledNormalizer>(charsmap);
  }
  if (type == "Sequence") {
    array parts;
    if (o["normalizers"].get_array().get(parts) != simdjson::SUCCESS) {
      bad("Sequence normalizer without a \"normalizers\" array");
    }
    std::vector<std::unique_ptr<Normalizer>> v;
    for (element p : parts) {
      if (auto n = make_normalizer(p)) v.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(v));
  }
  bad(fmt::format("unsupported normalizer type \"{}\"", type));
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(element e) {
  if (e.is_null()) return nullptr;
  object o = as_object(e, "pre_tokenizer");
  const std::string_view type = get_string(o, "type", "pre_tokenizer");
  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(o, "add_prefix_space", true),
                                                   get_bool(o, "use_regex", true));
  }
  if (type == "Metaspace") {
    const char32_t replacement = get_char(o, "replacement", U'\u2581', "Metaspace pre_tokenizer");
    using Prepend = MetaspacePreTokenizer::Prepend;
    Prepend prepend = get_bool(o, "add_prefix_space", true) ? Prepend::kAlways : Prepend::kNever;
    if (present(o, "prepend_scheme")) {
      const std::string_view scheme = get_string(o, "prepend_scheme", "Metaspace pre_tokenizer");
      if (scheme == "always")
        prepend = Prepend::kAlways;
      else if (scheme == "first")
        prepend = Prepend::kFirst;
      else if (scheme == "never")
        prepend = Prepend::kNever;
      else
        bad(fmt::format("Metaspace pre_tokenizer: unsupported prepend_scheme \"{}\"", scheme));
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, prepend, get_bool(o, "split", true));
  }
  if (type == "Split") {
    auto [literal, regex] = make_pattern(o, "Split pre_tokenizer");
    return std::make_unique<SplitPreTokenizer>(std::move(literal), std::move(regex),
                                               make_behavior(o, "Split pre_tokenizer", ""),
                                               get_bool(o, "invert", false));
  }
  using CharSplit = CharSplitPreTokenizer;
  if (type == "Punctuation") {
    return std::make_unique<CharSplit>(CharSplit::Kind::kPunctuation,
                                       make_behavior(o, "Punctuation pre_tokenizer", "Isolated"));
  }
  if (type == "Digits") {
    return std::make_unique<CharSplit>(CharSplit::Kind::kDigits, get_bool(o, "individual_digits", false)
                                                                     ? SplitBehavior::kIsolated
                                                                     : SplitBehavior::kContiguous);
  }
  if (type == "CharDelimiterSplit") {
    return std::make_unique<CharSplit>(CharSplit::Kind::kDelimiter, SplitBehavior::kRemoved,
                                       get_char(o, "delimiter", 0, "CharDelimiterSplit pre_tokenizer"));
  }
  if (type == "Sequence") {
    array parts;
    if (o["pretokenizers"].get_array().get(parts) != simdjson::SUCCESS) {
      bad("Sequence pre_tokenizer without a \"pretokenizers\" array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> v;
    for (element p : parts) {
      if (auto n = make_pre_tokenizer(p)) v.push_back(std::move(n));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(v));
  }
  bad(fmt::format("unsupported pre_tokenizer type \"{}\"", type));
}

std::unique_ptr<Model> make_wordpiece(object o) {
  object vocab_obj;
  if (o["vocab"].get_object().get(vocab_obj) != simdjson::SUCCESS) bad("WordPiece model without a \"vocab\" object");
  Vocab vocab;
  vocab.reserve(vocab_obj.size());
  for (auto [key, value] : vocab_obj) {
    vocab.emplace(std::string(key), get_id(value, fmt::format("vocab entry \"{}\"", key)));
  }
  return std::make_unique<WordPiece>(std::move(vocab), std::string(get_string(o, "unk_token", "WordPiece model")),
                                     std::string(get_string_or(o, "continuing_subword_prefix", "##")),
                                     get_uint(o, "max_input_chars_per_word", 100, "WordPiece model"));
}

std::unique_ptr<Model> make_bpe(object o) {
  object vocab_obj;
  if (o["vocab"].get_object().get(vocab_obj) != simdjson::SUCCESS) bad("BPE model without a \"vocab\" object");
  Vocab vocab;
  vocab.reserve(vocab_obj.size());
  for (auto [key, value] : vocab_obj) {
    vocab.emplace(std::string(key), get_id(value, fmt::format("vocab entry \"{}\"", key)));
  }
  array merges_arr;
  if (o["merges"].get_array().get(merges_arr) != simdjson::SUCCESS) bad("BPE model without a \"merges\" array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_arr.size());
  for (element m : merges_arr) {
    std::string_view line;
    array pair;
    if (m.get_string().get(line) == simdjson::SUCCESS) {
      const std::size_t space = line.find(' ');
      if (space == std::string_view::npos) bad(fmt::format("BPE merge \"{}\" is not two tokens", line));
      merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
    } else if (m.get_array().get(pair) == simdjson::SUCCESS && pair.size() == 2) {
      std::string_view a, b;
      if (pair.at(0).get_string().get(a) != simdjson::SUCCESS || pair.at(1).get_string().get(b) != simdjson::SUCCESS) {
        bad("a BPE merge pair is not two strings");
      }
      merges.emplace_back(std::string(a), std::string(b));
    } else {
      bad("a BPE merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  double dropout = 0;
  if (present(o, "dropout") && (o["dropout"].get_double().get(dropout) != simdjson::SUCCESS || dropout != 0)) {
    bad("BPE dropout is not supported (it makes encoding random); set \"dropout\" to null");
  }
  Bpe::Options opt;
  if (present(o, "unk_token")) opt.unk_token = std::string(get_string(o, "unk_token", "BPE model"));
  opt.continuing_subword_prefix = std::string(get_string_or(o, "continuing_subword_prefix", ""));
  opt.end_of_word_suffix = std::string(get_string_or(o, "end_of_word_suffix", ""));
  opt.fuse_unk = get_bool(o, "fuse_unk", false);
  opt.byte_fallback = get_bool(o, "byte_fallback", false);
  opt.ignore_merges = get_bool(o, "ignore_merges", false);
  return std::make_unique<Bpe>(std::move(vocab), merges, std::move(opt));
}

std::unique_ptr<Model> make_unigram(object o) {
  array vocab_arr;
  if (o["vocab"].get_array().get(vocab_arr) != simdjson::SUCCESS) bad("Unigram model without a \"vocab\" array");
  std::vector<std::pair<std::string, double>> vocab;
  vocab.reserve(vocab_arr.size());
  for (element v : vocab_arr) {
    array pair;
    std::string_view piece;
    double score = 0;
    if (v.get_array().get(pair) != simdjson::SUCCESS || pair.size() != 2 ||
        pair.at(0).get_string().get(piece) != simdjson::SUCCESS ||
        pair.at(1).get_double().get(score) != simdjson::SUCCESS) {
      bad("a Unigram vocab entry is not [piece, score]");
    }
    vocab.emplace_back(std::string(piece), score);
  }
  std::optional<std::int32_t> unk_id;
  if (present(o, "unk_id")) unk_id = get_id(o["unk_id"].value(), "Unigram unk_id");
  // sluice's own key, which Hugging Face's library ignores: "tfjs" segments as TensorFlow.js'
  // Universal Sentence Encoder tokenizer does (unigram.hpp); tools/models/convert_use_lite.mjs
  // writes it.
  Unigram::Lattice lattice = Unigram::Lattice::hugging_face;
  if (present(o, "sluice_lattice")) {
    const std::string_view l = get_string(o, "sluice_lattice", "Unigram model");
    if (l == "tfjs")
      lattice = Unigram::Lattice::tfjs;
    else if (l != "hugging_face")
      bad(fmt::format("Unigram \"sluice_lattice\" is \"{}\"; sluice knows \"hugging_face\" and \"tfjs\"", l));
  }
  return std::make_unique<Unigram>(std::move(vocab), unk_id, get_bool(o, "byte_fallback", false), lattice);
}

std::unique_ptr<Model> make_model(element e) {
  object o = as_object(e, "\"model\"");
  std::string_view type;
  if (o["type"].get_string().get(type) != simdjson::SUCCESS) {
    // Files from before "type" was written: a WordPiece model is known by its fields.
    array ignored;
    if (present(o, "continuing_subword_prefix") && present(o, "max_input_chars_per_word"))
      type = "WordPiece";
    else if (present(o, "merges"))
      type = "BPE";
    else if (o["vocab"].get_array().get(ignored) == simdjson::SUCCESS)
      type = "Unigram";
    else
      type = "";
  }
  if (type == "WordPiece") return make_wordpiece(o);
  if (type == "BPE") return make_bpe(o);
  if (type == "Unigram") return make_unigram(o);
  bad(fmt::format("unsupported model type \"{}\"", type));
}

std::unique_ptr<PostProcessor> make_post_processor(element e, const Model& model) {
  if (e.is_null()) return nullptr;
  object o = as_object(e, "post_processor");
  const std::string_view type = get_string(o, "type", "post_processor");
  using Piece = TemplateProcessor::Piece;

  if (type == "ByteLevel") {
    std::vector<std::unique_ptr<PostProcessor>> v;
    if (get_bool(o, "trim_offsets", true)) {
      v.push_back(std::make_unique<TrimOffsetsProcessor>(get_bool(o, "add_prefix_space", true)));
    }
    return std::make_unique<SequenceProcessor>(std::move(v));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    // {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}; a single sequence is cls, tokens, sep.
    auto token_id = [&](std::string_view key) {
      array a;
      if (o[key].get_array().get(a) != simdjson::SUCCESS || a.size() != 2) {
        bad(fmt::format("{}: \"{}\" is not a [token, id] pair", type, key));
      }
      return get_id(a.at(1).value(), fmt::format("{} \"{}\"", type, key));
    };
    std::vector<Piece> single{{false, {token_id("cls")}, 0}, {true, {}, 0}, {false, {token_id("sep")}, 0}};
    auto specials = std::make_unique<TemplateProcessor>(std::move(single), false);
    if (type == "BertProcessing" || !get_bool(o, "trim_offsets", true)) return specials;
    // RobertaProcessing trims the offsets first, as the ByteLevel processor does.
    std::vector<std::unique_ptr<PostProcessor>> v;
    v.push_back(std::make_unique<TrimOffsetsProcessor>(get_bool(o, "add_prefix_space", true)));
    v.push_back(std::move(specials));
    return std::make_unique<SequenceProcessor>(std::move(v));
  }
  if (type == "TemplateProcessing") {
    object specials;
    if (o["special_tokens"].get_object().get(specials) != simdjson::SUCCESS) {
      bad("TemplateProcessing without a \"special_tokens\" object");
    }
    array single;
    if (o["single"].get_array().get(single) != simdjson::SUCCESS)
      bad("TemplateProcessing without a \"single\" template");
    std::vector<Piece> pieces;
    for (element item : single) {
      object it = as_object(item, "a TemplateProcessing template piece");
      Piece piece;
      object body;
      if (it["Sequence"].get_object().get(body) == simdjson::SUCCESS) {
        piece.is_sequence = true;
      } else if (it["SpecialToken"].get_object().get(body) == simdjson::SUCCESS) {
        const std::string_view name = get_string(body, "id", "TemplateProcessing SpecialToken");
        object spec;
        array ids;
        if (specials[name].get_object().get(spec) == simdjson::SUCCESS &&
            spec["ids"].get_array().get(ids) == simdjson::SUCCESS) {
          for (element id : ids) piece.ids.push_back(get_id(id, fmt::format("special token \"{}\"", name)));
        } else if (auto id = model.token_to_id(name)) {
          piece.ids.push_back(*id);
        } else {
          bad(fmt::format("TemplateProcessing: special token \"{}\" is not in \"special_tokens\"", name));
        }
      } else {
        bad("TemplateProcessing: a template piece is neither Sequence nor SpecialToken");
      }
      piece.type_id = static_cast<std::int32_t>(get_uint(body, "type_id", 0, "TemplateProcessing"));
      pieces.push_back(std::move(piece));
    }
    return std::make_unique<TemplateProcessor>(std::move(pieces), true);
  }
  if (type == "Sequence") {
    array parts;
    if (o["processors"].get_array().get(parts) != simdjson::SUCCESS) {
      bad("Sequence post_processor without a \"processors\" array");
    }
    std::vector<std::unique_ptr<PostProcessor>> v;
    for (element p : parts) {
      if (auto n = make_post_processor(p, model)) v.push_back(std::move(n));
    }
    return std::make_unique<SequenceProcessor>(std::move(v));
  }
  bad(fmt::format("unsupported post_processor type \"{}\"", type));
}

std::vector<AddedToken> make_added_tokens(object root) {
  std::vector<AddedToken> out;
  if (!present(root, "added_tokens")) return out;
  array added;
  if (root["added_tokens"].get_array().get(added) != simdjson::SUCCESS) bad("\"added_tokens\" is not an array");
  for (element a : added) {
    object t = as_object(a, "an \"added_tokens\" entry");
    AddedToken tok;
    tok.content = std::string(get_string(t, "content", "added_tokens entry"));
    element id;
    if (t["id"].get(id) != simdjson::SUCCESS) bad(fmt::format("added token \"{}\" has no id", tok.content));
    tok.id = get_id(id, fmt::format("added token \"{}\"", tok.content));
    tok.special = get_bool(t, "special", false);
    tok.single_word = get_bool(t, "single_word", false);
    tok.lstrip = get_bool(t, "lstrip", false);
    tok.rstrip = get_bool(t, "rstrip", false);
    tok.normalized = get_bool(t, "normalized", !tok.special);
    out.push_back(std::move(tok));
  }
  return out;
}

// Ids as Hugging Face gives them when it loads the file (AddedVocabulary::add_tokens), whatever
// "id" says: a token already known (added earlier, or in the model's vocabulary) keeps that id,
// a new one comes after both the model's vocabulary and the tokens added so far. Files that
// Hugging Face wrote already agree.
void assign_added_ids(std::vector<AddedToken>& tokens, const Model& model) {
  const auto model_size = static_cast<std::int64_t>(model.token_count());
  std::int64_t max_added = -1;
  std::vector<const AddedToken*> known;
  for (AddedToken& t : tokens) {
    const AddedToken* same = nullptr;
    for (const AddedToken* k : known) {
      if (k->content == t.content) same = k;
    }
    if (same != nullptr) {
      t.id = same->id;
    } else if (auto id = model.token_to_id(t.content)) {
      t.id = *id;
    } else if (max_added < 0) {
      t.id = static_cast<std::int32_t>(model_size);
    } else {
      t.id = static_cast<std::int32_t>(max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
    }
    max_added = std::max<std::int64_t>(max_added, t.id);
    known.push_back(&t);
  }
}

bool has_whitespace(std::string_view text) {
  return text.find_first_of(" \t\n\r\f\v") != std::string_view::npos ||
         text.find("\xC2\xA0") != std::string_view::npos || text.find("\xE3\x80\x80") != std::string_view::npos;
}

// Whether `leaf(object, type)` holds for the normalizer, or for every normalizer of a
// Sequence (nested ones included). None holds; a malformed one does not.
template <typename Leaf>
bool every_normalizer(element e, const Leaf& leaf) {
  if (e.is_null()) return true;
  object o;
  std::string_view type;
  if (e.get_object().get(o) != simdjson::SUCCESS || o["type"].get_string().get(type) != simdjson::SUCCESS) return false;
  if (type != "Sequence") return leaf(o, type);
  array parts;
  if (o["normalizers"].get_array().get(parts) != simdjson::SUCCESS) return false;
  for (element p : parts) {
    if (!every_normalizer(p, leaf)) return false;
  }
  return true;
}

// Normalizers that rewrite one character (or one short grapheme) at a time, never across a
// run of whitespace, and never turn a non-space into whitespace; a Replace only of a literal
// without whitespace into text without whitespace, or of a pattern made only of spaces and
// repetition (which matches only inside a run of whitespace).
bool normalizer_cut_safe(element e) {
  return every_normalizer(e, [](object o, std::string_view type) {
    if (type == "BertNormalizer" || type == "Lowercase" || type == "NFD" || type == "NFKD" || type == "NFC" ||
        type == "NFKC" || type == "StripAccents" || type == "Prepend" || type == "Strip" || type == "Precompiled") {
      return true;
    }
    if (type != "Replace") return false;
    std::string_view content, literal, regex;
    if (o["content"].get_string().get(content) != simdjson::SUCCESS) return false;
    object pattern;
    if (o["pattern"].get_object().get(pattern) != simdjson::SUCCESS) return false;
    if (pattern["String"].get_string().get(literal) == simdjson::SUCCESS) {
      return !has_whitespace(literal) && !has_whitespace(content);
    }
    // A run of spaces (" {2,}" -> " ", as SentencePiece's folders have it) into spaces or
    // nothing: it matches only inside a run, which a cut leaves whole after it.
    if (pattern["Regex"].get_string().get(regex) == simdjson::SUCCESS) {
      return !regex.empty() && regex.front() == ' ' &&
             regex.find_first_not_of(" {},0123456789+*") == std::string_view::npos &&
             content.find_first_not_of(' ') == std::string_view::npos;
    }
    return false;
  });
}

// Normalizers of one character at a time that keep ASCII punctuation as it is (BERT's).
bool normalizer_single_characters(element e) {
  return every_normalizer(e, [](object, std::string_view type) {
    return type == "BertNormalizer" || type == "Lowercase" || type == "NFD" || type == "NFKD" || type == "NFC" ||
           type == "NFKC" || type == "StripAccents";
  });
}

// Whether a normalizer acts at the start or the end of a text (Prepend, Strip), or may.
bool normalizer_has_edges(element e) {
  return !every_normalizer(e, [](object, std::string_view type) { return type != "Prepend" && type != "Strip"; });
}

std::string_view type_of(element e) {
  object o;
  std::string_view type;
  if (e.get_object().get(o) != simdjson::SUCCESS || o["type"].get_string().get(type) != simdjson::SUCCESS) return {};
  return type;
}

// 1: always ends a word at whitespace and looks no further than the word; 0: looks no further
// than a word but may leave whitespace inside one; -1: may look across whitespace.
int pre_tokenizer_cut_kind(element e) {
  object o;
  std::string_view type;
  if (e.get_object().get(o) != simdjson::SUCCESS || o["type"].get_string().get(type) != simdjson::SUCCESS) return -1;
  if (type == "BertPreTokenizer" || type == "WhitespaceSplit" || type == "Whitespace") return 1;
  if (type == "ByteLevel") {
    bool use_regex = true;
    if (o["use_regex"].get_bool().get(use_regex) != simdjson::SUCCESS) use_regex = true;
    return use_regex ? 1 : -1;
  }
  if (type == "Metaspace") {
    bool split = true;
    if (o["split"].get_bool().get(split) != simdjson::SUCCESS) split = true;
    return split ? 1 : -1;
  }
  if (type == "Punctuation" || type == "Digits") return 0;
  if (type == "Sequence") {
    array parts;
    if (o["pretokenizers"].get_array().get(parts) != simdjson::SUCCESS) return -1;
    int best = 0;
    for (element p : parts) {
      const int k = pre_tokenizer_cut_kind(p);
      if (k < 0) return -1;
      best = std::max(best, k);
    }
    return best;
  }
  return -1;
}

}  // namespace

namespace {
std::atomic<bool> g_long_text_cuts{true};
}  // namespace

void set_long_text_cuts(bool enabled) { g_long_text_cuts.store(enabled); }
bool long_text_cuts() { return g_long_text_cuts.load(std::memory_order_relaxed); }

TokenizerParts parse_tokenizer_json(std::string_view json) {
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(json);
  element root_element;
  if (auto err = parser.parse(padded).get(root_element)) {
    bad(fmt::format("not valid JSON: {}", simdjson::error_message(err)));
  }
  object root = as_object(root_element, "the top level");

  TokenizerParts parts;
  element e;
  if (root["normalizer"].get(e) == simdjson::SUCCESS) parts.normalizer = make_normalizer(e);
  if (root["pre_tokenizer"].get(e) == simdjson::SUCCESS) parts.pre_tokenizer = make_pre_tokenizer(e);
  if (root["model"].get(e) != simdjson::SUCCESS) bad("\"model\" is missing");
  parts.model = make_model(e);
  if (root["post_processor"].get(e) == simdjson::SUCCESS) parts.post_processor = make_post_processor(e, *parts.model);
  parts.added_tokens = make_added_tokens(root);
  assign_added_ids(parts.added_tokens, *parts.model);

  if (present(root, "truncation")) {
    object trunc = as_object(root["truncation"].value(), "\"truncation\"");
    parts.max_length = get_uint(trunc, "max_length", 512, "truncation");
    const std::string_view direction = get_string_or(trunc, "direction", "Right");
    if (direction != "Right" && direction != "Left") {
      bad(fmt::format("truncation: unsupported direction \"{}\"", direction));
    }
    parts.truncate_left = direction == "Left";
  }
  if (present(root, "padding")) {
    object pad = as_object(root["padding"].value(), "\"padding\"");
    if (present(pad, "pad_id")) parts.pad_id = get_id(pad["pad_id"].value(), "padding pad_id");
  }
  {
    element n, pt;
    const bool normalizer_ok = root["normalizer"].get(n) != simdjson::SUCCESS || normalizer_cut_safe(n);
    const bool pre_ok = root["pre_tokenizer"].get(pt) == simdjson::SUCCESS && !pt.is_null() && pre_tokenizer_cut_kind(pt) == 1;
    const bool added_ok = std::none_of(parts.added_tokens.begin(), parts.added_tokens.end(),
                                       [](const AddedToken& t) { return has_whitespace(t.content); });
    parts.cut_at_whitespace_safe = normalizer_ok && pre_ok && added_ok;
    const bool has_normalizer = root["normalizer"].get(n) == simdjson::SUCCESS && !n.is_null();
    parts.segment_at_whitespace_safe = parts.cut_at_whitespace_safe && !(has_normalizer && normalizer_has_edges(n));
    // The cuts between two non-space characters need every added token matched as it stands
    // in the raw text (tokenizer.cpp checks that none spans the cut: with a normalizer, a
    // normalized token could match text that differs from its content), and not too many.
    const bool added_raw = parts.added_tokens.size() <= 256 &&
                           (!has_normalizer || std::none_of(parts.added_tokens.begin(), parts.added_tokens.end(),
                                                            [](const AddedToken& t) { return t.normalized; }));
    const std::string_view pre_type = pre_ok ? type_of(pt) : std::string_view{};
    parts.cut_before_punctuation_safe = parts.segment_at_whitespace_safe && added_raw &&
                                        pre_type == "BertPreTokenizer" &&
                                        (!has_normalizer || normalizer_single_characters(n));
    element m;
    if (parts.cut_before_punctuation_safe && root["model"].get(m) == simdjson::SUCCESS && type_of(m) == "WordPiece") {
      object mo;
      std::uint64_t max_chars = 100;
      if (m.get_object().get(mo) == simdjson::SUCCESS) {
        element v;
        if (mo["max_input_chars_per_word"].get(v) == simdjson::SUCCESS && v.get_uint64().get(max_chars) != simdjson::SUCCESS) {
          max_chars = 0;  // not a count: no such cut
        }
      }
      parts.wordpiece_max_chars = static_cast<std::size_t>(max_chars);
      std::string_view unk;
      if (mo["unk_token"].get_string().get(unk) == simdjson::SUCCESS) {
        parts.wordpiece_unk = std::string(unk);
      } else {
        parts.wordpiece_max_chars = 0;
      }
    }
    if (pre_type == "ByteLevel" && parts.cut_at_whitespace_safe && added_raw) {
      object po;
      bool use_regex = true;
      if (pt.get_object().get(po) == simdjson::SUCCESS && po["use_regex"].get_bool().get(use_regex) != simdjson::SUCCESS) {
        use_regex = true;
      }
      parts.cut_at_class_change_safe = use_regex;
    }
  }
  return parts;
}

}  // namespace sluice::tok
