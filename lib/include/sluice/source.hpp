#pragma once
/// Sources: where records come from when the input is not a JSONL file.

#include <cstddef>
#include <vector>

#include <sluice/record.hpp>

namespace sluice {

/// A pull source (read_batch() until it returns nothing). The pipeline calls read_batch() from a
/// thread of its own, never concurrently, and stops calling after it returns an empty batch.
/// Memory: the pipeline asks again only when its queues have room, so a source that
/// produces lazily keeps the whole run bounded.
/// Ownership: the Pipeline owns it from set_source() until the Pipeline is destroyed.
class Source {
 public:
  virtual ~Source() = default;
  /// Up to `max_records` records; an empty vector means the end. May block. Exceptions
  /// thrown here stop the run with status "failed" and the exception's message.
  /// Thread: the pipeline's source thread.
  virtual std::vector<Record> read_batch(std::size_t max_records) = 0;
  /// Total records when known in advance (for ETA); 0 when unknown. Thread: any.
  virtual std::size_t size_hint() const { return 0; }
};

}  // namespace sluice
