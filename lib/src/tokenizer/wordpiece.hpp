#pragma once
// The WordPiece model: greedy longest-match-first over a vocabulary, as Hugging Face
// tokenizers does it. Thread: any (const).

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pre_tokenizer.hpp"
#include "unicode.hpp"

namespace sluice::tok {

struct Token {
  std::int32_t id;
  std::uint32_t start;  // byte range in the original text
  std::uint32_t end;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

class WordPiece {
 public:
  WordPiece(Vocab vocab, std::string unk_token, std::string continuing_subword_prefix,
            std::size_t max_input_chars_per_word);

  /// Appends the tokens of word `span` of `s`.
  void tokenize(const Symbols& s, Span span, std::vector<Token>& out) const;

  const Vocab& vocab() const noexcept { return vocab_; }
  std::int32_t unk_id() const noexcept { return unk_id_; }

 private:
  Vocab vocab_;
  Vocab continuations_;  // "##ing" stored as "ing": no string building while matching
  std::string unk_token_;
  std::int32_t unk_id_ = -1;
  std::string prefix_;
  std::size_t max_chars_;
};

}  // namespace sluice::tok
