#include "batch_plan.hpp"

#include <algorithm>
#include <bit>
#include <numeric>

namespace sluice {

std::size_t padded_length(std::size_t tokens) noexcept {
  if (tokens <= 32) return std::max<std::size_t>(tokens, 1);
  // In (2^k, 2^(k+1)], round up to a multiple of 2^(k-4): 16 steps per doubling, and less
  // than 2^(k-4) < tokens/16 added.
  const std::size_t k = std::bit_width(tokens - 1) - 1;  // 2^k < tokens <= 2^(k+1), k >= 4
  const std::size_t step = std::size_t{1} << (k - 4);
  return (tokens + step - 1) / step * step;
}

WindowPlan plan_window(std::span<const std::uint32_t> lengths, const BatchLimits& limits,
                       std::span<const std::uint32_t> rows) {
  WindowPlan plan;
  plan.order.resize(lengths.size());
  std::iota(plan.order.begin(), plan.order.end(), std::size_t{0});
  if (limits.max_batch_tokens > 0) {
    std::stable_sort(plan.order.begin(), plan.order.end(),
                     [&](std::size_t a, std::size_t b) { return lengths[a] < lengths[b]; });
  }
  const std::size_t max_rows = std::max<std::size_t>(limits.batch_size, 1);
  PlannedBatch batch;
  std::size_t model_rows = 0;  // rows of the batch being filled, windows counted
  for (std::size_t i = 0; i < plan.order.size(); ++i) {
    const std::size_t len = padded_length(lengths[plan.order[i]]);
    const std::size_t n = rows.empty() ? 1 : std::max<std::uint32_t>(rows[plan.order[i]], 1);
    const std::size_t with_it = std::max(batch.seq_len, len);
    const bool full = batch.rows > 0 && (model_rows + n > max_rows || (limits.max_batch_tokens > 0 &&
                                                                      (model_rows + n) * with_it > limits.max_batch_tokens));
    if (full) {
      plan.batches.push_back(batch);
      batch = PlannedBatch{i, 0, 0};
      model_rows = 0;
    }
    batch.rows += 1;
    model_rows += n;
    batch.seq_len = std::max(batch.seq_len, len);
  }
  if (batch.rows > 0) plan.batches.push_back(batch);
  return plan;
}

}  // namespace sluice
