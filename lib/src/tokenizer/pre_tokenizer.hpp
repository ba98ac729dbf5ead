#pragma once
// Pre-tokenizers from tokenizer.json: split normalised symbols into words. Thread: any (const).

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "unicode.hpp"

namespace sluice::tok {

/// A word: symbols [first, second) of the normalised text.
using Span = std::pair<std::size_t, std::size_t>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits the spans in `words` further, in place.
  virtual void split(const Symbols& s, std::vector<Span>& words) const = 0;
};

/// BertPreTokenizer: whitespace removed, every punctuation character its own word.
class BertPreTokenizer : public PreTokenizer {
 public:
  void split(const Symbols& s, std::vector<Span>& words) const override;
};

/// WhitespaceSplit: whitespace removed.
class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void split(const Symbols& s, std::vector<Span>& words) const override;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(const Symbols& s, std::vector<Span>& words) const override {
    for (const auto& p : parts_) p->split(s, words);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace sluice::tok
