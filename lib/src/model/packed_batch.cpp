#include "model/packed_batch.hpp"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice {

void check_batch(const TokenBatch& batch, std::span<float> out, std::size_t dims, std::int64_t max_columns) {
  const std::int64_t B = batch.batch, S = batch.seq_len;
  const std::size_t n = static_cast<std::size_t>(B) * static_cast<std::size_t>(S);
  if (B == 0) return;
  if (S == 0 || batch.ids.size() != n || batch.attention_mask.size() != n ||
      (!batch.type_ids.empty() && batch.type_ids.size() != n) ||
      (!batch.prompt_tokens.empty() && batch.prompt_tokens.size() != static_cast<std::size_t>(B))) {
    throw Error(ErrorCode::model_error,
                fmt::format("model inference failed: the token batch is malformed ({} x {} but {} ids, {} mask "
                            "values, {} type ids, {} prompt lengths)",
                            B, S, batch.ids.size(), batch.attention_mask.size(), batch.type_ids.size(),
                            batch.prompt_tokens.size()));
  }
  if (S > max_columns) {
    throw Error(ErrorCode::model_error,
                fmt::format("model inference failed: {} tokens exceed the model's {} positions", S, max_columns));
  }
  if (out.size() < static_cast<std::size_t>(B) * dims) {
    throw Error(ErrorCode::model_error,
                fmt::format("model inference failed: the output holds {} floats, {} are needed", out.size(),
                            static_cast<std::size_t>(B) * dims));
  }
}

PackedBatch pack_batch(const TokenBatch& batch, std::int64_t vocab, std::int64_t type_vocab, bool skip_prompt) {
  const std::int64_t B = batch.batch, S = batch.seq_len;
  PackedBatch p;
  p.batch = B;
  p.seq_len = S;
  const auto n = static_cast<std::size_t>(B * S);
  for (auto* v : {&p.ids, &p.columns, &p.types, &p.rows, &p.flat}) v->reserve(n);
  p.first.assign(B, -1);
  p.last.assign(B, -1);
  p.counts.assign(B, 0);
  p.skip.assign(B, 0);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t s = 0; s < S; ++s) {
      const auto i = static_cast<std::size_t>(b * S + s);
      const std::int64_t m = batch.attention_mask[i];
      if (m == 0) continue;
      if (m != 1) {
        throw Error(ErrorCode::model_error,
                    fmt::format("model inference failed: attention mask value {} at row {}, position {} (expected "
                                "0 or 1)",
                                m, b, s));
      }
      const std::int64_t id = batch.ids[i];
      if (id < 0 || id >= vocab) {
        throw Error(ErrorCode::model_error,
                    fmt::format("model inference failed: token id {} at row {}, position {} is outside the "
                                "vocabulary (0..{})",
                                id, b, s, vocab - 1));
      }
      const std::int64_t type = batch.type_ids.empty() ? 0 : batch.type_ids[i];
      if (type < 0 || type >= type_vocab) {
        throw Error(ErrorCode::model_error,
                    fmt::format("model inference failed: token type {} at row {}, position {} is outside 0..{}",
                                type, b, s, type_vocab - 1));
      }
      const auto k = static_cast<std::int64_t>(p.ids.size());
      if (p.first[b] < 0) p.first[b] = k;
      p.last[b] = k;
      p.contiguous = p.contiguous && s == p.counts[b];
      ++p.counts[b];
      p.ids.push_back(id);
      p.columns.push_back(s);
      p.types.push_back(type);
      p.all_type_zero = p.all_type_zero && type == 0;
      p.rows.push_back(b);
      p.flat.push_back(b * S + s);
    }
    if (skip_prompt && !batch.prompt_tokens.empty()) {
      p.skip[b] = std::min<std::int64_t>(batch.prompt_tokens[static_cast<std::size_t>(b)], p.counts[b]);
      p.any_skip = p.any_skip || p.skip[b] > 0;
    }
  }
  return p;
}

namespace {

/// The packed indices (and their rows and padded positions) of the tokens pooling counts.
struct Included {
  std::vector<std::int64_t> index, rows, flat;
};

Included included_tokens(const PackedBatch& p) {
  Included in;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    if (p.first[b] < 0) continue;
    for (std::int64_t k = p.first[b] + p.skip[b]; k <= p.last[b]; ++k) {
      in.index.push_back(k);
      in.rows.push_back(b);
      in.flat.push_back(p.flat[static_cast<std::size_t>(k)]);
    }
  }
  return in;
}

at::Tensor pool(const at::Tensor& x, PackedBatch& p, Pooling pooling, DeviceStaging& staging) {
  const std::int64_t B = p.batch, S = p.seq_len, H = x.size(1);
  switch (pooling) {
    case Pooling::mean: {
      at::Tensor sums;
      if (!p.padded() && !p.any_skip) {
        sums = x.view({B, S, H}).sum(1);
      } else if (!p.any_skip) {
        sums = at::zeros({B, H}, x.options());
        sums.index_add_(0, staging.longs(p.rows), x);
      } else {
        Included in = included_tokens(p);
        sums = at::zeros({B, H}, x.options());
        if (!in.index.empty()) sums.index_add_(0, staging.longs(in.rows), at::index_select(x, 0, staging.longs(in.index)));
      }
      // Token counts are small integers: converted to float exactly, where the sums are.
      std::vector<std::int64_t> counts(static_cast<std::size_t>(B));
      for (std::int64_t b = 0; b < B; ++b) counts[static_cast<std::size_t>(b)] = p.counts[b] - p.skip[b];
      return sums.div_(staging.longs(counts).to(at::kFloat).view({B, 1}).clamp_min(1e-9));  // as sentence-transformers
    }
    case Pooling::max: {
      if (!p.padded() && !p.any_skip) return std::get<0>(x.view({B, S, H}).max(1));
      // Padding (and a left-out prompt) counts as -1e9, as in sentence-transformers.
      at::Tensor full = at::full({B * S, H}, -1e9, x.options());
      if (!p.any_skip) {
        full.index_copy_(0, staging.longs(p.flat), x);
      } else {
        Included in = included_tokens(p);
        if (!in.index.empty()) {
          full.index_copy_(0, staging.longs(in.flat), at::index_select(x, 0, staging.longs(in.index)));
        }
      }
      return std::get<0>(full.view({B, S, H}).max(1));
    }
    case Pooling::cls:
    case Pooling::last_token: {
      // cls: the first real token (position 0 of a right-padded row); last_token: the last one.
      // sentence-transformers' include_prompt changes neither.
      std::vector<std::int64_t>& pick = pooling == Pooling::cls ? p.first : p.last;
      at::Tensor rows = at::zeros({B, H}, x.options());
      std::vector<std::int64_t> have, from;
      for (std::int64_t b = 0; b < B; ++b) {
        if (pick[b] >= 0) {
          have.push_back(b);
          from.push_back(pick[b]);
        }
      }
      if (!have.empty()) rows.index_copy_(0, staging.longs(have), at::index_select(x, 0, staging.longs(from)));
      return rows;
    }
  }
  return {};
}

}  // namespace

void pool_into(const at::Tensor& x, PackedBatch& p, Pooling pooling, bool normalize, DeviceStaging& staging,
               std::span<float> out) {
  at::Tensor pooled = pool(x, p, pooling, staging);  // [B, H]
  if (normalize) {
    // torch.nn.functional.normalize(p=2, dim=1): x / max(||x||, 1e-12)
    pooled.div_(pooled.norm(2, {1}, true).clamp_min(1e-12));
  }
  staging.copy_out(pooled, out);
}

}  // namespace sluice
