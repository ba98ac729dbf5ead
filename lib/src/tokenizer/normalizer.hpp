#pragma once
// Normalizers from tokenizer.json ("normalizer"): rewrite the text symbol by symbol, each
// output symbol keeping the byte range of the original character it came from, so token
// offsets survive normalisation. Thread: any (const; scratch space is per thread).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "regex.hpp"
#include "unicode.hpp"

namespace sluice::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  /// Rewrites `s` in place. `base` is the byte offset where the text of `s` starts in the
  /// original (a character inserted before every other one gets the empty range [base, base)).
  virtual void normalize(Symbols& s, std::uint32_t base) const = 0;
};

/// Rewrites symbols as Hugging Face's NormalizedString::transform does, so that offsets come out
/// the same even where its bookkeeping is surprising. The new text is given character by
/// character, each with a change: 0 replaces the next old character (and takes its range), -n
/// also removes the n old characters after it, +1 inserts a character (with the range of the
/// old character before it, or [base, base) at the very start). Old characters left over at the
/// end are dropped.
class Transform {
 public:
  Transform(const Symbols& old, Symbols& out, std::uint32_t base, std::size_t initial_removed = 0)
      : old_(old), out_(out), base_(base), pos_(initial_removed) {}
  void emit(char32_t c, std::ptrdiff_t change);
  /// Copies the next old character unchanged (emit(c, 0) with its own character).
  void keep() { emit(old_[pos_].c, 0); }
  /// Skips `n` old characters (they are removed; a following insertion takes the last one's range).
  void skip(std::size_t n) { pos_ = std::min(pos_ + n, old_.size()); }
  std::size_t position() const noexcept { return pos_; }

 private:
  const Symbols& old_;
  Symbols& out_;
  std::uint32_t base_;
  std::size_t pos_;
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
  void normalize(Symbols& s, std::uint32_t base) const override;

 private:
  // The steps one after the other (normalize() fuses them where that gives the same ranges).
  void normalize_in_steps(Symbols& s, std::uint32_t base) const;
  // clean_text and handle_chinese_chars over `s` into `out`: dropped characters skipped,
  // whitespace as a space, a Chinese character between spaces; `emit(sym, char class)` puts
  // each kept character (Chinese ones included) into `out`.
  template <typename Emit>
  void clean_and_space(const Symbols& s, Symbols& out, Emit&& emit) const;

  bool clean_text_, handle_chinese_chars_, strip_accents_, lowercase_;
};

/// Lowercase: Rust's char::to_lowercase on every character.
class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s, std::uint32_t base) const override;
};

/// NFD: canonical decomposition and canonical ordering.
class NfdNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s, std::uint32_t base) const override;
};

/// StripAccents: drops combining marks (general category M*); meant to follow NFD/NFKD.
class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s, std::uint32_t base) const override;
};

/// Sequence: the normalizers one after the other.
class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(Symbols& s, std::uint32_t base) const override {
    for (const auto& p : parts_) p->normalize(s, base);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

/// NFKD: compatibility decomposition and canonical ordering.
class NfkdNormalizer : public Normalizer {
 public:
  void normalize(Symbols& s, std::uint32_t base) const override;
};

/// NFC, or NFKC with `compat`: decomposition, canonical ordering, canonical composition.
class NfcNormalizer : public Normalizer {
 public:
  explicit NfcNormalizer(bool compat) : compat_(compat) {}
  void normalize(Symbols& s, std::uint32_t base) const override;

 private:
  bool compat_;
};

/// Replace: every match of a literal string or a regular expression becomes `content`.
class ReplaceNormalizer : public Normalizer {
 public:
  /// `regex` null: `literal` is matched as it is (it must not be empty).
  ReplaceNormalizer(std::u32string literal, std::unique_ptr<Regex> regex, std::u32string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void normalize(Symbols& s, std::uint32_t base) const override;

 private:
  std::u32string literal_;
  std::unique_ptr<Regex> regex_;
  std::u32string content_;
};

/// Prepend: puts `prefix` before a non-empty text.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::u32string prefix) : prefix_(std::move(prefix)) {}
  void normalize(Symbols& s, std::uint32_t base) const override;

 private:
  std::u32string prefix_;
};

/// Strip: removes leading and/or trailing whitespace.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(Symbols& s, std::uint32_t base) const override;

 private:
  bool left_, right_;
};

/// Precompiled: SentencePiece's normalization rules (a `precompiled_charsmap`: a double-array
/// trie over UTF-8 and the replacement strings), looked up as Hugging Face's `spm_precompiled`
/// crate and Precompiled normalizer do: per extended grapheme cluster shorter than 6 bytes,
/// else per character, taking the first (shortest) matching key.
class PrecompiledNormalizer : public Normalizer {
 public:
  /// `charsmap`: the decoded bytes. Throws sluice::Error (invalid_model) when malformed.
  explicit PrecompiledNormalizer(std::string charsmap);
  void normalize(Symbols& s, std::uint32_t base) const override;
  /// The replacement of the shortest key that prefixes `bytes`, if any.
  std::optional<std::string_view> transform(std::string_view bytes) const;

 private:
  std::vector<std::uint32_t> trie_;
  std::string normalized_;
};

/// NFD (or NFKD with `compat`) of `s`, with Hugging Face's offsets.
void decompose(Symbols& s, std::uint32_t base, bool compat);

}  // namespace sluice::tok
