// A traced TorchScript encoder (model.pt) behind the Model interface: libtorch's JIT runs the
// module on the padded batch; the padding is then dropped and the rows pooled exactly as for the
// native encoders (packed_batch.cpp), so the two paths differ only in the forward pass. On
// CUDA (ModelOptions::device) the module is moved to the device at load and its inputs go
// through DeviceStaging (device_staging.hpp).

#include "model/torchscript_model.hpp"

#include <torch/script.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <span>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sluice/error.hpp>

#include "model/device_staging.hpp"
#include "model/packed_batch.hpp"

namespace sluice {
namespace {

class TorchScriptModel final : public Model {
 public:
  TorchScriptModel(const ModelConfig& config, const std::filesystem::path& module_path, const ModelOptions& options)
      : path_(module_path), staging_(torch_device(options.device)) {
    if (options.precision != Precision::fp32) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: precision {} is not available for a TorchScript module (only fp32: the module "
                              "fixes its own arithmetic)",
                              module_path.string(), precision_name(options.precision)));
    }
    const TransformerConfig& c = config.transformer;
    info_.family = "torchscript";
    info_.dir = config.dir;
    info_.hidden_size = c.hidden_size;
    info_.dimensions = c.hidden_size;
    info_.max_tokens = config.max_tokens;
    info_.layers = 0;
    info_.pooling = config.pooling;
    info_.normalize = config.normalize;
    info_.precision = Precision::fp32;
    info_.device = options.device;
    info_.prompts = config.prompts;
    info_.default_prompt_name = config.default_prompt_name;
    info_.include_prompt = config.include_prompt;
    vocab_ = c.vocab_size;
    max_columns_ = usable_positions(c);
    threads_ = options.threads > 0 ? options.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    try {
      module_ = torch::jit::load(module_path.string());
      module_.eval();
      if (!staging_.on_cpu()) module_.to(staging_.device());  // once, at load
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::invalid_model, fmt::format("{}: cannot load the TorchScript module: {}",
                                                        module_path.string(), e.what_without_backtrace()));
    }
    // One two-token row, to find out now whether the module takes and returns what it should.
    try {
      c10::InferenceMode guard;
      staging_.begin_batch();
      std::vector<std::int64_t> ids{0, 0}, mask{1, 1};
      const at::Tensor out = run(ids, mask, 1, 2);
      (void)out;
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: forward(input_ids, attention_mask) fails on a [1, 2] batch: {}",
                              module_path.string(), e.what_without_backtrace()));
    } catch (const Error& e) {
      throw Error(ErrorCode::invalid_model, e.what());
    }
  }

  const ModelInfo& info() const override { return info_; }
  // embed() reads the model and writes only its own tensors; DeviceStaging holds no state
  // on the CPU (its CUDA arena is one per model, so calls there are one at a time).
  bool concurrent_embed() const noexcept override { return staging_.on_cpu(); }

  void embed(const TokenBatch& batch, std::span<float> out) override {
    if (batch.batch == 0) return;
    check_batch(batch, out, info_.dimensions, max_columns_);
    if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
    try {
      c10::InferenceMode guard;
      staging_.begin_batch();
      // Token types must be 0: the module takes none.
      PackedBatch p = pack_batch(batch, vocab_, 1, !info_.include_prompt);
      at::Tensor hidden;  // [B, S, H]
      if (staging_.on_cpu()) {
        // The CPU tensors view these copies (the batch is const).
        std::vector<std::int64_t> ids = batch.ids, mask = batch.attention_mask;
        hidden = run(ids, mask, batch.batch, batch.seq_len);
      } else {
        hidden = run(batch.ids, batch.attention_mask, batch.batch, batch.seq_len);  // staged: copied
      }
      const at::Tensor x =
          at::index_select(hidden.reshape({p.batch * p.seq_len, hidden.size(2)}), 0, staging_.longs(p.flat));
      pool_into(x, p, info_.pooling, info_.normalize, staging_, out);
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::model_error, fmt::format("model inference failed: {}", e.what_without_backtrace()));
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::model_error, fmt::format("model inference failed: out of memory for a batch of {} x {} "
                                                      "tokens",
                                                      batch.batch, batch.seq_len));
    }
  }

 private:
  /// forward(input_ids, attention_mask) -> [B, S, H] float32, checked.
  /// `ids` and `mask` are [B, S] row-major; on the CPU the input tensors view them.
  at::Tensor run(std::span<const std::int64_t> ids, std::span<const std::int64_t> mask, std::int64_t B,
                 std::int64_t S) {
    std::vector<c10::IValue> inputs{staging_.longs(ids).view({B, S}), staging_.longs(mask).view({B, S})};
    c10::IValue result = module_.forward(inputs);
    if (result.isTuple()) {
      const auto& elements = result.toTupleRef().elements();
      if (elements.empty()) throw Error(ErrorCode::model_error, "model inference failed: the module returned an empty tuple");
      result = elements[0];
    }
    if (!result.isTensor()) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: {}: the module returned a {}, expected a tensor [batch, "
                              "tokens, hidden_size] or a tuple starting with one",
                              path_.string(), result.tagKind()));
    }
    at::Tensor t = result.toTensor();
    if (t.dim() != 3 || t.size(0) != B || t.size(1) != S || t.size(2) != static_cast<std::int64_t>(info_.hidden_size)) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: {}: the module returned a tensor of shape [{}] for a [{}, {}] "
                              "batch, expected [{}, {}, {}] (hidden_size from config.json)",
                              path_.string(), fmt::join(t.sizes(), ", "), B, S, B, S, info_.hidden_size));
    }
    if (t.device() != staging_.device()) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: {}: the module returned a tensor on {}, expected {} (a module "
                              "traced on another device can keep tensors there: trace it on this one)",
                              path_.string(), t.device().str(), staging_.device().str()));
    }
    return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
  }

  std::filesystem::path path_;
  ModelInfo info_;
  torch::jit::Module module_;
  std::int64_t vocab_ = 0, max_columns_ = 0;
  int threads_ = 1;
  DeviceStaging staging_;
};

}  // namespace

std::unique_ptr<Model> load_torchscript_model(const ModelConfig& config, const std::filesystem::path& module_path,
                                              const ModelOptions& options) {
  return std::make_unique<TorchScriptModel>(config, module_path, options);
}

}  // namespace sluice
