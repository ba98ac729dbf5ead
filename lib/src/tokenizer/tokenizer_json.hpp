#pragma once
// Reads a Hugging Face tokenizer.json into the components of a tokenizer.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "added_vocabulary.hpp"
#include "model.hpp"
#include "normalizer.hpp"
#include "post_processor.hpp"
#include "pre_tokenizer.hpp"

namespace sluice::tok {

struct TokenizerParts {
  std::unique_ptr<Normalizer> normalizer;       ///< null: none
  std::unique_ptr<PreTokenizer> pre_tokenizer;  ///< null: none
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post_processor;  ///< null: none
  std::vector<AddedToken> added_tokens;
  std::optional<std::size_t> max_length;  ///< "truncation": max_length, special tokens included
  bool truncate_left = false;             ///< "truncation": direction "Left"
  std::optional<std::int32_t> pad_id;     ///< "padding": pad_id
  /// Whether cutting the text just before a run of whitespace changes none of the tokens
  /// before the cut: the normalizer looks at one character (or grapheme) at a time, the
  /// pre-tokenizer always ends a word at whitespace, and no added token holds whitespace. Then
  /// a text truncated on the right can be tokenised a prefix at a time (tokenizer.cpp).
  bool cut_at_whitespace_safe = false;
};

/// Parses the text of a tokenizer.json. Throws sluice::Error (invalid_model) with a message
/// that starts with "tokenizer.json: " and names the unsupported or malformed part, e.g.
/// `tokenizer.json: unsupported normalizer type "Precompiled"`. Thread: any.
TokenizerParts parse_tokenizer_json(std::string_view json);

}  // namespace sluice::tok
