#pragma once
/// Sinks: where embedded records go when the output is not a JSONL file.

#include <span>

#include <sluice/record.hpp>

namespace sluice {

/// Receives embedded records in input order. Thread: loop (every call). A sink that does
/// slow I/O holds up the loop; such sinks should hand work to a thread of their own and
/// return, and apply their own bound.
class Sink {
 public:
  virtual ~Sink() = default;
  /// Records in input order, each exactly once. Exceptions stop the run with status "failed".
  virtual void write(std::span<const EmbeddedRecord> records) = 0;
  /// Called once at the end of a run that did not fail, after the last write().
  virtual void finish() {}
};

}  // namespace sluice
