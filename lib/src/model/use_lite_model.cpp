// Universal Sentence Encoder Lite on libtorch (ATen): the forward pass of its TF.js graph
// (module_apply_default/Encoder_en/KonaTransformer, read node by node; docs/models.md has the
// whole description), on the weights tools/models/convert_use_lite.mjs writes.
//
// Per token, for ids e (embedding rows, 256 wide) at column c of its row:
//   x = e + (e + timing(c))       the graph adds the timing signal to a copy of the embedding
//                                 and then adds the embedding again
//   timing(c) = [sin(c * f), cos(c * f)], f the 128 stored frequencies (1 ... 1e-4)
// Two pre-norm transformer layers (widths 256 then 512, output 512, 4 heads, relu FFN of 1536):
//   h = LN(x); a = out(attention(qkv(h))); x = a + R(x); x = x + down(relu(up(LN(x))))
// where R is a learned projection to 512 in layer 0 (AdjustResidualInput) and the identity in
// layer 1; queries are scaled by 1/sqrt(head size) after their bias; layer norms use eps 1e-6
// and the biased variance; no final layer norm. Then the mean over the row's tokens (divided by
// max(count, 1)), tanh(W pooled + b), and x * rsqrt(max(sum x^2, 1e-12)).
//
// Padding is removed as in bert_model.cpp: layers run on the real tokens only ([T, width]) and
// attention row by row. The graph masks padded keys with a -1e9 bias, which gives them exactly
// zero weight, so this is the same computation.
//
// On CUDA (ModelOptions::device) the weights are moved to the device as they are read, the
// packed vectors go through DeviceStaging (device_staging.hpp), attention runs the rows one
// after the other and only the [batch, 512] result comes back.

#include "model/use_lite_model.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sluice/error.hpp>

#include "model/device_staging.hpp"
#include "model/packed_batch.hpp"

namespace sluice {
namespace {

constexpr std::int64_t kTimescales = 128;  // sin and cos of 128 frequencies: 256 = the embedding width
constexpr double kNormFloor = 1e-12;       // hidden_layers/l2_normalize/Maximum/y

struct Norm {
  at::Tensor weight, bias;
};

/// y = x W^T + b, W stored [out, in] (PyTorch's layout), kept transposed for addmm.
struct Dense {
  at::Tensor weight_t;  // [in, out]
  at::Tensor bias;      // [out]
  at::Tensor operator()(const at::Tensor& x) const { return at::addmm(bias, x, weight_t); }
};

struct Layer {
  std::int64_t width = 0;  // input width: 256 for layer 0, 512 after
  std::int64_t head_dim = 0;
  float query_scale = 1;
  Norm attention_norm;
  Dense qkv;       // [width] -> [3 * width]: q, k, v, each heads x head_dim
  Dense output;    // [width] -> [hidden]
  Dense residual;  // layer 0 only: [width] -> [hidden]; undefined when width == hidden
  Norm ffn_norm;
  Dense up, down;
};

class WeightReader {
 public:
  WeightReader(const SafetensorsFile& file, at::Device device) : file_(file), device_(device) {}

  at::Tensor get(const std::string& name, std::vector<std::int64_t> shape) const {
    const TensorView* t = file_.find(name);
    if (t == nullptr) {
      fail(name, "missing (expected a folder written by tools/models/convert_use_lite.mjs)");
    }
    at::ScalarType st = at::kFloat;
    switch (t->dtype) {
      case DType::f32:
        st = at::kFloat;
        break;
      case DType::f16:
        st = at::kHalf;
        break;
      case DType::bf16:
        st = at::kBFloat16;
        break;
      default:
        fail(name, fmt::format("dtype {} is not supported (expected F32, F16 or BF16)", dtype_name(t->dtype)));
    }
    if (t->shape != shape) {
      fail(name, fmt::format("shape {} does not match config.json, which implies [{}]", t->shape_string(),
                             fmt::join(shape, ", ")));
    }
    at::Tensor raw = at::empty(shape, at::TensorOptions().dtype(st));
    std::memcpy(raw.data_ptr(), t->data.data(), t->data.size());  // the mapping need not be aligned
    at::Tensor f32 = st == at::kFloat ? raw : raw.to(at::kFloat);
    return device_.is_cpu() ? f32 : f32.to(device_);  // moved once, at load
  }

  /// The second dimension of a 2-D tensor that must exist, for sizes config.json does not give.
  std::int64_t width(const std::string& name) const {
    const TensorView* t = file_.find(name);
    if (t == nullptr || t->shape.size() != 2) {
      fail(name, t == nullptr ? "missing (expected a folder written by tools/models/convert_use_lite.mjs)"
                              : fmt::format("shape {} is not two-dimensional", t->shape_string()));
    }
    return t->shape[1];
  }

  Dense dense(const std::string& name, std::int64_t out, std::int64_t in) const {
    const at::Tensor w = get(name + ".weight", {out, in});
    return Dense{w.t().contiguous(), get(name + ".bias", {out})};
  }

  Norm norm(const std::string& name, std::int64_t size) const {
    return Norm{get(name + ".weight", {size}), get(name + ".bias", {size})};
  }

 private:
  [[noreturn]] void fail(const std::string& name, std::string_view what) const {
    throw Error(ErrorCode::invalid_model, fmt::format("{}: tensor \"{}\": {}", file_.path().string(), name, what));
  }

  const SafetensorsFile& file_;
  at::Device device_;
};

class UseLiteModel final : public Model {
 public:
  UseLiteModel(const ModelConfig& config, const SafetensorsFile& weights, const ModelOptions& options)
      : staging_(torch_device(options.device)) {
    const TransformerConfig& c = config.transformer;
    const std::string config_file = (config.transformer_dir / "config.json").string();
    if (options.precision != Precision::fp32) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("precision {} is not available for the Universal Sentence Encoder Lite model (only fp32)",
                              precision_name(options.precision)));
    }
    if (config.pooling != Pooling::mean) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("pooling {} is not available for the Universal Sentence Encoder Lite model: its tanh "
                              "layer was trained on the mean of the tokens (only mean)",
                              pooling_name(config.pooling)));
    }
    if (c.hidden_act != "relu") {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: hidden_act \"{}\": the Universal Sentence Encoder Lite model uses relu", config_file,
                              c.hidden_act));
    }
    hidden_ = c.hidden_size;
    heads_ = c.num_attention_heads;
    intermediate_ = c.intermediate_size;
    vocab_ = c.vocab_size;
    eps_ = c.layer_norm_eps;
    max_columns_ = usable_positions(c);
    threads_ =
        options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    info_.family = "use_lite";
    info_.dir = config.dir;
    info_.hidden_size = c.hidden_size;
    info_.dimensions = c.hidden_size;
    info_.max_tokens = config.max_tokens;
    info_.layers = c.num_hidden_layers;
    info_.pooling = Pooling::mean;
    info_.normalize = config.normalize;
    info_.precision = Precision::fp32;
    info_.device = options.device;
    info_.prompts = config.prompts;
    info_.default_prompt_name = config.default_prompt_name;
    info_.include_prompt = config.include_prompt;

    try {
      c10::InferenceMode guard;
      WeightReader r(weights, staging_.device());
      // The embedding width is the first layer's width; it must hold sin and cos of every
      // timing-signal frequency.
      const std::int64_t E = r.width("embeddings.weight");
      if (E != 2 * kTimescales) {
        throw Error(ErrorCode::invalid_model,
                    fmt::format("{}: tensor \"embeddings.weight\" is {} wide; the timing signal needs {}",
                                weights.path().string(), E, 2 * kTimescales));
      }
      embeddings_ = r.get("embeddings.weight", {vocab_, E});
      inv_timescales_ = r.get("timing_signal.inv_timescales", {kTimescales});
      for (std::int64_t i = 0; i < static_cast<std::int64_t>(c.num_hidden_layers); ++i) {
        const std::string p = fmt::format("layers.{}.", i);
        Layer l;
        l.width = i == 0 ? E : hidden_;
        if (l.width % heads_ != 0) {
          throw Error(ErrorCode::invalid_model,
                      fmt::format("{}: layer {} is {} wide, not a multiple of num_attention_heads {}", config_file, i,
                                  l.width, heads_));
        }
        l.head_dim = l.width / heads_;
        // As the graph's MultiheadAttention/mul/y: 1/sqrt(head size) in float32.
        l.query_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(l.head_dim)));
        l.attention_norm = r.norm(p + "attention_norm", l.width);
        l.qkv = r.dense(p + "attention.qkv", 3 * l.width, l.width);
        l.output = r.dense(p + "attention.output", hidden_, l.width);
        if (l.width != hidden_) l.residual = r.dense(p + "residual", hidden_, l.width);
        l.ffn_norm = r.norm(p + "ffn_norm", hidden_);
        l.up = r.dense(p + "ffn.up", intermediate_, hidden_);
        l.down = r.dense(p + "ffn.down", hidden_, intermediate_);
        layers_.push_back(std::move(l));
      }
      head_ = r.dense("head", hidden_, hidden_);
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: cannot load the weights: {}", weights.path().string(), e.what_without_backtrace()));
    }
  }

  const ModelInfo& info() const override { return info_; }
  // embed() reads the model and writes only its own tensors; DeviceStaging holds no state
  // on the CPU (its CUDA arena is one per model, so calls there are one at a time).
  bool concurrent_embed() const noexcept override { return staging_.on_cpu(); }

  void embed(const TokenBatch& batch, std::span<float> out) override {
    if (batch.batch == 0) return;
    check_batch(batch, out, info_.dimensions, max_columns_);
    // at::set_num_threads sets OpenMP's count for the calling thread only, so it is checked on
    // the thread that runs the model, at every call.
    if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
    try {
      c10::InferenceMode guard;
      staging_.begin_batch();
      PackedBatch p = pack_batch(batch, vocab_, 1, false);
      staging_.copy_out(head(pool(forward(p), p)), out);
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::model_error, fmt::format("model inference failed: {}", e.what_without_backtrace()));
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::model_error, fmt::format("model inference failed: out of memory for a batch of {} x {} "
                                                      "tokens",
                                                      batch.batch, batch.seq_len));
    }
  }

 private:
  at::Tensor layer_norm(const at::Tensor& x, const Norm& n) const {
    return at::layer_norm(x, {x.size(1)}, n.weight, n.bias, eps_);
  }

  /// The transformer on the packed tokens: [T, hidden].
  at::Tensor forward(PackedBatch& p) {
    const at::Tensor e = at::index_select(embeddings_, 0, staging_.longs(p.ids));  // [T, 256]
    // Timing signal of each token's column: sin and cos of column * frequency, in float32.
    const at::Tensor columns = staging_.longs(p.columns).to(at::kFloat).unsqueeze(1);
    const at::Tensor angles = columns * inv_timescales_.unsqueeze(0);  // [T, 128]
    at::Tensor x = at::cat({at::sin(angles), at::cos(angles)}, 1);     // [T, 256]
    // AddTimingSignal gives e + timing; Layer_0/add adds the embedding once more.
    x.add_(e);
    x.add_(e);
    for (const Layer& l : layers_) {
      const at::Tensor h = layer_norm(x, l.attention_norm);
      at::Tensor qkv = l.qkv(h);  // [T, 3 * width]
      qkv.narrow(1, 0, l.width).mul_(l.query_scale);
      at::Tensor ctx = at::empty({p.tokens(), l.width}, x.options());
      attention(qkv, ctx, p, l.head_dim);
      at::Tensor a = l.output(ctx);  // [T, hidden]
      if (l.residual.weight_t.defined()) {
        a.add_(l.residual(x));
      } else {
        a.add_(x);
      }
      at::Tensor f = l.up(layer_norm(a, l.ffn_norm));
      at::relu_(f);
      x = l.down(f).add_(a);
    }
    return x;
  }

  /// softmax(q k^T) v per row over its real tokens, every head; into `ctx` [T, width].
  void attention(const at::Tensor& qkv, at::Tensor& ctx, const PackedBatch& p, std::int64_t head_dim) const {
    const std::int64_t nh = heads_, hd = head_dim;
    staging_.for_rows(p.batch, [&](std::int64_t begin, std::int64_t end) {
      c10::InferenceMode guard;  // thread-local: OpenMP's worker threads do not inherit it
      for (std::int64_t b = begin; b < end; ++b) {
        const std::int64_t L = p.counts[b];
        if (L == 0) continue;
        const at::Tensor rows = qkv.narrow(0, p.first[b], L).view({L, 3, nh, hd});
        const at::Tensor q = rows.select(1, 0).transpose(0, 1);     // [nh, L, hd]
        const at::Tensor k = rows.select(1, 1).permute({1, 2, 0});  // [nh, hd, L]
        const at::Tensor v = rows.select(1, 2).transpose(0, 1);     // [nh, L, hd]
        const at::Tensor probs = at::softmax(at::bmm(q, k), -1);
        at::Tensor o = ctx.narrow(0, p.first[b], L).view({L, nh, hd}).transpose(0, 1);
        at::bmm_out(o, probs, v);
      }
    });
  }

  /// The mean of each row's tokens, [B, hidden]; a row without tokens gives zeros.
  at::Tensor pool(const at::Tensor& x, PackedBatch& p) {
    const std::int64_t B = p.batch;
    at::Tensor sums = at::zeros({B, hidden_}, x.options());
    sums.index_add_(0, staging_.longs(p.rows), x);
    // Token counts are small integers: converted to float exactly, where the sums are.
    std::vector<std::int64_t> counts(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b) counts[static_cast<std::size_t>(b)] = std::max<std::int64_t>(p.counts[b], 1);
    return sums.div_(staging_.longs(counts).to(at::kFloat).view({B, 1}));
  }

  /// tanh(W pooled + b), then (unless normalisation is off) x * rsqrt(max(sum x^2, 1e-12)).
  at::Tensor head(const at::Tensor& pooled) const {
    at::Tensor y = head_(pooled).tanh_();
    if (info_.normalize) y.mul_(y.square().sum({1}, true).clamp_min_(kNormFloor).rsqrt_());
    return y;
  }

  ModelInfo info_;
  std::int64_t hidden_ = 0, heads_ = 0, intermediate_ = 0, vocab_ = 0, max_columns_ = 0;
  double eps_ = 1e-6;
  int threads_ = 1;
  at::Tensor embeddings_, inv_timescales_;
  std::vector<Layer> layers_;
  Dense head_;
  DeviceStaging staging_;
};

}  // namespace

std::unique_ptr<Model> load_use_lite_model(const ModelConfig& config, const SafetensorsFile& weights,
                                           const ModelOptions& options) {
  return std::make_unique<UseLiteModel>(config, weights, options);
}

}  // namespace sluice
