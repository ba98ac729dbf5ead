#pragma once
// Pre-tokenizers from tokenizer.json ("pre_tokenizer"): split the normalised symbols into
// words for the model. A pre-tokenizer may also rewrite the symbols (as ByteLevel and
// Metaspace do), keeping `words` in step. Thread: any (const; scratch space is per thread).

#include <memory>
#include <vector>

#include "model.hpp"
#include "unicode.hpp"

namespace sluice::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits each span of `words` further, in place; may rewrite `s` and the spans with it.
  virtual void pre_tokenize(Symbols& s, std::vector<Span>& words) const = 0;
};

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
