// The BERT encoder on libtorch (ATen): Hugging Face BertModel's forward pass, then pooling and
// L2 normalisation. The only file of the model area that includes torch headers.
//
// Speed notes:
// - Q, K and V are one [3H, H] matmul (the three weights are concatenated at load), and the
//   1/sqrt(head_dim) attention scale is folded into the query weight and bias.
// - Padding is removed: every layer runs on the real tokens only ([T, H], T = tokens with
//   mask 1), and attention runs row by row over each row's real tokens. In BertModel a padded
//   position never influences a real one (masked keys get zero weight), so this changes
//   nothing in the result, and a batch costs what its real tokens cost.
// - q, k, v and the attention output are strided views: no permute copies.
// - Everything runs under c10::InferenceMode (no autograd bookkeeping).

#include "model/bert_model.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

enum class Activation { gelu, gelu_tanh, relu, silu };

Activation parse_activation(const ModelConfig& config) {
  const std::string& a = config.transformer.hidden_act;
  if (a == "gelu") return Activation::gelu;
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return Activation::gelu_tanh;
  if (a == "relu") return Activation::relu;
  if (a == "silu" || a == "swish") return Activation::silu;
  throw Error(ErrorCode::invalid_model,
              fmt::format("{}: hidden_act \"{}\" is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, "
                          "relu, silu)",
                          (config.transformer_dir / "config.json").string(), a));
}

/// A dense layer, the weight stored transposed ([in, out], contiguous) for x @ W^T = addmm(b, x, Wt).
struct Linear {
  at::Tensor weight_t;
  at::Tensor bias;

  at::Tensor operator()(const at::Tensor& x) const { return at::addmm(bias, x, weight_t); }
};

struct Norm {
  at::Tensor weight;
  at::Tensor bias;
};

struct Layer {
  Linear qkv;           // fused query (pre-scaled), key, value: [H, 3H]
  Linear attention_out;
  Norm attention_norm;
  Linear intermediate;
  Linear output;
  Norm output_norm;
};

/// Reads tensors from the safetensors file, checking presence, dtype and shape.
class WeightReader {
 public:
  WeightReader(const SafetensorsFile& file, std::string prefix) : file_(file), prefix_(std::move(prefix)) {}

  at::Tensor get(const std::string& name, std::vector<std::int64_t> shape) const {
    const std::string full = prefix_ + name;
    const TensorView* t = file_.find(full);
    if (t == nullptr) fail(full, "missing (expected a Hugging Face BertModel checkpoint)");
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
    return st == at::kFloat ? raw : raw.to(at::kFloat);
  }

  Linear linear(const std::string& name, std::int64_t out, std::int64_t in) const {
    return Linear{get(name + ".weight", {out, in}).t().contiguous(), get(name + ".bias", {out})};
  }

  Norm norm(const std::string& name, std::int64_t size) const {
    return Norm{get(name + ".weight", {size}), get(name + ".bias", {size})};
  }

 private:
  [[noreturn]] void fail(const std::string& name, std::string_view what) const {
    throw Error(ErrorCode::invalid_model, fmt::format("{}: tensor \"{}\": {}", file_.path().string(), name, what));
  }

  const SafetensorsFile& file_;
  std::string prefix_;
};

class BertModel final : public Model {
 public:
  BertModel(const ModelConfig& config, const SafetensorsFile& weights, const ModelOptions& options)
      : activation_(parse_activation(config)) {
    const TransformerConfig& c = config.transformer;
    if (c.position_embedding_type != "absolute") {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: position_embedding_type \"{}\" is not supported (supported: absolute)",
                              (config.transformer_dir / "config.json").string(), c.position_embedding_type));
    }
    info_.family = c.model_type;
    info_.dir = config.dir;
    info_.hidden_size = c.hidden_size;
    info_.dimensions = c.hidden_size;
    info_.max_tokens = config.max_tokens;
    info_.layers = c.num_hidden_layers;
    info_.pooling = config.pooling;
    info_.normalize = config.normalize;
    hidden_ = c.hidden_size;
    heads_ = c.num_attention_heads;
    head_dim_ = hidden_ / heads_;
    eps_ = c.layer_norm_eps;
    vocab_ = c.vocab_size;
    type_vocab_ = c.type_vocab_size;
    positions_ = c.max_position_embeddings;
    threads_ = options.threads > 0 ? options.threads
                                   : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

    try {
      c10::InferenceMode guard;
      // A BertForMaskedLM / BertForSequenceClassification checkpoint prefixes the encoder with
      // "bert."; a BertModel (what sentence-transformers saves) does not.
      const std::string prefix = weights.find("bert.embeddings.word_embeddings.weight") != nullptr ? "bert." : "";
      WeightReader r(weights, prefix);
      const std::int64_t H = hidden_, I = c.intermediate_size;
      word_ = r.get("embeddings.word_embeddings.weight", {vocab_, H});
      position_ = r.get("embeddings.position_embeddings.weight", {positions_, H});
      type_ = r.get("embeddings.token_type_embeddings.weight", {type_vocab_, H});
      embedding_norm_ = r.norm("embeddings.LayerNorm", H);
      const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
      layers_.reserve(c.num_hidden_layers);
      for (std::uint32_t i = 0; i < c.num_hidden_layers; ++i) {
        const std::string p = fmt::format("encoder.layer.{}.", i);
        Layer l;
        const at::Tensor qw = r.get(p + "attention.self.query.weight", {H, H}) * scale;
        const at::Tensor qb = r.get(p + "attention.self.query.bias", {H}) * scale;
        const at::Tensor kw = r.get(p + "attention.self.key.weight", {H, H});
        const at::Tensor kb = r.get(p + "attention.self.key.bias", {H});
        const at::Tensor vw = r.get(p + "attention.self.value.weight", {H, H});
        const at::Tensor vb = r.get(p + "attention.self.value.bias", {H});
        l.qkv = Linear{at::cat({qw, kw, vw}, 0).t().contiguous(), at::cat({qb, kb, vb}, 0)};
        l.attention_out = r.linear(p + "attention.output.dense", H, H);
        l.attention_norm = r.norm(p + "attention.output.LayerNorm", H);
        l.intermediate = r.linear(p + "intermediate.dense", I, H);
        l.output = r.linear(p + "output.dense", H, I);
        l.output_norm = r.norm(p + "output.LayerNorm", H);
        layers_.push_back(std::move(l));
      }
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::invalid_model,
                  fmt::format("{}: cannot load the weights: {}", weights.path().string(), e.what_without_backtrace()));
    }
  }

  const ModelInfo& info() const override { return info_; }

  void embed(const TokenBatch& batch, std::span<float> out) override {
    const std::int64_t B = batch.batch, S = batch.seq_len;
    const std::size_t n = static_cast<std::size_t>(B) * static_cast<std::size_t>(S);
    if (B == 0) return;
    if (S == 0 || batch.ids.size() != n || batch.attention_mask.size() != n ||
        (!batch.type_ids.empty() && batch.type_ids.size() != n)) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: the token batch is malformed ({} x {} but {} ids, {} mask "
                              "values, {} type ids)",
                              B, S, batch.ids.size(), batch.attention_mask.size(), batch.type_ids.size()));
    }
    if (S > positions_) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: {} tokens exceed the model's {} positions", S, positions_));
    }
    if (out.size() < static_cast<std::size_t>(B) * info_.dimensions) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: the output holds {} floats, {} are needed", out.size(),
                              static_cast<std::size_t>(B) * info_.dimensions));
    }
    // at::set_num_threads sets OpenMP's count for the calling thread only (OpenBLAS reads it
    // there too), so it is checked on the thread that runs the model, at every call.
    if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
    try {
      c10::InferenceMode guard;
      forward(batch, out);
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::model_error, fmt::format("model inference failed: {}", e.what_without_backtrace()));
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::model_error,
                  fmt::format("model inference failed: out of memory for a batch of {} x {} tokens", B, S));
    }
  }

 private:
  /// The packed (padding-free) view of a batch: one entry per real token, in row order.
  struct Packed {
    std::vector<std::int64_t> ids, positions, types, rows;
    std::vector<std::int64_t> flat;        // index into the padded [B * S] layout
    std::vector<std::int64_t> first, last; // per row: packed index of its first/last token, -1 if none
    std::vector<std::int64_t> counts;      // per row: real tokens
    bool all_type_zero = true;
  };

  Packed pack(const TokenBatch& batch) const {
    const std::int64_t B = batch.batch, S = batch.seq_len;
    Packed p;
    const std::size_t n = static_cast<std::size_t>(B * S);
    for (auto* v : {&p.ids, &p.positions, &p.types, &p.rows, &p.flat}) v->reserve(n);
    p.first.assign(B, -1);
    p.last.assign(B, -1);
    p.counts.assign(B, 0);
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t s = 0; s < S; ++s) {
        const std::size_t i = static_cast<std::size_t>(b * S + s);
        const std::int64_t m = batch.attention_mask[i];
        if (m == 0) continue;
        if (m != 1) {
          throw Error(ErrorCode::model_error,
                      fmt::format("model inference failed: attention mask value {} at row {}, position {} (expected "
                                  "0 or 1)",
                                  m, b, s));
        }
        const std::int64_t id = batch.ids[i];
        if (id < 0 || id >= vocab_) {
          throw Error(ErrorCode::model_error,
                      fmt::format("model inference failed: token id {} at row {}, position {} is outside the "
                                  "vocabulary (0..{})",
                                  id, b, s, vocab_ - 1));
        }
        const std::int64_t type = batch.type_ids.empty() ? 0 : batch.type_ids[i];
        if (type < 0 || type >= type_vocab_) {
          throw Error(ErrorCode::model_error,
                      fmt::format("model inference failed: token type {} at row {}, position {} is outside 0..{}",
                                  type, b, s, type_vocab_ - 1));
        }
        const auto k = static_cast<std::int64_t>(p.ids.size());
        if (p.first[b] < 0) p.first[b] = k;
        p.last[b] = k;
        ++p.counts[b];
        p.ids.push_back(id);
        p.positions.push_back(s);  // HF BertEmbeddings: position = column, padding or not
        p.types.push_back(type);
        p.all_type_zero = p.all_type_zero && type == 0;
        p.rows.push_back(b);
        p.flat.push_back(b * S + s);
      }
    }
    return p;
  }

  static at::Tensor long_tensor(std::vector<std::int64_t>& v) {
    return at::from_blob(v.data(), {static_cast<std::int64_t>(v.size())}, at::TensorOptions().dtype(at::kLong));
  }

  void activate(at::Tensor& h) const {
    switch (activation_) {
      case Activation::gelu: at::gelu_(h, "none"); break;
      case Activation::gelu_tanh: at::gelu_(h, "tanh"); break;
      case Activation::relu: at::relu_(h); break;
      case Activation::silu: at::silu_(h); break;
    }
  }

  void forward(const TokenBatch& batch, std::span<float> out) {
    const std::int64_t B = batch.batch, S = batch.seq_len, H = hidden_;
    Packed p = pack(batch);
    const auto T = static_cast<std::int64_t>(p.ids.size());
    const bool padded = T != B * S;

    // Embeddings: (word + token type) + position, in HF's order, then LayerNorm.
    at::Tensor x = at::index_select(word_, 0, long_tensor(p.ids));
    if (p.all_type_zero) {
      x.add_(type_[0]);
    } else {
      x.add_(at::index_select(type_, 0, long_tensor(p.types)));
    }
    if (padded) {
      x.add_(at::index_select(position_, 0, long_tensor(p.positions)));
    } else {
      x.view({B, S, H}).add_(position_.narrow(0, 0, S));
    }
    x = at::layer_norm(x, {H}, embedding_norm_.weight, embedding_norm_.bias, eps_);

    at::Tensor ctx = at::empty({T, H}, x.options());
    for (const Layer& l : layers_) {
      const at::Tensor qkv = l.qkv(x);  // [T, 3H]
      attention(qkv, ctx, p);
      at::Tensor a = l.attention_out(ctx);
      a.add_(x);
      x = at::layer_norm(a, {H}, l.attention_norm.weight, l.attention_norm.bias, eps_);
      at::Tensor h = l.intermediate(x);
      activate(h);
      at::Tensor o = l.output(h);
      o.add_(x);
      x = at::layer_norm(o, {H}, l.output_norm.weight, l.output_norm.bias, eps_);
    }

    at::Tensor pooled = pool(x, p, B, S);  // [B, H]
    if (info_.normalize) {
      // torch.nn.functional.normalize(p=2, dim=1): x / max(||x||, 1e-12)
      pooled.div_(pooled.norm(2, {1}, true).clamp_min(1e-12));
    }
    pooled = pooled.contiguous();
    std::memcpy(out.data(), pooled.data_ptr<float>(), static_cast<std::size_t>(B * H) * sizeof(float));
  }

  /// Self-attention, row by row over each row's real tokens: softmax(q k^T) v for every head,
  /// written into `ctx` [T, H]. Keys outside a row's mask get no weight in HF's BertModel (the
  /// additive mask is the float minimum), so leaving them out is the same computation without
  /// the padding. q, k and v are strided views into `qkv` and the result goes straight into
  /// `ctx`'s rows (the gemm takes the row strides): no copies.
  void attention(const at::Tensor& qkv, at::Tensor& ctx, const Packed& p) const {
    const std::int64_t nh = heads_, hd = head_dim_;
    const auto B = static_cast<std::int64_t>(p.counts.size());
    // One parallel region over the rows rather than one per small op: each row's matmuls and
    // softmax then run on one thread (ATen and OpenBLAS do not nest), which keeps OpenMP's
    // fork/join and spin-waiting out of the inner loop.
    at::parallel_for(0, B, 1, [&](std::int64_t begin, std::int64_t end) {
      c10::InferenceMode guard;  // thread-local: OpenMP's worker threads do not inherit it
      for (std::int64_t b = begin; b < end; ++b) {
        const std::int64_t L = p.counts[b];
        if (L == 0) continue;
        const at::Tensor rows = qkv.narrow(0, p.first[b], L).view({L, 3, nh, hd});
        const at::Tensor q = rows.select(1, 0).transpose(0, 1);     // [nh, L, hd]
        const at::Tensor k = rows.select(1, 1).permute({1, 2, 0});  // [nh, hd, L]
        const at::Tensor v = rows.select(1, 2).transpose(0, 1);     // [nh, L, hd]
        // The 1/sqrt(head_dim) scale is already in the query weight and bias.
        const at::Tensor probs = at::softmax(at::bmm(q, k), -1);   // [nh, L, L]
        at::Tensor out = ctx.narrow(0, p.first[b], L).view({L, nh, hd}).transpose(0, 1);
        at::bmm_out(out, probs, v);
      }
    });
  }

  /// sentence-transformers' Pooling over the real tokens of each row.
  at::Tensor pool(const at::Tensor& x, Packed& p, std::int64_t B, std::int64_t S) const {
    const std::int64_t H = hidden_;
    const auto T = static_cast<std::int64_t>(p.ids.size());
    const bool padded = T != B * S;
    switch (info_.pooling) {
      case Pooling::mean: {
        at::Tensor sums;
        if (!padded) {
          sums = x.view({B, S, H}).sum(1);
        } else {
          sums = at::zeros({B, H}, x.options());
          sums.index_add_(0, long_tensor(p.rows), x);
        }
        std::vector<float> counts(p.counts.begin(), p.counts.end());
        const at::Tensor c = at::from_blob(counts.data(), {B, 1}, at::TensorOptions().dtype(at::kFloat));
        return sums.div_(c.clamp_min(1e-9));  // clamp as sentence-transformers does
      }
      case Pooling::max: {
        if (!padded) return std::get<0>(x.view({B, S, H}).max(1));
        // Padding counts as -1e9, as in sentence-transformers.
        at::Tensor full = at::full({B * S, H}, -1e9, x.options());
        full.index_copy_(0, long_tensor(p.flat), x);
        return std::get<0>(full.view({B, S, H}).max(1));
      }
      case Pooling::cls:
      case Pooling::last_token: {
        // cls: the first real token (position 0 of a right-padded row); last_token: the last one.
        std::vector<std::int64_t>& pick = info_.pooling == Pooling::cls ? p.first : p.last;
        at::Tensor rows = at::zeros({B, H}, x.options());
        std::vector<std::int64_t> have, from;
        for (std::int64_t b = 0; b < B; ++b) {
          if (pick[b] >= 0) {
            have.push_back(b);
            from.push_back(pick[b]);
          }
        }
        if (!have.empty()) rows.index_copy_(0, long_tensor(have), at::index_select(x, 0, long_tensor(from)));
        return rows;
      }
    }
    return {};
  }

  ModelInfo info_;
  Activation activation_;
  std::int64_t hidden_ = 0, heads_ = 0, head_dim_ = 0, vocab_ = 0, type_vocab_ = 0, positions_ = 0;
  double eps_ = 1e-12;
  int threads_ = 1;
  at::Tensor word_, position_, type_;
  Norm embedding_norm_;
  std::vector<Layer> layers_;
};

}  // namespace

bool is_bert_family(std::string_view model_type) noexcept { return model_type == "bert"; }

std::unique_ptr<Model> load_bert_model(const ModelConfig& config, const SafetensorsFile& weights,
                                       const ModelOptions& options) {
  return std::make_unique<BertModel>(config, weights, options);
}

}  // namespace sluice
