#pragma once
/// EventStream: pull iteration over a pipeline's events.
///
///   sluice::EventStream events(std::move(pipeline));
///   for (const sluice::Event& e : events) { ... }
///
/// The pipeline runs on a thread of its own. Events wait in a bounded buffer; when it is full
/// the pipeline's loop waits for the consumer, so a slow consumer slows the pipeline instead
/// of growing memory.

#include <cstddef>
#include <memory>
#include <optional>
#include <thread>

#include <sluice/events.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>

namespace sluice {

class EventStream {
 public:
  /// Starts `pipeline` at once. `capacity`: events buffered before the pipeline waits.
  explicit EventStream(std::unique_ptr<Pipeline> pipeline, EventFilter filter = EventFilter::all(),
                       std::size_t capacity = 1024);
  /// Aborts the pipeline if it is still running, and waits for its thread.
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  /// The next event; nullopt after PipelineFinished has been returned. Thread: the consumer.
  std::optional<Event> next();
  /// Asks the pipeline to drain and finish (see Pipeline::stop()); keep calling next().
  void stop() noexcept;

  PullIterator<Event> begin();
  std::default_sentinel_t end() { return {}; }

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Runs `pipeline` to the end and returns every embedded record in input order.
/// Memory: O(n) in the number of records: meant for small inputs, tests and notebooks; use a
/// Sink or the JSONL output for anything large. Throws sluice::Error when the run fails.
std::vector<EmbeddedRecord> collect(Pipeline& pipeline);

}  // namespace sluice
