#pragma once
// Normalizers from tokenizer.json: rewrite the text symbol by symbol, keeping each symbol's
// original byte range. Thread: any (const).

#include <memory>
#include <vector>

#include "unicode.hpp"

namespace sluice::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(Symbols& s) const = 0;
};

/// BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD then drop Mn),
/// lowercase, in that order, as Hugging Face tokenizers applies them.
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

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

class NfdNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

/// Drops nonspacing marks (Mn); meant to follow NFD.
class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s) const override;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(Symbols& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// Building blocks, shared by the normalizers above.
void clean_text(Symbols& s);
void pad_chinese_chars(Symbols& s);
void nfd(Symbols& s);
void drop_nonspacing_marks(Symbols& s);
void lowercase(Symbols& s);

}  // namespace sluice::tok
