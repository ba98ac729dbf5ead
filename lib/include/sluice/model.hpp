#pragma once
/// Embedding models loaded natively from a Hugging Face model folder (config.json,
/// model.safetensors, optional sentence-transformers files). libtorch stays behind this
/// interface: including this header does not include torch.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace sluice {

enum class Pooling : std::uint8_t { mean, cls, max, last_token };

/// What a loaded model is and how its output is pooled.
struct ModelInfo {
  std::string family;               ///< "bert", ...
  std::filesystem::path dir;
  std::uint32_t hidden_size = 0;
  std::uint32_t dimensions = 0;     ///< size of the returned embeddings
  std::uint32_t max_tokens = 0;     ///< longest sequence accepted, special tokens included
  std::uint32_t layers = 0;
  Pooling pooling = Pooling::mean;
  bool normalize = true;            ///< L2-normalise the pooled vector
};

/// A padded batch of token ids, row-major [batch, seq_len]. Rows shorter than seq_len are
/// padded with the tokenizer's pad id and a 0 mask.
struct TokenBatch {
  std::uint32_t batch = 0;
  std::uint32_t seq_len = 0;
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> attention_mask;
  std::vector<std::int64_t> type_ids;
};

struct ModelOptions {
  /// Intra-op threads for the model; 0 = every core. libtorch keeps this count per calling
  /// thread (OpenMP), so embed() applies it on the thread that calls it.
  int threads = 0;
};

class Model {
 public:
  virtual ~Model() = default;

  /// Loads the folder. Throws sluice::Error (invalid_model) naming the file and, for
  /// weights, the tensor that is missing or has the wrong shape or dtype.
  ///
  /// The folder holds config.json (model_type "bert"), model.safetensors (F32, F16 or BF16,
  /// computed in F32) and optionally the sentence-transformers files: modules.json (a
  /// Normalize module turns on normalize), the Pooling module's config.json (mean, cls, max or
  /// lasttoken) and sentence_bert_config.json (max_seq_length). Without modules.json the model
  /// is mean-pooled and normalised. max_tokens = min(max_seq_length, max_position_embeddings).
  /// Thread: any.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ModelOptions& options = {});

  virtual const ModelInfo& info() const = 0;

  /// Embeds a batch: writes batch * info().dimensions floats to `out`, row-major, pooled and
  /// (if info().normalize) L2-normalised. Only tokens with mask 1 count: padding costs nothing
  /// and changes nothing; cls pooling takes each row's first real token. `out` may be longer
  /// than needed. Thread: one thread at a time (the inference thread).
  /// Throws sluice::Error (model_error) on failure, including token ids outside the
  /// vocabulary and rows longer than the model's positions; never lets c10::Error escape.
  virtual void embed(const TokenBatch& batch, std::span<float> out) = 0;
};

}  // namespace sluice
