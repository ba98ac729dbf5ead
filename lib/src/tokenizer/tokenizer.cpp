// Tokenizer from tokenizer.json: added tokens, normalizer, pre-tokenizer, model,
// post-processor and truncation, composed as Hugging Face tokenizers composes them.

#include <sluice/tokenizer.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/error.hpp>

#include "normalizer.hpp"
#include "post_processor.hpp"
#include "pre_tokenizer.hpp"
#include "unicode.hpp"
#include "wordpiece.hpp"

namespace sluice {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;
using namespace sluice::tok;

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorCode::invalid_model, "tokenizer.json: " + what); }

std::string_view get_string(object o, std::string_view key, std::string_view where) {
  std::string_view v;
  if (o[key].get_string().get(v) != simdjson::SUCCESS)
    bad(fmt::format("{}: \"{}\" is missing or not a string", where, key));
  return v;
}

bool get_bool(object o, std::string_view key, bool fallback) {
  bool v = fallback;
  auto r = o[key];
  if (r.error() == simdjson::SUCCESS && r.is_bool()) v = r.get_bool().value();
  return v;
}

std::uint64_t get_uint(object o, std::string_view key, std::uint64_t fallback) {
  std::uint64_t v = fallback;
  auto r = o[key];
  if (r.error() == simdjson::SUCCESS && r.get_uint64().get(v) == simdjson::SUCCESS) return v;
  return fallback;
}

bool is_null_or_missing(object o, std::string_view key) {
  auto r = o[key];
  return r.error() != simdjson::SUCCESS || r.is_null();
}

std::unique_ptr<Normalizer> make_normalizer(element e) {
  if (e.is_null()) return nullptr;
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) bad("normalizer is not an object");
  std::string_view type = get_string(o, "type", "normalizer");
  if (type == "BertNormalizer") {
    bool lowercase = get_bool(o, "lowercase", true);
    bool strip_accents = lowercase;  // null: follows lowercase, as in BERT
    auto sa = o["strip_accents"];
    if (sa.error() == simdjson::SUCCESS && sa.is_bool()) strip_accents = sa.get_bool().value();
    return std::make_unique<BertNormalizer>(get_bool(o, "clean_text", true), get_bool(o, "handle_chinese_chars", true),
                                            strip_accents, lowercase);
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "NFD") return std::make_unique<NfdNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Sequence") {
    array parts;
    if (o["normalizers"].get_array().get(parts) != simdjson::SUCCESS)
      bad("Sequence normalizer without \"normalizers\"");
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
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) bad("pre_tokenizer is not an object");
  std::string_view type = get_string(o, "type", "pre_tokenizer");
  if (type == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Sequence") {
    array parts;
    if (o["pretokenizers"].get_array().get(parts) != simdjson::SUCCESS)
      bad("Sequence pre_tokenizer without \"pretokenizers\"");
    std::vector<std::unique_ptr<PreTokenizer>> v;
    for (element p : parts) {
      if (auto n = make_pre_tokenizer(p)) v.push_back(std::move(n));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(v));
  }
  bad(fmt::format("unsupported pre_tokenizer type \"{}\"", type));
}

std::unique_ptr<WordPiece> make_model(element e) {
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) bad("\"model\" is missing or not an object");
  std::string_view type;
  if (o["type"].get_string().get(type) != simdjson::SUCCESS) {
    // Older files leave the type out; a WordPiece model is recognised by its fields.
    type = o["continuing_subword_prefix"].error() == simdjson::SUCCESS ? "WordPiece" : "";
  }
  if (type != "WordPiece") bad(fmt::format("unsupported model type \"{}\"", type));
  object vocab_obj;
  if (o["vocab"].get_object().get(vocab_obj) != simdjson::SUCCESS) bad("WordPiece model without a \"vocab\" object");
  Vocab vocab;
  vocab.reserve(vocab_obj.size());
  for (auto [key, value] : vocab_obj) {
    std::int64_t id = 0;
    if (value.get_int64().get(id) != simdjson::SUCCESS || id < 0 || id > INT32_MAX) {
      bad(fmt::format("vocab entry \"{}\" has no valid id", key));
    }
    vocab.emplace(std::string(key), static_cast<std::int32_t>(id));
  }
  std::string_view prefix = "##";
  if (o["continuing_subword_prefix"].get_string().get(prefix) != simdjson::SUCCESS) {  // keeps the default
  }
  return std::make_unique<WordPiece>(std::move(vocab), std::string(get_string(o, "unk_token", "model")),
                                     std::string(prefix), get_uint(o, "max_input_chars_per_word", 100));
}

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

bool is_word_char(char32_t c) {
  if (c == '_') return true;
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return !is_whitespace(c) && !is_punctuation(c) && !is_other(c);
}

// A match of an added token in a run of symbols: [first, second) symbol indexes.
struct Match {
  std::size_t begin, end;
  const AddedToken* token;
};

class JsonTokenizer : public Tokenizer {
 public:
  explicit JsonTokenizer(std::string_view json) {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    element root;
    if (auto err = parser.parse(padded).get(root)) bad(fmt::format("not valid JSON: {}", simdjson::error_message(err)));
    object o;
    if (root.get_object().get(o) != simdjson::SUCCESS) bad("the top level is not an object");

    element e;
    if (o["normalizer"].get(e) == simdjson::SUCCESS) normalizer_ = make_normalizer(e);
    if (o["pre_tokenizer"].get(e) == simdjson::SUCCESS) pre_tokenizer_ = make_pre_tokenizer(e);
    if (o["model"].get(e) != simdjson::SUCCESS) bad("\"model\" is missing");
    model_ = make_model(e);
    if (o["post_processor"].get(e) == simdjson::SUCCESS) post_processor_ = make_post_processor(e, model_->vocab());

    array added;
    if (o["added_tokens"].get_array().get(added) == simdjson::SUCCESS) {
      for (element a : added) {
        object t;
        if (a.get_object().get(t) != simdjson::SUCCESS) bad("an added_tokens entry is not an object");
        AddedToken tok;
        tok.content = std::string(get_string(t, "content", "added_tokens"));
        std::int64_t id = 0;
        if (t["id"].get_int64().get(id) != simdjson::SUCCESS)
          bad(fmt::format("added token \"{}\" has no id", tok.content));
        tok.id = static_cast<std::int32_t>(id);
        tok.special = get_bool(t, "special", false);
        tok.single_word = get_bool(t, "single_word", false);
        tok.lstrip = get_bool(t, "lstrip", false);
        tok.rstrip = get_bool(t, "rstrip", false);
        tok.normalized = get_bool(t, "normalized", !tok.special);
        if (!tok.content.empty()) added_.push_back(std::move(tok));
      }
    }
    // Longest first: at one position, the longest token wins (leftmost-longest).
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    for (const auto& t : added_) {
      added_by_content_.emplace(t.content, t.id);
      id_to_added_.emplace(t.id, t.content);
    }
    for (const auto& [token, id] : model_->vocab()) vocab_size_ = std::max<std::size_t>(vocab_size_, id + 1);
    for (const auto& t : added_) vocab_size_ = std::max<std::size_t>(vocab_size_, static_cast<std::size_t>(t.id) + 1);
    reverse_.resize(vocab_size_);
    for (const auto& [token, id] : model_->vocab()) reverse_[static_cast<std::size_t>(id)] = token;

    object trunc;
    if (!is_null_or_missing(o, "truncation") && o["truncation"].get_object().get(trunc) == simdjson::SUCCESS) {
      max_length_ = get_uint(trunc, "max_length", 512);
      std::string_view dir = "Right";
      if (trunc["direction"].get_string().get(dir) != simdjson::SUCCESS) {  // keeps the default
      }
      truncate_left_ = dir == "Left";
    }
    object pad;
    std::int64_t pad_id = -1;
    if (!is_null_or_missing(o, "padding") && o["padding"].get_object().get(pad) == simdjson::SUCCESS) {
      if (pad["pad_id"].get_int64().get(pad_id) != simdjson::SUCCESS) {  // keeps the default
      }
    }
    if (pad_id < 0) {
      for (const char* name : {"[PAD]", "<pad>", "<|padding|>"}) {
        if (auto id = token_to_id(name)) {
          pad_id = *id;
          break;
        }
      }
    }
    pad_id_ = pad_id < 0 ? 0 : static_cast<std::int32_t>(pad_id);
  }

  Encoding encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<Token> tokens;
    tokens.reserve(text.size() / 3 + 4);
    Symbols raw;
    raw.reserve(text.size());
    decode_utf8(text, 0, raw);

    // 1. Added tokens that match the raw text are split out first.
    std::vector<Match> matches;
    find_added(raw, /*normalized=*/false, matches);
    std::size_t at = 0;
    Symbols seg;
    std::vector<Span> words;
    for (const Match& m : matches) {
      encode_segment(raw, at, m.begin, seg, words, tokens);
      tokens.push_back({m.token->id, raw[m.begin].start, raw[m.end - 1].end});
      at = m.end;
    }
    encode_segment(raw, at, raw.size(), seg, words, tokens);

    // 2. Truncation, leaving room for the special tokens.
    Encoding enc;
    const std::size_t added = add_special_tokens && post_processor_ ? post_processor_->added_tokens() : 0;
    enc.untruncated_length = tokens.size() + added;
    if (max_length_) {
      const std::size_t room = *max_length_ > added ? *max_length_ - added : 0;
      if (tokens.size() > room) {
        if (truncate_left_) {
          tokens.erase(tokens.begin(), tokens.end() - static_cast<std::ptrdiff_t>(room));
        } else {
          tokens.resize(room);
        }
      }
    }

    // 3. Post-processing: special tokens and type ids.
    std::vector<std::int32_t> type_ids(tokens.size(), 0);
    if (add_special_tokens && post_processor_) post_processor_->process(tokens, type_ids);
    enc.ids.reserve(tokens.size());
    enc.offsets.reserve(tokens.size());
    for (const auto& t : tokens) {
      enc.ids.push_back(t.id);
      enc.offsets.emplace_back(t.start, t.end);
    }
    enc.type_ids = std::move(type_ids);
    return enc;
  }

  void set_max_length(std::size_t max_length) override { max_length_ = max_length; }
  std::optional<std::size_t> max_length() const override { return max_length_; }
  std::size_t vocab_size() const override { return vocab_size_; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    if (auto it = added_by_content_.find(token); it != added_by_content_.end()) return it->second;
    if (auto it = model_->vocab().find(token); it != model_->vocab().end()) return it->second;
    return std::nullopt;
  }

  std::optional<std::string> id_to_token(std::int32_t id) const override {
    if (auto it = id_to_added_.find(id); it != id_to_added_.end()) return it->second;
    if (id < 0 || static_cast<std::size_t>(id) >= reverse_.size() || reverse_[static_cast<std::size_t>(id)].empty()) {
      return std::nullopt;
    }
    return reverse_[static_cast<std::size_t>(id)];
  }

  std::int32_t pad_id() const override { return pad_id_; }

 private:
  // Finds added tokens in `s` (raw text, or one normalised segment), leftmost-longest.
  void find_added(const Symbols& s, bool normalized, std::vector<Match>& out) const {
    bool any = false;
    for (const auto& t : added_) any = any || t.normalized == normalized;
    if (!any || s.empty()) return;
    std::string text;
    std::vector<std::uint32_t> pos;  // byte position of each symbol in `text`
    pos.reserve(s.size() + 1);
    for (const auto& sym : s) {
      pos.push_back(static_cast<std::uint32_t>(text.size()));
      append_utf8(text, sym.c);
    }
    pos.push_back(static_cast<std::uint32_t>(text.size()));
    auto symbol_at = [&](std::size_t byte) {
      return static_cast<std::size_t>(std::lower_bound(pos.begin(), pos.end(), byte) - pos.begin());
    };
    std::size_t i = 0;
    while (i < s.size()) {
      const Match* best = nullptr;
      Match m{};
      for (const auto& t : added_) {
        if (t.normalized != normalized) continue;
        if (text.compare(pos[i], t.content.size(), t.content) != 0) continue;
        std::size_t end = symbol_at(pos[i] + t.content.size());
        if (pos[end] != pos[i] + t.content.size()) continue;  // not on a character boundary
        if (t.single_word) {
          if (i > 0 && is_word_char(s[i - 1].c)) continue;
          if (end < s.size() && is_word_char(s[end].c)) continue;
        }
        m = Match{i, end, &t};
        best = &m;
        break;  // sorted longest first
      }
      if (!best) {
        ++i;
        continue;
      }
      std::size_t b = m.begin, e = m.end;
      if (m.token->lstrip) {
        std::size_t floor = out.empty() ? 0 : out.back().end;
        while (b > floor && is_whitespace(s[b - 1].c)) --b;
      }
      if (m.token->rstrip) {
        while (e < s.size() && is_whitespace(s[e].c)) ++e;
      }
      out.push_back({b, e, m.token});
      i = e;
    }
  }

  // Normalises, pre-tokenises and tokenises raw symbols [b, e).
  void encode_segment(const Symbols& raw, std::size_t b, std::size_t e, Symbols& seg, std::vector<Span>& words,
                      std::vector<Token>& out) const {
    if (b >= e) return;
    seg.assign(raw.begin() + static_cast<std::ptrdiff_t>(b), raw.begin() + static_cast<std::ptrdiff_t>(e));
    if (normalizer_) normalizer_->normalize(seg);
    std::vector<Match> matches;
    find_added(seg, /*normalized=*/true, matches);
    std::size_t at = 0;
    auto words_of = [&](std::size_t wb, std::size_t we) {
      if (wb >= we) return;
      words.clear();
      words.emplace_back(wb, we);
      if (pre_tokenizer_) pre_tokenizer_->split(seg, words);
      for (const Span& w : words) model_->tokenize(seg, w, out);
    };
    for (const Match& m : matches) {
      words_of(at, m.begin);
      out.push_back({m.token->id, seg[m.begin].start, seg[m.end - 1].end});
      at = m.end;
    }
    words_of(at, seg.size());
  }

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<WordPiece> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::vector<AddedToken> added_;
  Vocab added_by_content_;
  std::unordered_map<std::int32_t, std::string> id_to_added_;
  std::optional<std::size_t> max_length_;
  bool truncate_left_ = false;
  std::int32_t pad_id_ = 0;
  std::size_t vocab_size_ = 0;
  std::vector<std::string> reverse_;  // id -> token of the model's vocabulary
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_json(std::string_view json) { return std::make_unique<JsonTokenizer>(json); }

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::invalid_model, fmt::format("{}: cannot read the tokenizer file", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("{}: {}", path.string(), e.what()), e.detail());
  }
}

}  // namespace sluice
