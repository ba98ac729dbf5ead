#pragma once
// Pre-tokenizers from tokenizer.json ("pre_tokenizer"): split the normalised symbols into
// words for the model. A pre-tokenizer may also rewrite the symbols (as ByteLevel and
// Metaspace do), keeping `words` in step. Thread: any (const; scratch space is per thread).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model.hpp"
#include "regex.hpp"
#include "unicode.hpp"

namespace sluice::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits each span of `words` further, in place; may rewrite `s` and the spans with it.
  virtual void pre_tokenize(Symbols& s, std::vector<Span>& words) const = 0;
};

/// How a Split-like pre-tokenizer treats the delimiters it finds (Hugging Face's
/// SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

/// BertPreTokenizer: splits on whitespace (removed) and isolates every punctuation
/// character (ASCII punctuation and Unicode P*).
class BertPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;
};

/// WhitespaceSplit: splits on whitespace (removed).
class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;
};

/// Whitespace: the regex \w+|[^\w\s]+ (runs of word characters, runs of other non-spaces).
class WhitespacePreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;
};

/// ByteLevel: optionally a space before each piece that does not start with one, the GPT-2 split
/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (when use_regex),
/// then every UTF-8 byte replaced by its printable stand-in (GPT-2's bytes_to_unicode).
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;
  /// The character that stands for byte `b`.
  static char32_t byte_char(std::uint8_t b);

 private:
  bool add_prefix_space_, use_regex_;
};

/// Metaspace: spaces become `replacement` ("▁"), which is also put first (prepend_scheme
/// "always", or "first" only for a piece that starts the text: Hugging Face looks at where the
/// piece starts in the original, so text that normalisation removed from the start, or an added
/// token, means "not first"), then a split before each replacement.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(char32_t replacement, Prepend prepend, bool split)
      : replacement_(replacement), prepend_(prepend), split_(split) {}
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;

 private:
  char32_t replacement_;
  Prepend prepend_;
  bool split_;
};

/// Split: on the matches of a literal string or a regular expression, with a delimiter behaviour;
/// `invert` splits on what does not match instead.
class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::u32string literal, std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : literal_(std::move(literal)), regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;

 private:
  std::u32string literal_;
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

/// Character-class splits: Punctuation (ASCII or Unicode P*), Digits (Rust's char::is_numeric,
/// i.e. any N* character such as "½" or "Ⅻ", each alone or in runs) and CharDelimiterSplit (one
/// character, removed).
class CharSplitPreTokenizer : public PreTokenizer {
 public:
  enum class Kind { kPunctuation, kDigits, kDelimiter };
  CharSplitPreTokenizer(Kind kind, SplitBehavior behavior, char32_t delimiter = 0)
      : kind_(kind), behavior_(behavior), delimiter_(delimiter) {}
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override;

 private:
  Kind kind_;
  SplitBehavior behavior_;
  char32_t delimiter_;
};

/// Sequence: the pre-tokenizers one after the other.
class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(Symbols& s, std::vector<Span>& words) const override {
    for (const auto& p : parts_) p->pre_tokenize(s, words);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace sluice::tok
