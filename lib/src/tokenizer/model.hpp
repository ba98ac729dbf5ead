#pragma once
// The model of a tokenizer.json ("model"): turns one pre-tokenized word into token ids.
// Implemented: WordPiece (wordpiece.hpp), BPE (bpe.hpp) and Unigram (unigram.hpp).
// Thread: any (const).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "unicode.hpp"

namespace sluice::tok {

/// A word: symbols [first, second) of the normalised text.
using Span = std::pair<std::size_t, std::size_t>;

/// One token with the byte range [start, end) of the original text it covers.
struct Token {
  std::int32_t id;
  std::uint32_t start;
  std::uint32_t end;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
/// token -> id, looked up with string_views without building strings.
using Vocab = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

class Model {
 public:
  virtual ~Model() = default;
  /// Appends the tokens of word `span` of `s`; offsets come from the symbols.
  virtual void tokenize(const Symbols& s, Span span, std::vector<Token>& out) const = 0;
  virtual std::optional<std::int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::optional<std::string_view> id_to_token(std::int32_t id) const = 0;
  /// One more than the largest id of the model's vocabulary.
  virtual std::size_t vocab_size() const = 0;
  /// Tokens in the model's vocabulary (Hugging Face's Model::get_vocab_size).
  virtual std::size_t token_count() const = 0;
};

}  // namespace sluice::tok
