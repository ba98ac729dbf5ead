#include <sluice/event_stream.hpp>

#include <atomic>

#include "bounded_queue.hpp"

namespace sluice {

struct EventStream::State {
  explicit State(std::unique_ptr<Pipeline> p, std::size_t capacity) : pipeline(std::move(p)), queue(capacity) {}
  std::unique_ptr<Pipeline> pipeline;
  BoundedQueue<Event> queue;
  std::thread thread;
  bool finished_returned = false;
  std::string setup_error;
};

EventStream::EventStream(std::unique_ptr<Pipeline> pipeline, EventFilter filter, std::size_t capacity)
    : state_(std::make_unique<State>(std::move(pipeline), capacity)) {
  filter.add<PipelineFinished>();  // the stream needs its end
  State* s = state_.get();
  s->pipeline->subscribe(filter, [s](const Event& e) {
    Event copy = e;
    s->queue.push(std::move(copy));  // waits while the consumer is behind; false once closed
  });
  s->thread = std::thread([s] {
    try {
      s->pipeline->run();
    } catch (const std::exception& e) {
      // A setup error: the stream ends with a synthetic PipelineFinished carrying it.
      RunSummary summary;
      summary.status = "failed";
      summary.error = e.what();
      s->queue.push(Event{1, unix_time_now(), s->pipeline->pipeline_id(), PipelineFinished{summary}});
    }
    s->queue.close();
  });
}

EventStream::~EventStream() {
  if (state_->thread.joinable()) {
    state_->pipeline->abort();
    state_->queue.close_and_clear();  // unblocks the loop if it waits on a full buffer
    state_->thread.join();
  }
}

std::optional<Event> EventStream::next() {
  if (state_->finished_returned) return std::nullopt;
  auto e = state_->queue.pop();
  if (!e) return std::nullopt;
  if (std::holds_alternative<PipelineFinished>(e->payload)) {
    state_->finished_returned = true;
    if (state_->thread.joinable()) state_->thread.join();
  }
  return e;
}

void EventStream::stop() noexcept { state_->pipeline->stop(); }

PullIterator<Event> EventStream::begin() {
  return PullIterator<Event>([this] { return next(); });
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

std::vector<EmbeddedRecord> collect(Pipeline& pipeline) {
  std::vector<EmbeddedRecord> out;
  pipeline.set_sink(std::make_unique<CollectingSink>(out));
  RunSummary s = pipeline.run();
  if (s.status == "failed") throw Error(ErrorCode::internal, s.error);
  return out;
}

}  // namespace sluice
