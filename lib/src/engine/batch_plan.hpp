#pragma once
// How a window of tokenised records is cut into model calls. The pipeline's tokenizer thread
// and tools/bench/raw_forward use this one function, so the benchmark's raw-model figure is
// measured on exactly the batches the pipeline runs. Thread: any (pure functions).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sluice {

struct BatchLimits {
  std::size_t batch_size = 256;        // rows per model call, at most
  std::size_t max_batch_tokens = 0;    // padded tokens (rows x padded length) per call, at most; 0: none
};

/// One model call: rows `order[first, first + rows)` of the window, padded to `seq_len`.
struct PlannedBatch {
  std::size_t first = 0;
  std::size_t rows = 0;
  std::size_t seq_len = 0;
};

struct WindowPlan {
  std::vector<std::size_t> order;     // window positions, in the order they are batched
  std::vector<PlannedBatch> batches;
};

/// The padded length of a sequence of `tokens` tokens: exact up to 32, then rounded up to a
/// multiple of 2 (to 64), 4 (to 128), 8, 16, ... so that padding adds less than 1/16 and a run
/// meets at most 16 lengths per doubling (96 shapes up to 512), which keeps allocator and
/// kernel caches bounded over a long run.
std::size_t padded_length(std::size_t tokens) noexcept;

/// Plans one window from its sequence lengths. With a token budget the window is sorted by
/// length (stable, so equal lengths keep input order) before it is cut; without one it is cut
/// in input order. A batch ends when it has batch_size rows or when one more row would take
/// it over max_batch_tokens; a row longer than the budget by itself goes alone.
/// `rows`, when given, is how many model rows each entry takes (the windows of a long record
/// under --long-input chunk, all `lengths` long at most); a batch counts rows against
/// batch_size and rows x length against the budget.
WindowPlan plan_window(std::span<const std::uint32_t> lengths, const BatchLimits& limits,
                       std::span<const std::uint32_t> rows = {});

}  // namespace sluice
