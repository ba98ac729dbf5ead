#pragma once
// The BPE model: a word starts as one symbol per character (or per byte with byte_fallback) and
// the pair of adjacent symbols with the lowest merge rank is merged until none is left, as
// Hugging Face tokenizers' BPE does (the leftmost pair first among equal ranks). Byte-level BPE
// (GPT-2, RoBERTa) is this model after the ByteLevel pre-tokenizer. Dropout is not supported.
// Thread: any (const; a per-thread cache keeps the tokens of recent words).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model.hpp"

namespace sluice::tok {

class Bpe : public Model {
 public:
  struct Options {
    std::optional<std::string> unk_token;  ///< none: characters missing from the vocabulary are dropped
    std::string continuing_subword_prefix;
    std::string end_of_word_suffix;
    bool fuse_unk = false;
    bool byte_fallback = false;  ///< unknown characters become <0xXX> byte tokens when all exist
    bool ignore_merges = false;  ///< a word that is in the vocabulary is one token
  };
  /// Throws sluice::Error (invalid_model) when a merge names a token that is not in `vocab`.
  Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options options);

  void tokenize(const Symbols& s, Span span, std::vector<Token>& out) const override;
  std::optional<std::int32_t> token_to_id(std::string_view token) const override;
  std::optional<std::string_view> id_to_token(std::int32_t id) const override;
  std::size_t vocab_size() const noexcept override { return by_id_.size(); }
  std::size_t token_count() const noexcept override { return vocab_.size(); }

 private:
  struct Merge {
    std::uint32_t rank;
    std::int32_t new_id;
  };
  // A piece of the word being merged: token `id` covering word characters [begin, end).
  struct Piece {
    std::int32_t id;
    std::uint32_t begin, end;
  };
  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }
  void initial_pieces(const Symbols& s, std::size_t b, std::size_t e, std::vector<Piece>& pieces) const;
  void merge_all(std::vector<Piece>& pieces) const;

  Vocab vocab_;
  std::vector<std::string_view> by_id_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  Options options_;
  std::int32_t unk_id_ = -1;
  std::int32_t byte_ids_[256];  // <0xXX> ids, -1 when missing
  std::uintptr_t cache_key_;    // identifies this model in the per-thread cache
};

}  // namespace sluice::tok
