#include <sluice/event_stream.hpp>

#include <atomic>
#include <exception>
#include <utility>

#include "bounded_queue.hpp"

namespace sluice {

struct EventStream::State {
  explicit State(std::unique_ptr<Pipeline> p, std::size_t capacity) : pipeline(std::move(p)), queue(capacity) {}
  std::unique_ptr<Pipeline> pipeline;
  BoundedQueue<PipelineEvent> queue;
  std::thread thread;
  bool finished_returned = false;
  std::exception_ptr setup_error;  // the run could not start: next() throws it
};

EventStream::EventStream(std::unique_ptr<Pipeline> pipeline, EventFilter filter, std::size_t capacity)
    : state_(std::make_unique<State>(std::move(pipeline), capacity)) {
  filter.add<PipelineFinished>();  // the stream needs its end
  State* s = state_.get();
  s->pipeline->subscribe(filter, [s](const PipelineEvent& e) {
    PipelineEvent copy = e;
    s->queue.push(std::move(copy));  // waits while the consumer is behind; false once closed
  });
  s->thread = std::thread([s] {
    try {
      s->pipeline->run();
    } catch (...) {
      // A setup error: no event was published; the consumer's next() throws it.
      s->setup_error = std::current_exception();
    }
    s->queue.close();  // after setup_error is set: the consumer reads it once the queue is over
  });
}

EventStream::~EventStream() {
  if (state_->thread.joinable()) {
    state_->pipeline->abort();
    state_->queue.close_and_clear();  // unblocks the loop if it waits on a full buffer
    state_->thread.join();
  }
}

std::optional<PipelineEvent> EventStream::next() {
  if (state_->finished_returned) return std::nullopt;
  auto e = state_->queue.pop();
  if (!e) {
    if (state_->thread.joinable()) state_->thread.join();
    state_->finished_returned = true;
    if (state_->setup_error) std::rethrow_exception(std::exchange(state_->setup_error, nullptr));
    return std::nullopt;
  }
  if (std::holds_alternative<PipelineFinished>(e->payload)) {
    state_->finished_returned = true;
    if (state_->thread.joinable()) state_->thread.join();
  }
  return e;
}

void EventStream::stop() noexcept { state_->pipeline->stop(); }

PullIterator<PipelineEvent> EventStream::begin() {
  return PullIterator<PipelineEvent>([this] { return next(); });
}

namespace {
class CollectingSink : public Sink {
 public:
  explicit CollectingSink(std::vector<EmbeddedRecord>& out) : out_(out) {}
  void write(std::span<const EmbeddedRecord> records) override {
    out_.insert(out_.end(), records.begin(), records.end());
  }

 private:
  std::vector<EmbeddedRecord>& out_;
};
}  // namespace

Collected collect(Pipeline& pipeline) {
  if (pipeline.has_sink()) {
    throw Error(ErrorCode::invalid_argument, "collect() sets a sink of its own, and this pipeline already has one");
  }
  Collected out;
  pipeline.set_sink(std::make_unique<CollectingSink>(out.records));
  const SubscriptionId id = pipeline.subscribe(EventFilter::of<DocumentFailed>(), [&out](const PipelineEvent& e) {
    out.failed.push_back(std::get<DocumentFailed>(e.payload));
  });
  try {
    out.summary = pipeline.run();
  } catch (...) {
    pipeline.unsubscribe(id);
    throw;
  }
  pipeline.unsubscribe(id);
  if (out.summary.status == RunStatus::failed) {
    // The record that failed the run is the last one reported (OnError::fail or max_errors).
    const bool by_record = !out.failed.empty() && out.summary.error.find(out.failed.back().message) != std::string::npos;
    throw Error(by_record ? out.failed.back().code : ErrorCode::io_error, out.summary.error);
  }
  return out;
}

}  // namespace sluice
