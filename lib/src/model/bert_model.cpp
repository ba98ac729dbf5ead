// The BERT-family encoders on libtorch (ATen): the forward passes of Hugging Face's BertModel,
// RobertaModel / XLMRobertaModel and Jina AI's JinaBERT v2 (both of its published layouts),
// then pooling and L2 normalisation (packed_batch.cpp).
//
// What differs between the families:
// - positions: BERT adds a learned embedding per column; RoBERTa per count of non-padding ids
//   so far, offset by the padding index (create_position_ids_from_input_ids); JinaBERT has no
//   position embeddings and adds ALiBi to the attention scores instead: -slope(head) * |i - j|,
//   symmetric, with the slopes of the ALiBi paper (and its workaround for head counts that are
//   not a power of two).
// - the feed-forward: BERT's dense-activation-dense; JinaBERT's gated linear unit (one matmul to
//   2 x intermediate, GELU or ReLU on one half times the other half, no bias).
// - layer norms: JinaBERT's qk-post-norm layout (jina-embeddings-v2-base-code) normalises the
//   query and key projections, and adds the layer input to the attention block's output a
//   second time before layer_norm_1 (as its modeling code does).
//
// Speed notes:
// - Q, K and V are one [3H, H] matmul (the three weights are concatenated at load), and the
//   1/sqrt(head_dim) attention scale is folded into the query weight and bias (into the query
//   layer norm's weight and bias where there is one).
// - Padding is removed: every layer runs on the real tokens only ([T, H], T = tokens with
//   mask 1), and attention runs row by row over each row's real tokens. In these models a
//   padded position never influences a real one (masked keys get zero weight), so this changes
//   nothing in the result, and a batch costs what its real tokens cost. ALiBi's bias depends
//   only on the columns of the two tokens, so it is built per row for that row's tokens.
// - q, k, v and the attention output are strided views: no permute copies.
// - Everything runs under c10::InferenceMode (no autograd bookkeeping).
// - Precision::bf16 and ::int8 change only the linear layers (Linear below).
//
// Devices (ModelOptions::device; device_staging.hpp): on CUDA the weights are moved to the
// device as they are read, the packed index vectors go through DeviceStaging, attention runs
// the rows one after the other (the kernels queue on the device's stream) and only the pooled
// result comes back. On the CPU nothing of this changes what runs.

#include "model/bert_model.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sluice/error.hpp>

#include "model/device_staging.hpp"
#include "model/layer_norm.hpp"
#include "model/packed_batch.hpp"

namespace sluice {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

enum class Activation { gelu, gelu_tanh, relu, silu };

/// How the layers are wired (see the top of this file).
enum class Arch {
  bert,          ///< BERT, RoBERTa, XLM-RoBERTa
  jina,          ///< JinaBERT v2, jina-bert-implementation (gated_layers, wo, layernorm)
  jina_qk_norm,  ///< JinaBERT v2, jina-bert-v2-qk-post-norm (layer_norm_q/k, up_gated_layer, down_layer)
};

enum class Positions { absolute, roberta, alibi };

std::string config_path(const ModelConfig& config) { return (config.transformer_dir / "config.json").string(); }

Activation parse_activation(const ModelConfig& config) {
  const std::string& a = config.transformer.hidden_act;
  if (a == "gelu") return Activation::gelu;
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return Activation::gelu_tanh;
  if (a == "relu") return Activation::relu;
  if (a == "silu" || a == "swish") return Activation::silu;
  throw Error(ErrorCode::invalid_model,
              fmt::format("{}: hidden_act \"{}\" is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, "
                          "relu, silu)",
                          config_path(config), a));
}

void activate(at::Tensor& h, Activation activation) {
  switch (activation) {
    case Activation::gelu: at::gelu_(h, "none"); break;
    case Activation::gelu_tanh: at::gelu_(h, "tanh"); break;
    case Activation::relu: at::relu_(h); break;
    case Activation::silu: at::silu_(h); break;
  }
}

/// The ALiBi slopes of JinaBERT (and the ALiBi paper) for `heads` heads, computed in double
/// the way its Python does, then rounded to float.
std::vector<float> alibi_slopes(std::int64_t heads) {
  auto power_of_2 = [](std::int64_t n) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(n)) - 3)));
    std::vector<double> out;
    for (std::int64_t i = 0; i < n; ++i) out.push_back(start * std::pow(start, static_cast<double>(i)));
    return out;
  };
  std::vector<double> slopes;
  const auto closest = static_cast<std::int64_t>(std::pow(2.0, std::floor(std::log2(static_cast<double>(heads)))));
  slopes = power_of_2(closest);
  if (closest != heads) {
    // The workaround for other head counts: every other slope of twice the closest power of 2.
    const std::vector<double> extra = power_of_2(2 * closest);
    for (std::size_t i = 0; i < extra.size() && static_cast<std::int64_t>(slopes.size()) < heads; i += 2) {
      slopes.push_back(extra[i]);
    }
  }
  return std::vector<float>(slopes.begin(), slopes.end());
}

/// int8: libtorch's dynamic quantisation ops, found through the dispatcher (their packed-weight
/// class is not in the installed headers, so the calls are boxed).
struct QuantizedOps {
  c10::OperatorHandle prepack;
  c10::OperatorHandle linear_dynamic;

  static const QuantizedOps& get() {
    static const QuantizedOps ops{
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", ""),
        c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", ""),
    };
    return ops;
  }
};

/// A dense layer y = x W^T + b in the chosen precision. x and y are float32 [T, in] / [T, out].
class Linear {
 public:
  Linear() = default;

  /// `weight` [out, in] and `bias` [out] (or undefined) in float32.
  Linear(const at::Tensor& weight, const at::Tensor& bias, Precision precision) : precision_(precision) {
    switch (precision) {
      case Precision::fp32:
        weight_t_ = weight.t().contiguous();
        bias_ = bias;
        break;
      case Precision::bf16:
        // The matmul in bfloat16 (oneDNN where the CPU has the instructions); the bias is
        // added in float32 afterwards, so it keeps its precision.
        weight_t_ = weight.t().contiguous().to(at::kBFloat16);
        bias_ = bias;
        break;
      case Precision::int8: {
        // Symmetric int8 per output channel: scale = max |w| / 127 over each row of W.
        const at::Tensor scales = weight.abs().amax({1}).div_(127.0).clamp_min_(1e-12).to(at::kDouble);
        const at::Tensor zeros = at::zeros({weight.size(0)}, at::TensorOptions().dtype(at::kLong));
        const at::Tensor q = at::quantize_per_channel(weight.contiguous(), scales, zeros, 0, at::kQInt8);
        std::vector<c10::IValue> stack{q, bias.defined() ? c10::IValue(bias) : c10::IValue()};
        QuantizedOps::get().prepack.callBoxed(&stack);
        packed_ = std::move(stack.at(0));
        break;
      }
    }
  }

  /// y = x W^T + b. `dst` ([T, out], contiguous), where given, receives y in float32 and
  /// precisions fp32 and bf16 write it there (fp32 with no other memory); int8's operator
  /// returns a tensor of its own. Returns y.
  at::Tensor operator()(const at::Tensor& x, at::Tensor dst = {}) const {
    switch (precision_) {
      case Precision::fp32:
        if (dst.defined()) return bias_.defined() ? at::addmm_out(dst, bias_, x, weight_t_) : at::mm_out(dst, x, weight_t_);
        return bias_.defined() ? at::addmm(bias_, x, weight_t_) : at::mm(x, weight_t_);
      case Precision::bf16: {
        const at::Tensor y16 = at::mm(x.to(at::kBFloat16), weight_t_);
        at::Tensor y = dst.defined() ? dst.copy_(y16) : y16.to(at::kFloat);
        return bias_.defined() ? y.add_(bias_) : y;
      }
      case Precision::int8: {
        // reduce_range: 7-bit activations, as torch.ao's dynamic Linear always asks for. x86's
        // u8 x s8 multiply-add (vpmaddubsw) saturates 16-bit sums with 8-bit activations on
        // CPUs without VNNI: measured on minilm's layers, cosine 0.994 per output without it,
        // 0.9998 with it. (qnnpack ignores it.)
        std::vector<c10::IValue> stack{x.contiguous(), packed_, true};
        QuantizedOps::get().linear_dynamic.callBoxed(&stack);
        return stack.at(0).toTensor();
      }
    }
    return {};
  }

 private:
  Precision precision_ = Precision::fp32;
  at::Tensor weight_t_;  // [in, out]: fp32 or bf16
  at::Tensor bias_;      // fp32, may be undefined
  c10::IValue packed_;   // int8: the prepacked weight and bias
};

struct Norm {
  at::Tensor weight;
  at::Tensor bias;
};

struct Layer {
  Linear qkv;             // fused query (pre-scaled unless q_norm), key, value: [H, 3H]
  Norm q_norm, k_norm;    // jina_qk_norm: layer norms of the query (pre-scaled) and key projections
  Linear attention_out;
  Norm attention_norm;
  Norm mid_norm;          // jina_qk_norm: layer_norm_1
  Linear up;              // bert: intermediate.dense [I]; jina: the gated linear unit's [2I], no bias
  Linear down;            // bert: output.dense; jina: mlp.wo / mlp.down_layer
  Norm ffn_norm;          // bert: output.LayerNorm; jina: mlp.layernorm / layer_norm_2
};

/// Reads tensors from the safetensors file, checking presence, dtype and shape.
class WeightReader {
 public:
  WeightReader(const SafetensorsFile& file, std::string prefix, std::string_view expected, at::Device device)
      : file_(file), prefix_(std::move(prefix)), expected_(expected), device_(device) {}

  bool has(const std::string& name) const { return file_.find(prefix_ + name) != nullptr; }

  at::Tensor get(const std::string& name, std::vector<std::int64_t> shape) const {
    const std::string full = prefix_ + name;
    const TensorView* t = file_.find(full);
    if (t == nullptr) fail(full, fmt::format("missing (expected a Hugging Face {} checkpoint)", expected_));
    at::ScalarType st = at::kFloat;
    switch (t->dtype) {
      case DType::f32: st = at::kFloat; break;
      case DType::f16: st = at::kHalf; break;
      case DType::bf16: st = at::kBFloat16; break;
      default: fail(full, fmt::format("dtype {} is not supported (expected F32, F16 or BF16)", dtype_name(t->dtype)));
    }
    if (t->shape != shape) {
      fail(full, fmt::format("shape {} does not match config.json, which implies [{}]", t->shape_string(),
                             fmt::join(shape, ", ")));
    }
    at::Tensor raw = at::empty(shape, at::TensorOptions().dtype(st));
    std::memcpy(raw.data_ptr(), t->data.data(), t->data.size());  // the mapping need not be aligned
    at::Tensor f32 = st == at::kFloat ? raw : raw.to(at::kFloat);
    return device_.is_cpu() ? f32 : f32.to(device_);  // moved once, at load
  }

  Linear linear(const std::string& name, std::int64_t out, std::int64_t in, Precision precision,
                bool bias = true) const {
    const at::Tensor w = get(name + ".weight", {out, in});  // weight first, for the error messages
    return Linear(w, bias ? get(name + ".bias", {out}) : at::Tensor(), precision);
  }

  Norm norm(const std::string& name, std::int64_t size) const {
    return Norm{get(name + ".weight", {size}), get(name + ".bias", {size})};  // braces: in order
  }

 private:
  [[noreturn]] void fail(const std::string& name, std::string_view what) const {
    throw Error(ErrorCode::invalid_model, fmt::format("{}: tensor \"{}\": {}", file_.path().string(), name, what));
  }

  const SafetensorsFile& file_;
  std::string prefix_;
  std::string_view expected_;
  at::Device device_;
};

void check_precision(Precision precision) {
  if (precision == Precision::int8) {
    const at::QEngine engine = at::globalContext().qEngine();
    if (engine == at::QEngine::NoQEngine) {
      throw Error(ErrorCode::invalid_argument,
                  "precision int8 needs a quantized engine (fbgemm, onednn or qnnpack); this libtorch has none");
    }
    try {
      QuantizedOps::get();
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("precision int8: this libtorch lacks quantized::linear_dynamic: {}",
                              e.what_without_backtrace()));
    }
  }
}

/// One model call's activations on the CPU, reused from call to call: every [T, width]
/// activation of the forward pass (T = the batch's real tokens) is a view at the front of one
/// of these buffers, and attention's scores and probabilities go through a fixed scratch per
/// thread. A batch's token count differs on nearly every call, and an allocator asked for
/// tensors of ever new sizes fragments its heap: tcmalloc's grew by 48 MiB over 100,000
/// records through MiniLM while the most memory in use at once grew by 4 MiB. Here the buffers grow only when a
/// batch has more tokens than any before (to the next multiple of kRowStep, and every page is
/// touched then), so memory follows the largest batch (bounded by --max-batch-tokens) and is
/// reached with it. One per concurrent call (BertModel keeps a pool); not used on CUDA, whose
/// caching allocator reuses blocks.
class Workspace {
 public:
  /// A layer's activations, by buffer (two share one where their lives do not overlap):
  /// kX the layer's input and output; kWide its q|k|v projection, then the feed-forward's up
  /// projection; kNarrow the attention's output, then its layer norm (and at the start, the
  /// position embeddings); kDense the outputs of the attention's and the feed-forward's dense
  /// layers (and at the start, the embeddings' sum); kGate a gated unit's activated half.
  enum Slot : std::size_t { kX, kWide, kNarrow, kDense, kGate, kSlots };
  static constexpr std::int64_t kRowStep = 256;
  /// Floats in one attention scratch buffer, at most (4 MiB): query rows go through in blocks
  /// that fit, so a model with long rows does not need heads x L x L at once.
  static constexpr std::int64_t kMaxScratch = std::int64_t{1} << 20;
  /// Query rows per block, at most, when the rows are long.
  static constexpr std::int64_t kQueryBlock = 64;

  struct Scratch {
    at::Tensor scores, probs;  // scratch_floats() each
  };

  /// `widths`: the columns of each slot (0: unused). `heads` and `max_columns` size the
  /// attention scratch: heads x min(64, max_columns) x max_columns floats, at most kMaxScratch.
  Workspace(std::array<std::int64_t, kSlots> widths, std::int64_t heads, std::int64_t max_columns)
      : widths_(widths) {
    const std::int64_t columns = std::max<std::int64_t>(1, max_columns);
    scratch_floats_ = std::min(kMaxScratch, heads * std::min(kQueryBlock, columns) * columns);
  }

  /// Makes room for `tokens` rows in every slot.
  void reserve(std::int64_t tokens) {
    if (tokens <= rows_ && rows_ > 0) return;
    rows_ = std::max<std::int64_t>(1, (tokens + kRowStep - 1) / kRowStep) * kRowStep;
    for (std::size_t s = 0; s < kSlots; ++s) {
      buffers_[s] = at::Tensor();  // the old buffer goes before the new one is allocated
      if (widths_[s] > 0) buffers_[s] = at::zeros({rows_ * widths_[s]}, at::TensorOptions().dtype(at::kFloat));
    }
  }

  /// The front of a slot as a contiguous [tokens, columns] tensor (tokens within reserve(),
  /// columns within the slot's width).
  at::Tensor rows(Slot s, std::int64_t tokens, std::int64_t columns) const {
    TORCH_INTERNAL_ASSERT(tokens <= rows_ && columns <= widths_[s]);
    return buffers_[s].narrow(0, 0, tokens * columns).view({tokens, columns});
  }

  /// Attention scratch for `threads` threads (at::get_thread_num() picks one).
  void reserve_scratch(int threads) {
    while (scratch_.size() < static_cast<std::size_t>(threads)) {
      const auto options = at::TensorOptions().dtype(at::kFloat);
      scratch_.push_back(Scratch{at::zeros({scratch_floats_}, options), at::zeros({scratch_floats_}, options)});
    }
  }
  Scratch& scratch(int thread) { return scratch_.at(static_cast<std::size_t>(thread)); }
  std::int64_t scratch_floats() const noexcept { return scratch_floats_; }

 private:
  std::array<std::int64_t, kSlots> widths_{};
  std::array<at::Tensor, kSlots> buffers_;
  std::vector<Scratch> scratch_;
  std::int64_t rows_ = 0, scratch_floats_ = 0;
};

class BertModel final : public Model {
 public:
  BertModel(const ModelConfig& config, const SafetensorsFile& weights, const ModelOptions& options)
      : staging_(torch_device(options.device)) {
    const TransformerConfig& c = config.transformer;
    check_precision(options.precision);
    if (c.position_embedding_type == "alibi") {
      positions_kind_ = Positions::alibi;
    } else if (c.position_embedding_type != "absolute") {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: position_embedding_type \"{}\" is not supported (supported: absolute, and alibi "
                              "for JinaBERT)",
                              config_path(config), c.position_embedding_type));
    } else if (c.model_type == "roberta" || c.model_type == "xlm-roberta") {
      positions_kind_ = Positions::roberta;
    }
    info_.family = positions_kind_ == Positions::alibi ? "jina_bert" : c.model_type;
    info_.dir = config.dir;
    info_.hidden_size = c.hidden_size;
    info_.dimensions = c.hidden_size;
    info_.max_tokens = config.max_tokens;
    info_.layers = c.num_hidden_layers;
    info_.pooling = config.pooling;
    info_.normalize = config.normalize;
    info_.precision = options.precision;
    info_.device = options.device;
    info_.prompts = config.prompts;
    info_.default_prompt_name = config.default_prompt_name;
    info_.include_prompt = config.include_prompt;
    hidden_ = c.hidden_size;
    heads_ = c.num_attention_heads;
    head_dim_ = hidden_ / heads_;
    intermediate_ = c.intermediate_size;
    eps_ = c.layer_norm_eps;
    vocab_ = c.vocab_size;
    type_vocab_ = c.type_vocab_size;
    pad_ = c.pad_token_id;
    position_rows_ = c.max_position_embeddings;
    max_columns_ = usable_positions(c);
    threads_ = options.threads > 0 ? options.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

    try {
      c10::InferenceMode guard;
      // A ...ForMaskedLM / ...ForSequenceClassification checkpoint prefixes the encoder with
      // "bert." or "roberta."; a BertModel / RobertaModel (what sentence-transformers saves) does not.
      const std::string family_prefix = positions_kind_ == Positions::roberta ? "roberta." : "bert.";
      const std::string prefix =
          weights.find(family_prefix + "embeddings.word_embeddings.weight") != nullptr ? family_prefix : "";
      const char* expected = positions_kind_ == Positions::alibi     ? "JinaBERT v2"
                             : positions_kind_ == Positions::roberta ? "RobertaModel / XLMRobertaModel"
                                                                     : "BertModel";
      WeightReader r(weights, prefix, expected, staging_.device());
      if (positions_kind_ == Positions::alibi) {
        read_jina_layout(config, r, weights.path().string(), prefix);
      } else {
        activation_ = parse_activation(config);
      }
      load(r, options.precision);
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
    // at::set_num_threads sets OpenMP's count for the calling thread only (OpenBLAS reads it
    // there too), so it is checked on the thread that runs the model, at every call.
    if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
    try {
      c10::InferenceMode guard;
      staging_.begin_batch();
      PackedBatch p = pack_batch(batch, vocab_, type_vocab_, !info_.include_prompt);
      WorkspaceLease ws(*this);
      const at::Tensor x = forward(batch, p, ws.get());
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
  /// A workspace from the pool for the length of one call (none on CUDA), returned to the
  /// pool afterwards, also when the call throws. The pool grows to the number of calls that
  /// ever ran at once.
  class WorkspaceLease {
   public:
    explicit WorkspaceLease(BertModel& model) : model_(model) {
      if (!model.staging_.on_cpu()) return;
      {
        const std::lock_guard lock(model.workspaces_mutex_);
        if (!model.workspaces_.empty()) {
          ws_ = std::move(model.workspaces_.back());
          model.workspaces_.pop_back();
        }
      }
      if (!ws_) ws_ = model.make_workspace();
    }
    ~WorkspaceLease() {
      if (!ws_) return;
      const std::lock_guard lock(model_.workspaces_mutex_);
      model_.workspaces_.push_back(std::move(ws_));
    }
    WorkspaceLease(const WorkspaceLease&) = delete;
    WorkspaceLease& operator=(const WorkspaceLease&) = delete;
    Workspace* get() const noexcept { return ws_.get(); }

   private:
    BertModel& model_;
    std::unique_ptr<Workspace> ws_;
  };

  std::unique_ptr<Workspace> make_workspace() const {
    const std::int64_t H = hidden_, I = intermediate_;
    std::array<std::int64_t, Workspace::kSlots> widths{};
    widths[Workspace::kX] = H;
    widths[Workspace::kWide] = std::max(3 * H, glu_ ? 2 * I : I);
    widths[Workspace::kNarrow] = H;
    widths[Workspace::kDense] = H;
    widths[Workspace::kGate] = glu_ ? I : 0;
    return std::make_unique<Workspace>(widths, heads_, max_columns_);
  }

  /// JinaBERT v2: which of the two layouts the weights are in, and its feed-forward type.
  void read_jina_layout(const ModelConfig& config, const WeightReader& r, const std::string& file,
                        const std::string& prefix) {
    const TransformerConfig& c = config.transformer;
    if (r.has("encoder.layer.0.mlp.up_gated_layer.weight")) {
      arch_ = Arch::jina_qk_norm;
    } else if (r.has("encoder.layer.0.mlp.gated_layers.weight")) {
      arch_ = Arch::jina;
    } else {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: neither tensor \"{}encoder.layer.0.mlp.up_gated_layer.weight\" "
                              "(jina-bert-v2-qk-post-norm) nor \"{}encoder.layer.0.mlp.gated_layers.weight\" "
                              "(jina-bert-implementation) is there: config.json's position_embedding_type \"alibi\" "
                              "means JinaBERT v2, whose gated feed-forward layouts these are",
                              file, prefix, prefix));
    }
    if (c.feed_forward_type == "geglu") {
      activation_ = Activation::gelu;  // nn.GELU(): the erf form, whatever hidden_act says
    } else if (c.feed_forward_type == "reglu") {
      activation_ = Activation::relu;
    } else {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: feed_forward_type \"{}\" is not supported for JinaBERT (supported: geglu, reglu)",
                              config_path(config), c.feed_forward_type));
    }
    glu_ = true;
  }

  void load(const WeightReader& r, Precision precision) {
    const std::int64_t H = hidden_, I = intermediate_;
    word_ = r.get("embeddings.word_embeddings.weight", {vocab_, H});
    if (positions_kind_ != Positions::alibi) {
      position_ = r.get("embeddings.position_embeddings.weight", {position_rows_, H});
    } else {
      const std::vector<float> slopes = alibi_slopes(heads_);
      neg_slopes_ = at::tensor(at::ArrayRef<float>(slopes)).neg_().view({heads_, 1, 1});
      if (!staging_.on_cpu()) neg_slopes_ = neg_slopes_.to(staging_.device());
    }
    type_ = r.get("embeddings.token_type_embeddings.weight", {type_vocab_, H});
    embedding_norm_ = r.norm("embeddings.LayerNorm", H);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    const std::int64_t layers = info_.layers;
    layers_.reserve(static_cast<std::size_t>(layers));
    for (std::int64_t i = 0; i < layers; ++i) {
      const std::string p = fmt::format("encoder.layer.{}.", i);
      Layer l;
      at::Tensor qw = r.get(p + "attention.self.query.weight", {H, H});
      at::Tensor qb = r.get(p + "attention.self.query.bias", {H});
      if (arch_ == Arch::jina_qk_norm) {
        // The scale goes after the query's layer norm: into its weight and bias.
        l.q_norm = r.norm(p + "attention.self.layer_norm_q", H);
        l.q_norm.weight.mul_(scale);
        l.q_norm.bias.mul_(scale);
        l.k_norm = r.norm(p + "attention.self.layer_norm_k", H);
      } else {
        qw.mul_(scale);
        qb.mul_(scale);
      }
      const at::Tensor kw = r.get(p + "attention.self.key.weight", {H, H});
      const at::Tensor kb = r.get(p + "attention.self.key.bias", {H});
      const at::Tensor vw = r.get(p + "attention.self.value.weight", {H, H});
      const at::Tensor vb = r.get(p + "attention.self.value.bias", {H});
      l.qkv = Linear(at::cat({qw, kw, vw}, 0), at::cat({qb, kb, vb}, 0), precision);
      l.attention_out = r.linear(p + "attention.output.dense", H, H, precision);
      l.attention_norm = r.norm(p + "attention.output.LayerNorm", H);
      switch (arch_) {
        case Arch::bert:
          l.up = r.linear(p + "intermediate.dense", I, H, precision);
          l.down = r.linear(p + "output.dense", H, I, precision);
          l.ffn_norm = r.norm(p + "output.LayerNorm", H);
          break;
        case Arch::jina:
          l.up = r.linear(p + "mlp.gated_layers", 2 * I, H, precision, false);
          l.down = r.linear(p + "mlp.wo", H, I, precision);
          l.ffn_norm = r.norm(p + "mlp.layernorm", H);
          break;
        case Arch::jina_qk_norm:
          l.mid_norm = r.norm(p + "layer_norm_1", H);
          l.up = r.linear(p + "mlp.up_gated_layer", 2 * I, H, precision, false);
          l.down = r.linear(p + "mlp.down_layer", H, I, precision);
          l.ffn_norm = r.norm(p + "layer_norm_2", H);
          break;
      }
      layers_.push_back(std::move(l));
    }
  }

  /// LayerNorm over the last dimension of x [T, hidden]. `dst` (CPU, rows of stride-1
  /// columns, may be x itself), where given, receives the result; otherwise it is a new
  /// tensor. Returns it.
  at::Tensor layer_norm(const at::Tensor& x, const Norm& n, at::Tensor dst = {}) const {
    if (!dst.defined()) return at::layer_norm(x, {hidden_}, n.weight, n.bias, eps_);
    const std::int64_t T = x.size(0), H = hidden_;
    TORCH_INTERNAL_ASSERT(x.stride(1) == 1 && dst.stride(1) == 1 && dst.size(0) == T && x.size(1) == H);
    const float* in = x.data_ptr<float>();
    float* out = dst.data_ptr<float>();
    const std::int64_t in_stride = x.stride(0), out_stride = dst.stride(0);
    const float* w = n.weight.data_ptr<float>();
    const float* b = n.bias.data_ptr<float>();
    const auto eps = static_cast<float>(eps_);
    at::parallel_for(0, T, 256, [&](std::int64_t begin, std::int64_t end) {
      layer_norm_rows(in + begin * in_stride, in_stride, out + begin * out_stride, out_stride, end - begin, H, w, b, eps);
    });
    return dst;
  }

  /// Position ids of the packed tokens (absolute and RoBERTa positions).
  std::vector<std::int64_t> position_ids(const TokenBatch& batch, const PackedBatch& p) const {
    if (positions_kind_ == Positions::absolute) return p.columns;  // HF BertEmbeddings: the column
    // RobertaEmbeddings.create_position_ids_from_input_ids: over the whole padded row,
    // padding_idx + the running count of ids that are not padding_idx, or padding_idx for those.
    std::vector<std::int64_t> running(static_cast<std::size_t>(p.batch * p.seq_len));
    for (std::int64_t b = 0; b < p.batch; ++b) {
      std::int64_t count = 0;
      for (std::int64_t s = 0; s < p.seq_len; ++s) {
        const auto i = static_cast<std::size_t>(b * p.seq_len + s);
        const bool real = batch.ids[i] != pad_;
        count += real;
        running[i] = real ? pad_ + count : pad_;
      }
    }
    std::vector<std::int64_t> out(p.flat.size());
    for (std::size_t k = 0; k < p.flat.size(); ++k) out[k] = running[static_cast<std::size_t>(p.flat[k])];
    return out;
  }

  /// The encoder's output [T, H] for the real tokens of a batch. With a workspace (CPU) every
  /// [T, *] activation is written into its buffers, so the call allocates only small tensors
  /// (index vectors, per-row statistics); the result is a view into it.
  at::Tensor forward(const TokenBatch& batch, PackedBatch& p, Workspace* ws) {
    const std::int64_t B = p.batch, S = p.seq_len, H = hidden_, I = intermediate_;
    const std::int64_t T = p.tokens();
    if (ws != nullptr) ws->reserve(T);
    // The rows of a workspace slot, or an undefined tensor (the op allocates) without one.
    auto slot = [&](Workspace::Slot s, std::int64_t columns) {
      return ws != nullptr ? ws->rows(s, T, columns) : at::Tensor();
    };

    // Embeddings: (word + token type) + position, in HF's order, then LayerNorm.
    at::Tensor x = slot(Workspace::kDense, H);
    const at::Tensor ids = staging_.longs(p.ids);
    x = x.defined() ? at::index_select_out(x, word_, 0, ids) : at::index_select(word_, 0, ids);
    if (p.all_type_zero) {
      x.add_(type_[0]);
    } else {
      x.add_(at::index_select(type_, 0, staging_.longs(p.types)));
    }
    if (positions_kind_ == Positions::absolute && !p.padded()) {
      x.view({B, S, H}).add_(position_.narrow(0, 0, S));
    } else if (positions_kind_ != Positions::alibi) {
      std::vector<std::int64_t> position = position_ids(batch, p);
      const at::Tensor at_positions = staging_.longs(position);
      at::Tensor rows = slot(Workspace::kNarrow, H);
      x.add_(rows.defined() ? at::index_select_out(rows, position_, 0, at_positions)
                            : at::index_select(position_, 0, at_positions));
    }
    x = layer_norm(x, embedding_norm_, slot(Workspace::kX, H));

    // ALiBi: |i - j| for right-padded rows, shared by every row and layer.
    at::Tensor distance;
    if (positions_kind_ == Positions::alibi && p.contiguous) {
      const std::int64_t longest = *std::max_element(p.counts.begin(), p.counts.end());
      const at::Tensor pos = at::arange(longest, at::TensorOptions().dtype(at::kFloat).device(staging_.device()));
      distance = (pos.unsqueeze(1) - pos.unsqueeze(0)).abs_();
    }

    at::Tensor ctx = slot(Workspace::kNarrow, H);
    if (!ctx.defined()) ctx = at::empty({T, H}, x.options());
    for (const Layer& l : layers_) {
      const at::Tensor qkv = l.qkv(x, slot(Workspace::kWide, 3 * H));  // [T, 3H]
      if (arch_ == Arch::jina_qk_norm) {
        at::Tensor q = qkv.narrow(1, 0, H), k = qkv.narrow(1, H, H);
        if (ws != nullptr) {
          layer_norm(q, l.q_norm, q);  // in place
          layer_norm(k, l.k_norm, k);
        } else {
          q.copy_(layer_norm(q, l.q_norm));
          k.copy_(layer_norm(k, l.k_norm));
        }
      }
      attention(qkv, ctx, p, distance, ws);
      at::Tensor a = l.attention_out(ctx, slot(Workspace::kDense, H));
      a.add_(x);
      at::Tensor h = layer_norm(a, l.attention_norm, slot(Workspace::kNarrow, H));
      if (arch_ == Arch::jina_qk_norm) {
        // JinaBertLayer: layer_norm_1(residual + attention_output), the attention block
        // having already added the residual once.
        h.add_(x);
        h = layer_norm(h, l.mid_norm, ws != nullptr ? h : at::Tensor());
      }
      at::Tensor u = l.up(h, slot(Workspace::kWide, glu_ ? 2 * I : I));
      at::Tensor g;
      if (!glu_) {
        activate(u, activation_);
        g = std::move(u);
      } else {
        // jina-bert-implementation: act(first half) * second half;
        // jina-bert-v2-qk-post-norm: first half * act(second half)
        const std::int64_t act_half = arch_ == Arch::jina ? 0 : I, other = I - act_half;
        g = slot(Workspace::kGate, I);
        g = g.defined() ? g.copy_(u.narrow(1, act_half, I)) : u.narrow(1, act_half, I).contiguous();
        activate(g, activation_);
        g.mul_(u.narrow(1, other, I));
      }
      at::Tensor o = l.down(g, slot(Workspace::kDense, H));  // a is no longer needed
      o.add_(h);
      x = layer_norm(o, l.ffn_norm, slot(Workspace::kX, H));  // the layer's input is no longer needed
    }
    return x;
  }

  /// Self-attention, row by row over each row's real tokens: softmax(q k^T + ALiBi) v for
  /// every head, written into `ctx` [T, H]. Keys outside a row's mask get no weight in these
  /// models (the additive mask is the float minimum), so leaving them out is the same
  /// computation without the padding. q, k and v are strided views into `qkv` and the result
  /// goes straight into `ctx`'s rows (the gemm takes the row strides): no copies. With a
  /// workspace, the scores and probabilities go into the thread's scratch, a block of query
  /// rows at a time when a row is too long for it (softmax runs along the keys, so blocks of
  /// queries change nothing); without one, a row at once into new tensors.
  void attention(const at::Tensor& qkv, at::Tensor& ctx, const PackedBatch& p, const at::Tensor& distance,
                 Workspace* ws) {
    const std::int64_t nh = heads_, hd = head_dim_;
    const bool alibi = positions_kind_ == Positions::alibi;
    if (ws != nullptr) ws->reserve_scratch(at::get_num_threads());
    staging_.for_rows(p.batch, [&](std::int64_t begin, std::int64_t end) {
      c10::InferenceMode guard;  // thread-local: OpenMP's worker threads do not inherit it
      Workspace::Scratch* scratch = ws != nullptr ? &ws->scratch(at::get_thread_num()) : nullptr;
      for (std::int64_t b = begin; b < end; ++b) {
        const std::int64_t L = p.counts[b];
        if (L == 0) continue;
        const at::Tensor rows = qkv.narrow(0, p.first[b], L).view({L, 3, nh, hd});
        const at::Tensor q = rows.select(1, 0).transpose(0, 1);     // [nh, L, hd]
        const at::Tensor k = rows.select(1, 1).permute({1, 2, 0});  // [nh, hd, L]
        const at::Tensor v = rows.select(1, 2).transpose(0, 1);     // [nh, L, hd]
        const at::Tensor out = ctx.narrow(0, p.first[b], L).view({L, nh, hd}).transpose(0, 1);
        at::Tensor columns;  // ALiBi with holes in the mask: the tokens' columns
        if (alibi && !distance.defined()) {
          columns = staging_.longs(std::span(p.columns).subspan(static_cast<std::size_t>(p.first[b]),
                                                                static_cast<std::size_t>(L)))
                        .to(at::kFloat);
        }
        // Query rows per block: as many as the scratch holds (a row too long for even one
        // query row of it, beyond any BERT's positions, takes new tensors).
        const bool in_scratch = scratch != nullptr && nh * L <= ws->scratch_floats();
        const std::int64_t block = in_scratch ? std::min(ws->scratch_floats() / (nh * L), L) : L;
        for (std::int64_t r0 = 0; r0 < L; r0 += block) {
          const std::int64_t n = std::min(block, L - r0);
          const at::Tensor qb = q.narrow(1, r0, n);  // [nh, n, hd]
          // The 1/sqrt(head_dim) scale is already in the query.
          at::Tensor scores, probs;
          if (in_scratch) {
            scores = scratch->scores.narrow(0, 0, nh * n * L).view({nh, n, L});
            probs = scratch->probs.narrow(0, 0, nh * n * L).view({nh, n, L});
          }
          if (alibi) {
            const at::Tensor d =
                distance.defined()
                    ? distance.narrow(0, r0, n).narrow(1, 0, L)
                    : (columns.narrow(0, r0, n).unsqueeze(1) - columns.unsqueeze(0)).abs_();  // [n, L]
            scores = scores.defined() ? at::mul_out(scores, neg_slopes_, d) : at::mul(neg_slopes_, d);  // -slope |i - j|
            scores.baddbmm_(qb, k);
          } else {
            scores = scores.defined() ? at::bmm_out(scores, qb, k) : at::bmm(qb, k);  // [nh, n, L]
          }
          probs = probs.defined() ? at::_softmax_out(probs, scores, -1, false) : at::softmax(scores, -1);
          at::Tensor o = out.narrow(1, r0, n);
          at::bmm_out(o, probs, v);
        }
      }
    });
  }

  ModelInfo info_;
  Arch arch_ = Arch::bert;
  Positions positions_kind_ = Positions::absolute;
  Activation activation_ = Activation::gelu;
  bool glu_ = false;
  std::int64_t hidden_ = 0, heads_ = 0, head_dim_ = 0, intermediate_ = 0, vocab_ = 0, type_vocab_ = 0;
  std::int64_t pad_ = 0, position_rows_ = 0, max_columns_ = 0;
  double eps_ = 1e-12;
  int threads_ = 1;
  at::Tensor word_, position_, type_, neg_slopes_;
  Norm embedding_norm_;
  std::vector<Layer> layers_;
  DeviceStaging staging_;
  std::mutex workspaces_mutex_;
  std::vector<std::unique_ptr<Workspace>> workspaces_;  // CPU: idle workspaces, one per call that ran at once
};

}  // namespace

bool is_bert_family(const TransformerConfig& config) noexcept {
  return config.model_type == "bert" || config.model_type == "roberta" || config.model_type == "xlm-roberta";
}

std::unique_ptr<Model> load_bert_model(const ModelConfig& config, const SafetensorsFile& weights,
                                       const ModelOptions& options) {
  return std::make_unique<BertModel>(config, weights, options);
}

}  // namespace sluice
