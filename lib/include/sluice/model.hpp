#pragma once
/// Embedding models loaded natively from a Hugging Face model folder (config.json,
/// model.safetensors, optional sentence-transformers files). libtorch stays behind this
/// interface: including this header does not include torch.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sluice/events.hpp>

namespace sluice {

enum class Pooling : std::uint8_t { mean, cls, max, last_token };

/// Numeric precision of the encoder's linear layers (where nearly all of its time goes).
enum class Precision : std::uint8_t {
  fp32,  ///< float32 throughout (the reference)
  bf16,  ///< weights stored in bfloat16 and the linear layers' matmuls run in bfloat16
         ///< (oneDNN on CPUs with AVX512-BF16/AMX; elsewhere libtorch's slow fallback);
         ///< attention, softmax, layer norms and residuals stay float32
  int8,  ///< dynamic int8 quantisation of the linear layers: weights int8 per output channel,
         ///< activations quantised per call to 7 bits (libtorch's quantized::linear_dynamic
         ///< with reduce_range, on its default quantized engine: oneDNN in Debian's build)
};

/// What kind of processor runs a model.
enum class DeviceKind : std::uint8_t {
  cpu,   ///< the CPU, with libtorch's intra-op threads (ModelOptions::threads)
  cuda,  ///< an NVIDIA GPU through a CUDA-enabled libtorch (meson -Dcuda=enabled; docs/models.md, "Devices")
};

/// Where a model runs: the CPU or one CUDA device.
struct Device {
  DeviceKind kind = DeviceKind::cpu;
  /// cuda only: the device's index as libtorch counts them (after CUDA_VISIBLE_DEVICES), 0 .. 127.
  int index = 0;

  bool operator==(const Device&) const = default;
};

/// The longest sequence a model folder accepts, special tokens included (ModelInfo::max_tokens),
/// read from its configuration files without loading the weights. Throws sluice::Error
/// (invalid_model) as Model::load does for a missing or malformed config.json.
std::uint32_t model_max_tokens(const std::filesystem::path& dir);

/// The device's name: "cpu" or "cuda:N".
std::string device_name(const Device& device);
/// Parses "cpu", "cuda" (which is cuda:0) or "cuda:N", N a decimal device index (0 .. 127).
/// Says nothing of whether the device exists: Model::load checks that.
/// Throws sluice::Error (invalid_argument) quoting the text and listing what is accepted.
Device parse_device(std::string_view text);

/// The stable name of a precision ("fp32", "bf16", "int8").
std::string_view precision_name(Precision precision) noexcept;
/// Parses a name produced by precision_name(); returns false for an unknown name.
bool precision_from_name(std::string_view name, Precision& out) noexcept;

/// What a loaded model is and how its output is pooled.
struct ModelInfo {
  /// The encoder: "bert", "roberta", "xlm-roberta", "jina_bert" (JinaBERT v2, config.json's
  /// model_type "bert" with ALiBi), or "torchscript" (a traced model.pt).
  std::string family;
  std::filesystem::path dir;
  std::uint32_t hidden_size = 0;
  std::uint32_t dimensions = 0;     ///< size of the returned embeddings
  std::uint32_t max_tokens = 0;     ///< longest sequence accepted, special tokens included
  std::uint32_t layers = 0;         ///< encoder layers (0 for a TorchScript module: unknown)
  Pooling pooling = Pooling::mean;  ///< the folder's, or ModelOptions::pooling
  bool normalize = true;            ///< L2-normalise the pooled vector (the folder's, or ModelOptions::normalize)
  Precision precision = Precision::fp32;
  Device device;                    ///< where it runs (ModelOptions::device)
  /// Named prompts from config_sentence_transformers.json's "prompts", in file order:
  /// (name, text), e.g. ("query", "query: "). The engine prepends the text to the input.
  std::vector<std::pair<std::string, std::string>> prompts;
  /// config_sentence_transformers.json's "default_prompt_name"; empty when none.
  std::string default_prompt_name;
  /// The Pooling module's "include_prompt" (default true). When false, mean and max pooling
  /// leave out each row's TokenBatch::prompt_tokens, as sentence-transformers does.
  bool include_prompt = true;
  /// Empty for a model that runs in this process; otherwise where its calls go, as the
  /// checkpoint's fingerprint names it (e.g. "NATS JetStream workers"): vectors made
  /// elsewhere may differ from this process's in their last bits, so a run is not resumed
  /// across a change of backend.
  std::string backend;
};

/// A padded batch of token ids, row-major [batch, seq_len]. Rows shorter than seq_len are
/// padded with the tokenizer's pad id and a 0 mask.
struct TokenBatch {
  std::uint32_t batch = 0;
  std::uint32_t seq_len = 0;
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> attention_mask;
  std::vector<std::int64_t> type_ids;
  /// Per row (or empty: none), how many leading real tokens are the prompt, counted as
  /// sentence-transformers counts prompt_length: the prompt's encoding with special tokens,
  /// less one (so a leading [CLS]/<s> is included). Only used when info().include_prompt is
  /// false: mean and max pooling then leave these tokens out (they are still attended to).
  std::vector<std::uint32_t> prompt_tokens;
  /// Per row, the text itself (prompt included, cut where the tokenizer truncated it): filled
  /// only for a model whose wants_texts() is true (a remote API), empty otherwise. The views
  /// live as long as the call.
  std::vector<std::string_view> texts;
};

struct ModelOptions {
  /// Intra-op threads for the model; 0 = every core. libtorch keeps this count per calling
  /// thread (OpenMP), so embed() applies it on the thread that calls it.
  int threads = 0;
  /// Overrides the folder's pooling (modules.json / 1_Pooling/config.json) when set.
  std::optional<Pooling> pooling;
  /// Overrides the folder's normalisation (a Normalize module) when set.
  std::optional<bool> normalize;
  /// Precision of the linear layers. bf16 and int8 trade accuracy for speed on CPUs that
  /// have the instructions for them (docs/models.md, "Precision", has measured figures).
  /// Not available for TorchScript folders (load throws invalid_argument). int8 runs on
  /// the CPU only.
  Precision precision = Precision::fp32;
  /// Where the model runs. On cuda the weights are moved to the device once at load; each
  /// batch's token ids go through a reused page-locked (pinned) host buffer and an
  /// asynchronous copy, and only the pooled [batch, dimensions] result is copied back.
  /// `threads` then bounds the CPU work only (packing the batch). Model::load throws
  /// invalid_argument when the device cannot be used: a build without CUDA, no visible CUDA
  /// device, an index out of range, or precision int8 (docs/models.md, "Devices").
  Device device;
};

class Model {
 public:
  virtual ~Model() = default;

  /// Loads the folder. Throws sluice::Error (invalid_model) naming the file and, for
  /// weights, the tensor that is missing or has the wrong shape or dtype.
  ///
  /// The folder holds config.json (model_type "bert", "roberta" or "xlm-roberta"; "bert"
  /// with position_embedding_type "alibi" is JinaBERT v2), the weights and optionally the
  /// sentence-transformers files: modules.json (a Normalize module turns on normalize), the
  /// Pooling module's config.json (mean, cls, max or lasttoken; include_prompt),
  /// sentence_bert_config.json (max_seq_length) and config_sentence_transformers.json
  /// (prompts). Without modules.json the model is mean-pooled and normalised. max_tokens =
  /// min(max_seq_length, the positions the model has).
  /// The weights are model.safetensors (F32, F16 or BF16, computed in F32 or as
  /// options.precision says); a folder without it but with model.pt loads that TorchScript
  /// module instead (docs/models.md, "TorchScript").
  /// Throws invalid_argument for an option the model cannot honour, including a device this
  /// build or machine does not have (checked here, once). Thread: any.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ModelOptions& options = {});

  virtual const ModelInfo& info() const = 0;

  /// Embeds a batch: writes batch * info().dimensions floats to `out`, row-major, pooled and
  /// (if info().normalize) L2-normalised. Only tokens with mask 1 count: padding costs nothing
  /// and changes nothing; cls pooling takes each row's first real token. `out` may be longer
  /// than needed. Thread: one thread at a time, unless concurrent_embed() says otherwise.
  /// Throws sluice::Error (model_error) on failure, including token ids outside the
  /// vocabulary and rows longer than the model's positions; never lets c10::Error escape.
  virtual void embed(const TokenBatch& batch, std::span<float> out) = 0;

  /// Whether embed() may run on several threads at once, each call with its own intra-op
  /// threads (ModelOptions::threads). The models Model::load returns allow it on the CPU
  /// (embed() changes nothing in the model); on a CUDA device calls are one at a time (they
  /// share the staging buffers and the device's stream). A Model of your own: false unless
  /// it overrides this.
  virtual bool concurrent_embed() const noexcept { return false; }

  /// How many calls a backend wants in flight at once, whatever this machine's cores; 0 (a
  /// model in this process): the pipeline chooses by cores (model_thread_layout()). A remote
  /// backend (NATS workers) says how many batches it keeps on the wire.
  virtual int calls_in_flight() const noexcept { return 0; }

  /// Whether embed() needs TokenBatch::texts (a remote API embeds texts, not this machine's
  /// token ids). The ids are still given: batching and limits count them.
  virtual bool wants_texts() const noexcept { return false; }

  /// Makes the calls under way return at once, throwing sluice::Error (cancelled), and every
  /// later call too: the pipeline calls it when a run stops or fails, so a backend that waits
  /// on other machines does not hold the stop. A model in this process ignores it (its calls
  /// end on their own). Thread: any.
  virtual void interrupt() noexcept {}

  /// Where a backend sends events of its own (a worker joined or left, a batch redelivered):
  /// the pipeline passes a function that any thread may call, and an empty one at the end of a
  /// run. The pipeline publishes them on its loop, in the order they were posted.
  virtual void set_event_sink(std::function<void(EventPayload)> post) { (void)post; }
};

}  // namespace sluice
