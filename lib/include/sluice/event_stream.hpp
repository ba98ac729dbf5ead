#pragma once
/// EventStream: pull iteration over a pipeline's events.
///
/// \code
///   auto pipeline = std::make_unique<sluice::Pipeline>(options);
///   sluice::EventStream events(std::move(pipeline));
///   for (const sluice::PipelineEvent& e : events) { ... }
/// \endcode
///
/// The pipeline runs on a thread of its own, the stream's: its loop, its subscribers and its
/// Sink (if one is set) are called there, not on the consumer's thread. Events wait in a
/// bounded buffer; when it is full the pipeline's loop waits for the consumer, so a slow
/// consumer slows the pipeline instead of growing memory. Once next() has returned
/// PipelineFinished, the thread is joined: the pipeline's sink and subscribers may be read
/// from the consumer's thread.
///
/// A run that cannot start (a missing input, a refused resume) publishes no event at all:
/// next() throws its sluice::Error, once, and then returns nullopt.

#include <cstddef>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

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

  /// The next event; nullopt after PipelineFinished has been returned. Throws the run's
  /// sluice::Error when it could not start (then nullopt). Thread: the consumer.
  std::optional<PipelineEvent> next();
  /// Asks the pipeline to drain and finish (see Pipeline::stop()); keep calling next().
  void stop() noexcept;

  PullIterator<PipelineEvent> begin();
  std::default_sentinel_t end() { return {}; }

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// What collect() returns.
struct Collected {
  std::vector<EmbeddedRecord> records;  ///< every embedded record, in input order
  std::vector<DocumentFailed> failed;   ///< every record that failed (OnError::skip), in the order reported
  RunSummary summary;                   ///< the run's own counts
};

/// Runs `pipeline` to the end with a sink of its own and returns every embedded record in
/// input order, every failed record and the summary: records.size() + failed.size() is the
/// records read. Memory: O(n) in the number of records: meant for small inputs, tests and
/// notebooks; use a Sink or the JSONL output for anything large. Throws sluice::Error:
/// invalid_argument when the pipeline already has a sink (collect() would replace it); when
/// the run fails, with the code of the record that failed it (OnError::fail: missing_field,
/// invalid_json...) or of the setup error. Thread: the caller's (the run happens on it).
Collected collect(Pipeline& pipeline);

}  // namespace sluice
