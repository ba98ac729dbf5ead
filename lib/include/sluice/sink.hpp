#pragma once
/// Sinks: where embedded records go when the output is not a JSONL file.

#include <span>

#include <sluice/record.hpp>

namespace sluice {

/// Receives embedded records in input order. Thread: the thread running the pipeline's loop
/// (every call): the caller's with Pipeline::run(), the loop's with start(), the stream's own
/// thread with EventStream. A sink that does slow I/O holds up the loop; such sinks should
/// hand work to a thread of their own and return, and apply their own bound. Ownership: the
/// Pipeline owns it from set_sink() until the Pipeline is destroyed (with EventStream, until
/// the stream is).
class Sink {
 public:
  virtual ~Sink() = default;
  /// Records in input order, each exactly once. Exceptions stop the run with status "failed".
  virtual void write(std::span<const EmbeddedRecord> records) = 0;
  /// Called once at the end of a run that did not fail, after the last write().
  virtual void finish() {}
};

}  // namespace sluice
