#pragma once
// Normalizers from tokenizer.json ("normalizer"): rewrite the text symbol by symbol, each
// output symbol keeping the byte range of the original character it came from, so token
// offsets survive normalisation. Thread: any (const; scratch space is per thread).

#include <memory>
#include <vector>

#include "unicode.hpp"

namespace sluice::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  /// Rewrites `s` in place.
  virtual void normalize(Symbols& s) const = 0;
};

/// BertNormalizer: clean_text (drop NUL, U+FFFD and controls, whitespace to ' '),
/// handle_chinese_chars (spaces around CJK ideographs), strip_accents (NFD, then drop Mn),
/// lowercase (Rust's char::to_lowercase), in that order, as Hugging Face tokenizers does.
class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool handle_chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        handle_chinese_chars_(handle_chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}
  void normalize(Symbols& s) const override;

 private:
  bool clean_text_, handle_chinese_chars_, strip_accents_, lowercase_;
};

/// Lowercase: Rust's char::to_lowercase on every character.
class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

/// NFD: canonical decomposition and canonical ordering.
class NfdNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

/// StripAccents: drops combining marks (general category M*); meant to follow NFD/NFKD.
class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

/// Sequence: the normalizers one after the other.
class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(Symbols& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

/// Canonical ordering: stably sorts every run of non-starters by combining class.
void canonical_order(Symbols& s);

}  // namespace sluice::tok
