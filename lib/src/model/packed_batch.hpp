#pragma once
/// A TokenBatch without its padding, and sentence-transformers' pooling over it: shared by the
/// native encoder (bert_model.cpp) and the TorchScript one (torchscript_model.cpp). Includes
/// ATen, so only those torch files include it.

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <sluice/model.hpp>

#include "model/device_staging.hpp"

namespace sluice {

/// The packed view of a batch: one entry per real token (mask 1), in row order.
struct PackedBatch {
  std::int64_t batch = 0;    ///< rows
  std::int64_t seq_len = 0;  ///< padded columns
  std::vector<std::int64_t> ids, columns, types, rows;
  std::vector<std::int64_t> flat;           ///< index into the padded [batch * seq_len] layout
  std::vector<std::int64_t> first, last;    ///< per row: packed index of its first/last token, -1 if none
  std::vector<std::int64_t> counts;         ///< per row: real tokens
  std::vector<std::int64_t> skip;           ///< per row: leading real tokens that pooling leaves out
  bool all_type_zero = true;
  bool any_skip = false;
  /// Every row's real tokens sit at columns 0 .. count - 1 (right padding, no holes).
  bool contiguous = true;

  std::int64_t tokens() const noexcept { return static_cast<std::int64_t>(ids.size()); }
  /// Some positions of the padded layout are padding.
  bool padded() const noexcept { return tokens() != batch * seq_len; }
};

/// Checks the batch's sizes, its length against `max_columns` and the output span against
/// `dims` floats per row. Throws sluice::Error (model_error).
void check_batch(const TokenBatch& batch, std::span<float> out, std::size_t dims, std::int64_t max_columns);

/// Packs `batch`: mask values must be 0 or 1, ids in [0, vocab), type ids in [0, type_vocab).
/// With `skip_prompt`, each row's first batch.prompt_tokens[row] real tokens are marked to be
/// left out of mean and max pooling. Throws sluice::Error (model_error) naming row and column.
PackedBatch pack_batch(const TokenBatch& batch, std::int64_t vocab, std::int64_t type_vocab, bool skip_prompt);

/// sentence-transformers' Pooling over the real tokens of each row of `x` [tokens, H] (packed
/// as `p`), then, with `normalize`, torch.nn.functional.normalize; writes batch x H floats to
/// `out`. Mean and max pooling leave out p.skip tokens; cls takes each row's first real token,
/// last_token its last one; a row without tokens gives zeros (mean, cls, last_token) or -1e9
/// (max), as sentence-transformers does. `x` is on staging's device, where the pooling runs;
/// its index vectors go there through `staging`, and only the result comes back
/// (staging.copy_out, which ends the batch).
void pool_into(const at::Tensor& x, PackedBatch& p, Pooling pooling, bool normalize, DeviceStaging& staging,
               std::span<float> out);

}  // namespace sluice
