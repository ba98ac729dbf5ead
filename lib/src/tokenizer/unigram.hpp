#pragma once
// The Unigram model (SentencePiece's): the segmentation of a word into vocabulary pieces with the
// highest total score, found with Viterbi over a trie of the pieces, as Hugging Face tokenizers'
// Unigram::encode_optimized does. A character no piece covers gets the unknown token with the
// lowest score minus 10; adjacent unknowns are fused into one token; with byte_fallback an
// unknown piece becomes its <0xXX> byte tokens when they all exist.
//
// Lattice::tfjs segments as the JavaScript tokenizer of TensorFlow.js' Universal Sentence Encoder
// (tfjs-models, and @energetic-ai/embeddings, which sluice's default model comes from) does, so
// that converted model gets the ids its own runtime gives: an equal score goes to the split that
// starts later, an unknown character scores 0, and a best score of exactly 0 counts as "no path
// yet" (that code's initial value), so any candidate replaces it. Thread: any (const).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model.hpp"

namespace sluice::tok {

class Unigram : public Model {
 public:
  /// How the best path is chosen (see the top of this file).
  enum class Lattice { hugging_face, tfjs };

  /// `vocab`: pieces and scores, the id of each is its index. Throws sluice::Error
  /// (invalid_model) when `unk_id` is outside the vocabulary.
  Unigram(std::vector<std::pair<std::string, double>> vocab, std::optional<std::int32_t> unk_id, bool byte_fallback,
          Lattice lattice = Lattice::hugging_face);

  void tokenize(const Symbols& s, Span span, std::vector<Token>& out) const override;
  std::optional<std::int32_t> token_to_id(std::string_view token) const override;
  std::optional<std::string_view> id_to_token(std::int32_t id) const override;
  std::size_t vocab_size() const noexcept override { return pieces_.size(); }
  std::size_t token_count() const noexcept override { return pieces_.size(); }

 private:
  // A byte trie of the pieces: node `n`'s children are edges_[first_[n] .. first_[n + 1]),
  // sorted by byte; id_[n] is the piece that ends there, -1 for none.
  struct Edge {
    std::uint8_t byte;
    std::uint32_t node;
  };
  std::vector<std::uint32_t> first_;
  std::vector<Edge> edges_;
  std::vector<std::int32_t> id_;

  std::vector<std::pair<std::string, double>> pieces_;
  Vocab vocab_;
  std::optional<std::int32_t> unk_id_;
  bool byte_fallback_;
  Lattice lattice_;
  double unk_score_ = 0;
  std::int32_t byte_ids_[256];
};

}  // namespace sluice::tok
