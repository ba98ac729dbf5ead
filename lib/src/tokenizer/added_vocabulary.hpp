#pragma once
// Added tokens from tokenizer.json ("added_tokens"): matched in the text before the model
// sees it, as Hugging Face tokenizers' AddedVocabulary does. Tokens with normalized=false
// (the special tokens, usually) match the raw text; the others match the normalised text,
// their own content normalised the same way. Matches are leftmost-longest and do not overlap;
// single_word, lstrip and rstrip behave as in Hugging Face. Thread: any (const).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"
#include "normalizer.hpp"

namespace sluice::tok {

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool special = false;
  bool single_word = false;  ///< only where no word character touches it on either side
  bool lstrip = false;       ///< takes the whitespace before it
  bool rstrip = false;       ///< takes the whitespace after it
  bool normalized = false;   ///< matches the normalised text rather than the raw text
};

/// One match: [begin, end) in bytes of the raw text, or in symbols of the normalised text.
struct AddedMatch {
  std::size_t begin;
  std::size_t end;
  std::int32_t id;
};

class AddedVocabulary {
 public:
  /// `normalizer` (may be null) normalises the content of the normalized=true tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);
  AddedVocabulary(const AddedVocabulary&) = delete;  // patterns point into tokens_
  AddedVocabulary& operator=(const AddedVocabulary&) = delete;

  /// Matches of the normalized=false tokens in the raw text (byte ranges), in order.
  void find_in_raw(std::string_view text, std::vector<AddedMatch>& out) const;
  /// Matches of the normalized=true tokens in normalised symbols (symbol ranges), in order.
  void find_in_normalized(const Symbols& s, std::vector<AddedMatch>& out) const;
  bool has_raw() const noexcept { return !raw_.patterns.empty(); }
  bool has_normalized() const noexcept { return !normalized_.patterns.empty(); }

  const std::vector<AddedToken>& tokens() const noexcept { return tokens_; }
  const AddedToken* find(std::string_view content) const;
  const AddedToken* find(std::int32_t id) const;

 private:
  struct Pattern {
    std::string text;
    const AddedToken* token;
  };
  // Patterns by first byte, longest first: the candidates at one position, in match order.
  struct PatternSet {
    std::vector<Pattern> patterns;
    std::array<std::vector<std::uint32_t>, 256> by_first_byte;
  };
  static void build(PatternSet& set);
  static void find(const PatternSet& set, std::string_view text, std::vector<AddedMatch>& out);

  std::vector<AddedToken> tokens_;
  PatternSet raw_;
  PatternSet normalized_;
};

}  // namespace sluice::tok
