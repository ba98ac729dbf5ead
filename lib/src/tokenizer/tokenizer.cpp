// The Tokenizer: added tokens, normalizer, pre-tokenizer, model, truncation and
// post-processor, composed as Hugging Face tokenizers composes them in `encode`.

#include <sluice/tokenizer.hpp>

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <stdexcept>
#include <fstream>
#include <sluice/error.hpp>
#include <sstream>

#include "tokenizer_json.hpp"

namespace sluice {

namespace {

using namespace sluice::tok;

// Per-thread scratch space for encode(): reused between calls, so a warm thread allocates
// only the Encoding it returns.
struct Scratch {
  Symbols symbols;
  Symbols piece;
  std::vector<Span> words;
  std::vector<AddedMatch> raw_matches;
  std::vector<AddedMatch> normalized_matches;
  std::vector<Token> tokens;
  std::vector<std::int32_t> type_ids;
};

class PipelineTokenizer : public Tokenizer {
 public:
  explicit PipelineTokenizer(TokenizerParts parts)
      : normalizer_(std::move(parts.normalizer)),
        pre_tokenizer_(std::move(parts.pre_tokenizer)),
        model_(std::move(parts.model)),
        post_processor_(std::move(parts.post_processor)),
        added_(std::move(parts.added_tokens), normalizer_.get()),
        max_length_(parts.max_length),
        truncate_left_(parts.truncate_left),
        cut_safe_(parts.cut_at_whitespace_safe),
        segment_safe_(parts.segment_at_whitespace_safe),
        punct_cut_(parts.cut_before_punctuation_safe),
        wordpiece_max_chars_(parts.wordpiece_max_chars),
        class_cut_(parts.cut_at_class_change_safe) {
    bool added_alnum = false;  // an added token of letters and digits only could match inside a run
    for (const auto& t : added_.tokens()) {
      if (t.content.size() >= 2) added_contents_.push_back(t.content);
      if (t.rstrip && !t.content.empty()) rstrip_contents_.push_back(t.content);
      // A single_word token matches or not by what touches it: cutting the text beside one
      // could change that.
      added_alnum = added_alnum || t.single_word || std::all_of(t.content.begin(), t.content.end(), is_ascii_alnum);
    }
    if (wordpiece_max_chars_ > 0 && !added_alnum) {
      if (auto id = model_->token_to_id(parts.wordpiece_unk)) unk_run_id_ = *id;
    }
    token_text_ = [this](std::int32_t id) -> std::optional<std::string_view> {
      if (const AddedToken* t = added_.find(id)) return std::string_view(t->content);
      return model_->id_to_token(id);
    };
    vocab_size_ = model_->vocab_size();
    for (const auto& t : added_.tokens()) vocab_size_ = std::max(vocab_size_, static_cast<std::size_t>(t.id) + 1);
    if (parts.pad_id) {
      pad_id_ = *parts.pad_id;
    } else {
      for (const char* name : {"[PAD]", "<pad>"}) {
        if (auto id = token_to_id(name)) {
          pad_id_ = *id;
          break;
        }
      }
    }
  }

  std::vector<Encoding> encode_windows(std::string_view text, std::size_t max_length,
                                       std::size_t stride) const override {
    thread_local Scratch sc;
    split_into_tokens_segmented(text, sc);
    const std::vector<Token> all = std::move(sc.tokens);
    sc.tokens.clear();
    const std::size_t added = special_tokens(true);
    if (max_length <= added + stride) {
      throw std::invalid_argument("window length must exceed the special tokens plus the stride");
    }
    const std::size_t room = max_length - added;
    std::vector<Encoding> windows;
    std::size_t start = 0;
    for (;;) {
      const std::size_t end = std::min(all.size(), start + room);
      sc.tokens.assign(all.begin() + static_cast<std::ptrdiff_t>(start), all.begin() + static_cast<std::ptrdiff_t>(end));
      Encoding enc = finish_encoding(text, true, sc);
      enc.untruncated_length = enc.ids.size();
      windows.push_back(std::move(enc));
      if (end >= all.size()) break;
      start = end - stride;
    }
    return windows;
  }

  Encoding encode(std::string_view text, bool add_special_tokens) const override {
    thread_local Scratch sc;
    const std::size_t added = special_tokens(add_special_tokens);
    if (std::optional<Encoding> enc = encode_prefix(text, add_special_tokens, added, sc)) return std::move(*enc);
    split_into_tokens_segmented(text, sc);
    std::vector<Token>& tokens = sc.tokens;

    // 2. Truncation, leaving room for the special tokens the post-processor adds.
    const std::size_t untruncated = tokens.size() + added;
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
    Encoding enc = finish_encoding(text, add_special_tokens, sc);
    enc.untruncated_length = untruncated;
    release_if_large(sc);
    return enc;
  }

  std::size_t count_tokens(std::string_view text, bool add_special_tokens) const override {
    thread_local Scratch sc;
    std::size_t n = 0;
    for_each_segment(text, [&](std::size_t at, std::size_t end) {
      sc.tokens.clear();
      append_tokens(text.substr(at, end - at), at, sc);
      n += sc.tokens.size();
    });
    sc.tokens.clear();
    release_if_large(sc);
    return n + special_tokens(add_special_tokens);
  }

  /// Bytes from which a text truncated on the right is tokenised a prefix at a time.
  static constexpr std::size_t kPrefixFromBytes = 64u << 10;
  /// Bytes from which a text is tokenised a segment at a time, and a segment's length.
  static constexpr std::size_t kSegmentFromBytes = 128u << 10;
  static constexpr std::size_t kSegmentBytes = 64u << 10;

 private:
  // A long text truncated on the right: tokenises prefixes cut just before a run of
  // whitespace, growing 4 times each time, until one has more tokens than are kept. Where the
  // parts are cut-safe (tokenizer_json.hpp), a prefix's tokens are the whole text's tokens
  // before the cut, so the first ones kept are the same. nullopt: take the whole text.
  std::optional<Encoding> encode_prefix(std::string_view text, bool add_special_tokens, std::size_t added,
                                        Scratch& sc) const {
    if (!cut_safe_ || !max_length_ || truncate_left_ || text.size() <= kPrefixFromBytes || !long_text_cuts()) {
      return std::nullopt;
    }
    const std::size_t room = *max_length_ > added ? *max_length_ - added : 0;
    if (room >= text.size() / 16) return std::nullopt;  // a prefix would be most of the text
    for (std::size_t want = std::max(kPrefixFromBytes / 4, room * 16); want < text.size(); want *= 4) {
      const std::size_t cut = last_cut(text, want, Use::prefix);
      if (cut == 0) return std::nullopt;  // nowhere to cut
      split_into_tokens(text.substr(0, cut), sc);
      if (sc.tokens.size() > room) {
        const std::size_t seen = sc.tokens.size() + added;
        sc.tokens.resize(room);
        Encoding enc = finish_encoding(text, add_special_tokens, sc);
        enc.untruncated_length = seen;
        enc.length_is_lower_bound = true;
        return enc;
      }
    }
    return std::nullopt;
  }

  // The special tokens the post-processor adds to one sequence.
  std::size_t special_tokens(bool add_special_tokens) const {
    return add_special_tokens && post_processor_ ? post_processor_->added_tokens() : 0;
  }

  enum class Use { prefix, segment };

  // The whitespace a cut may come before: not \f or \v, which BERT's normalizer drops (the
  // characters around them then join one word) and SentencePiece's may too.
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool is_ascii_letter(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
  static bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_ascii_alnum(char c) { return is_ascii_letter(c) || is_ascii_digit(c); }
  // BERT's punctuation among ASCII characters (the ranges its tokenizer treats as punctuation).
  static bool is_ascii_punct(char c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  }
  static int ascii_class(char c) { return is_ascii_letter(c) ? 0 : is_ascii_digit(c) ? 1 : 2; }

  // Whether the character that ends just before byte `c` is no whitespace and nothing a
  // normalizer might turn into whitespace or drop next to it: ASCII other than spaces and
  // controls, or a character beyond ASCII outside the Unicode spaces, U+0080-U+00A0, the General
  // Punctuation block (zero-width and directional marks among them), U+1680, U+180E, U+3000
  // and U+FEFF.
  static bool plain_char_before(std::string_view text, std::size_t c) {
    const auto last = static_cast<unsigned char>(text[c - 1]);
    if (last < 0x80) return last > 0x20 && last < 0x7F;
    std::size_t b = c - 1;
    while (b > 0 && c - b < 4 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
    // Decoded as decode_utf8() decodes (utf8proc); not one well-formed character: no cut here.
    utf8proc_int32_t cp = 0;
    const auto n = static_cast<utf8proc_ssize_t>(c - b);
    if (utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + b), n, &cp) != n) return false;
    return cp > 0xA0 && cp != 0x1680 && cp != 0x180E && !(cp >= 0x2000 && cp <= 0x206F) && cp != 0x3000 &&
           cp != 0xFEFF;
  }

  // Whether an added token's text would straddle a cut at `c` (begin before it, end after).
  bool added_spans(std::string_view text, std::size_t c) const {
    for (const std::string& t : added_contents_) {
      for (std::size_t k = 1; k < t.size() && k <= c; ++k) {
        if (c - k + t.size() <= text.size() && text.compare(c - k, t.size(), t) == 0) return true;
      }
    }
    return false;
  }

  // Whether the text may be cut just before byte `c` (0 < c < size): the tokens before the cut
  // are then the whole text's (Use::prefix), and for Use::segment the tokens after it too.
  // `run_start`: for the WordPiece rule, where the run of ASCII letters and digits that ends
  // at c - 1 starts (the caller keeps it while scanning backwards; npos: not known yet).
  bool is_cut(std::string_view text, std::size_t c, Use use, std::size_t& run_start) const {
    const char a = text[c - 1], b = text[c];
    if (is_space(b)) {
      // Not inside a run of whitespace (a normalizer may make U+3000 or U+00A0 a space), nor
      // between an added token that takes the whitespace after it (rstrip) and that whitespace.
      return !is_space(a) && plain_char_before(text, c) && (use == Use::prefix ? cut_safe_ : segment_safe_) &&
             std::none_of(rstrip_contents_.begin(), rstrip_contents_.end(), [&](const std::string& t) {
               return t.size() <= c && text.compare(c - t.size(), t.size(), t) == 0;
             });
    }
    if (is_space(a)) return false;
    if (punct_cut_ && is_ascii_punct(b)) return !added_spans(text, c);
    if (use != Use::prefix) return false;
    if (wordpiece_max_chars_ > 0 && is_ascii_alnum(a) && is_ascii_alnum(b)) {
      if (run_start == std::string_view::npos || run_start >= c) {
        run_start = c - 1;
        while (run_start > 0 && is_ascii_alnum(text[run_start - 1])) --run_start;
      }
      if (c - run_start > wordpiece_max_chars_) return !added_spans(text, c);
    }
    if (class_cut_) {
      const auto ua = static_cast<unsigned char>(a), ub = static_cast<unsigned char>(b);
      if (ua < 0x80 && ub < 0x80 && a != '\'' && ascii_class(a) != ascii_class(b)) return !added_spans(text, c);
    }
    return false;
  }

  // The last cut at or before `want` (and after 0); 0: none.
  std::size_t last_cut(std::string_view text, std::size_t want, Use use) const {
    std::size_t run_start = std::string_view::npos;
    for (std::size_t c = std::min(want, text.size() - 1); c > 0; --c) {
      if (is_cut(text, c, use, run_start)) return c;
    }
    return 0;
  }

  // Calls fn(begin, end) for consecutive segments covering the text: one segment unless the
  // parts allow cutting and the text is long; then segments of about kSegmentBytes, each cut
  // where the tokens on both sides are the whole text's (a longer one where no cut is near).
  template <typename Fn>
  void for_each_segment(std::string_view text, Fn&& fn) const {
    if (!segment_safe_ || text.size() <= kSegmentFromBytes || !long_text_cuts()) {
      fn(std::size_t{0}, text.size());
      return;
    }
    std::size_t at = 0;
    while (text.size() - at > kSegmentBytes) {
      std::size_t cut = last_cut(text, at + kSegmentBytes, Use::segment);
      if (cut <= at) {
        // None in this stretch: the first one after it.
        std::size_t run_start = std::string_view::npos;
        cut = at + kSegmentBytes + 1;
        while (cut < text.size() && !is_cut(text, cut, Use::segment, run_start)) ++cut;
        if (cut >= text.size()) break;
      }
      fn(at, cut);
      at = cut;
    }
    fn(at, text.size());
  }

  // 1. The text's tokens into sc.tokens, a segment at a time where that is exact.
  void split_into_tokens_segmented(std::string_view text, Scratch& sc) const {
    sc.tokens.clear();
    for_each_segment(text, [&](std::size_t at, std::size_t end) { append_tokens(text.substr(at, end - at), at, sc); });
  }

  // Scratch grown by one very long text is given back rather than kept by the thread.
  static void release_if_large(Scratch& sc) {
    constexpr std::size_t kKeep = 1u << 20;
    if (sc.symbols.capacity() > kKeep || sc.tokens.capacity() > kKeep || sc.piece.capacity() > kKeep) sc = Scratch{};
  }

  // 3. Post-processing of sc.tokens: special tokens and type ids.
  Encoding finish_encoding(std::string_view text, bool add_special_tokens, Scratch& sc) const {
    std::vector<Token>& tokens = sc.tokens;
    Encoding enc;
    sc.type_ids.assign(tokens.size(), 0);
    if (post_processor_) post_processor_->process(tokens, sc.type_ids, add_special_tokens, token_text_, text);
    enc.ids.resize(tokens.size());
    enc.offsets.resize(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      enc.ids[i] = tokens[i].id;
      enc.offsets[i] = {tokens[i].start, tokens[i].end};
    }
    enc.type_ids = sc.type_ids;
    return enc;
  }

  // 1. The text's tokens, into sc.tokens, before truncation and special tokens.
  void split_into_tokens(std::string_view text, Scratch& sc) const {
    sc.tokens.clear();
    append_tokens(text, 0, sc);
  }

  // The tokens of `text`, which starts at byte `base` of the input, appended to sc.tokens.
  // With BERT's parts and WordPiece, a run of ASCII letters and digits longer than
  // max_input_chars_per_word between word boundaries (the text's ends, ASCII whitespace other
  // than \f and \v, ASCII punctuation) is one word, so one unknown token spanning it: it is
  // given as such, without reading the run into symbols (a blob of megabytes costs nothing).
  void append_tokens(std::string_view text, std::size_t base, Scratch& sc) const {
    if (!unk_run_id_ || text.size() <= wordpiece_max_chars_) {
      append_tokens_read(text, base, sc);
      return;
    }
    auto boundary = [](char c) { return is_space(c) || is_ascii_punct(c); };
    std::size_t at = 0;
    std::size_t i = 0;
    while (i < text.size()) {
      if (!is_ascii_alnum(text[i])) {
        ++i;
        continue;
      }
      std::size_t end = i;
      while (end < text.size() && is_ascii_alnum(text[end])) ++end;
      if (end - i > wordpiece_max_chars_ && (i == 0 || boundary(text[i - 1])) &&
          (end == text.size() || boundary(text[end])) && !added_spans(text, i) && !added_spans(text, end)) {
        append_tokens_read(text.substr(at, i - at), base + at, sc);
        sc.tokens.push_back({*unk_run_id_, static_cast<std::uint32_t>(base + i), static_cast<std::uint32_t>(base + end)});
        at = end;
      }
      i = end;
    }
    append_tokens_read(text.substr(at), base + at, sc);
  }

  void append_tokens_read(std::string_view text, std::size_t base, Scratch& sc) const {
    if (text.empty()) return;
    std::vector<Token>& tokens = sc.tokens;
    // 1. Added tokens that match the raw text are split out first; the text between them is
    //    normalised, pre-tokenised and tokenised piece by piece.
    added_.find_in_raw(text, sc.raw_matches);
    std::size_t at = 0;
    for (const AddedMatch& m : sc.raw_matches) {
      encode_piece(text.substr(at, m.begin - at), static_cast<std::uint32_t>(base + at), sc);
      tokens.push_back({m.id, static_cast<std::uint32_t>(base + m.begin), static_cast<std::uint32_t>(base + m.end)});
      at = m.end;
    }
    encode_piece(text.substr(at), static_cast<std::uint32_t>(base + at), sc);
  }

 public:

  void set_max_length(std::size_t max_length) override {
    max_length_ = max_length;
    truncate_left_ = false;
  }
  std::optional<std::size_t> max_length() const override { return max_length_; }
  std::size_t vocab_size() const override { return vocab_size_; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    if (const AddedToken* t = added_.find(token)) return t->id;
    return model_->token_to_id(token);
  }

  std::optional<std::string> id_to_token(std::int32_t id) const override {
    if (const AddedToken* t = added_.find(id)) return t->content;
    if (auto token = model_->id_to_token(id)) return std::string(*token);
    return std::nullopt;
  }

  std::int32_t pad_id() const override { return pad_id_; }

 private:
  // Normalises, pre-tokenises and tokenises `text`, which starts at byte `base` of the input.
  void encode_piece(std::string_view text, std::uint32_t base, Scratch& sc) const {
    if (text.empty()) return;
    Symbols& s = sc.symbols;
    s.clear();
    decode_utf8(text, base, s);
    if (normalizer_) normalizer_->normalize(s, base);
    if (!added_.has_normalized()) {
      tokenize_words(s, 0, s.size(), sc);
      return;
    }
    // Added tokens that match the normalised text split it further. Each part is
    // pre-tokenised on its own (a pre-tokenizer may rewrite its symbols).
    added_.find_in_normalized(s, sc.normalized_matches);
    std::size_t at = 0;
    for (const AddedMatch& m : sc.normalized_matches) {
      tokenize_part(s, at, m.begin, sc);
      sc.tokens.push_back({m.id, s[m.begin].start, s[m.end - 1].end});
      at = m.end;
    }
    tokenize_part(s, at, s.size(), sc);
  }

  void tokenize_part(const Symbols& s, std::size_t b, std::size_t e, Scratch& sc) const {
    if (b >= e) return;
    sc.piece.assign(s.begin() + static_cast<std::ptrdiff_t>(b), s.begin() + static_cast<std::ptrdiff_t>(e));
    tokenize_words(sc.piece, 0, sc.piece.size(), sc);
  }

  void tokenize_words(Symbols& s, std::size_t b, std::size_t e, Scratch& sc) const {
    if (b >= e) return;
    sc.words.clear();
    sc.words.emplace_back(b, e);
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(s, sc.words);
    for (const Span& w : sc.words) model_->tokenize(s, w, sc.tokens);
  }

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  AddedVocabulary added_;
  TokenText token_text_;
  std::optional<std::size_t> max_length_;
  bool truncate_left_ = false;
  bool cut_safe_ = false;
  bool segment_safe_ = false;
  bool punct_cut_ = false;
  std::size_t wordpiece_max_chars_ = 0;
  bool class_cut_ = false;
  std::vector<std::string> added_contents_;  // added tokens of two bytes or more, for added_spans()
  std::vector<std::string> rstrip_contents_;  // added tokens that take the whitespace after them
  std::optional<std::int32_t> unk_run_id_;    // set: long runs of letters and digits are one [UNK] (append_tokens)
  std::int32_t pad_id_ = 0;
  std::size_t vocab_size_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_json(std::string_view json) {
  return std::make_unique<PipelineTokenizer>(parse_tokenizer_json(json));
}

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorCode::invalid_model,
                fmt::format("{}: cannot read the tokenizer file; check that the model folder has tokenizer.json",
                            path.string()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const Error& e) {
    // "tokenizer.json: what" -> "PATH: what"
    std::string_view what = e.what();
    constexpr std::string_view kPrefix = "tokenizer.json: ";
    if (what.substr(0, kPrefix.size()) == kPrefix) what.remove_prefix(kPrefix.size());
    throw Error(e.code(), fmt::format("{}: {}", path.string(), what), e.detail());
  }
}

}  // namespace sluice
