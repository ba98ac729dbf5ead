#pragma once
// The WordPiece model: greedy longest-match-first over a vocabulary, as Hugging Face
// tokenizers does it. Thread: any (const).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace sluice::tok {

class WordPiece : public Model {
 public:
  /// Throws sluice::Error (invalid_model) when `unk_token` is not in `vocab`.
  WordPiece(Vocab vocab, std::string unk_token, std::string continuing_subword_prefix,
            std::size_t max_input_chars_per_word);

  void tokenize(const Symbols& s, Span span, std::vector<Token>& out) const override;
  std::optional<std::int32_t> token_to_id(std::string_view token) const override;
  std::optional<std::string_view> id_to_token(std::int32_t id) const override;
  std::size_t vocab_size() const noexcept override { return by_id_.size(); }
  std::size_t token_count() const noexcept override { return vocab_.size(); }

  std::int32_t unk_id() const noexcept { return unk_id_; }

 private:
  Vocab vocab_;
  Vocab continuations_;                  // "##ing" stored as "ing": no string building while matching
  std::vector<std::string_view> by_id_;  // id -> token (views into vocab_'s keys)
  std::string unk_token_;
  std::int32_t unk_id_ = -1;
  std::string prefix_;
  std::size_t max_chars_;
  std::size_t longest_ = 0;  // bytes of the longest token (continuations without their prefix)
};

}  // namespace sluice::tok
