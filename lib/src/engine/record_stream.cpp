#include <sluice/record_stream.hpp>

#include <deque>

#include <simdjson.h>

#include <sluice/error.hpp>

#include "io/jsonl_input.hpp"

namespace sluice {

namespace {

// Reads a JSONL file a chunk at a time; holds at most one chunk and the lines it produced.
class JsonlReader {
 public:
  JsonlReader(const std::filesystem::path& path, std::size_t max_record_bytes)
      : input_(path.string(), max_record_bytes, 1u << 16) {}

  std::optional<Record> next() {
    auto on_line = [this](const Line& line) {
      Record r;
      if (!line.too_long) r.json.assign(line.bytes);
      r.line = line.number;
      r.offset = line.offset;
      ready_.push_back(std::move(r));
    };
    while (ready_.empty() && !done_) done_ = !input_.read(on_line);
    if (ready_.empty()) return std::nullopt;
    Record r = std::move(ready_.front());
    ready_.pop_front();
    return r;
  }

 private:
  JsonlInput input_;
  std::deque<Record> ready_;
  bool done_ = false;
};

class StreamSource : public Source {
 public:
  explicit StreamSource(RecordStream stream) : stream_(std::move(stream)) {}
  std::vector<Record> read_batch(std::size_t max_records) override {
    std::vector<Record> out;
    while (out.size() < max_records) {
      auto r = stream_.next();
      if (!r) break;
      out.push_back(std::move(*r));
    }
    return out;
  }

 private:
  RecordStream stream_;
};

}  // namespace

std::optional<std::string> string_field(const Record& record, std::string_view name) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(simdjson::padded_string(record.json)).get(obj) != simdjson::SUCCESS) return std::nullopt;
  std::string_view value;
  if (obj.at_key(name).get_string().get(value) != simdjson::SUCCESS) return std::nullopt;
  return std::string(value);
}

RecordStream RecordStream::from_jsonl(const std::filesystem::path& path, std::size_t max_record_bytes) {
  auto reader = std::make_shared<JsonlReader>(path, max_record_bytes);
  return RecordStream([reader] { return reader->next(); });
}

RecordStream RecordStream::from_source(std::shared_ptr<Source> source, std::size_t batch_size) {
  struct State {
    std::shared_ptr<Source> source;
    std::size_t batch_size;
    std::deque<Record> ready;
    bool done = false;
  };
  auto st = std::make_shared<State>(State{std::move(source), batch_size == 0 ? 1 : batch_size, {}, false});
  return RecordStream([st]() -> std::optional<Record> {
    if (st->ready.empty() && !st->done) {
      auto batch = st->source->read_batch(st->batch_size);
      if (batch.empty()) st->done = true;
      for (auto& r : batch) st->ready.push_back(std::move(r));
    }
    if (st->ready.empty()) return std::nullopt;
    Record r = std::move(st->ready.front());
    st->ready.pop_front();
    return r;
  });
}

RecordStream RecordStream::from_records(std::vector<Record> records) {
  auto st = std::make_shared<std::pair<std::vector<Record>, std::size_t>>(std::move(records), 0);
  return RecordStream([st]() -> std::optional<Record> {
    if (st->second >= st->first.size()) return std::nullopt;
    return std::move(st->first[st->second++]);
  });
}

RecordStream RecordStream::filter(std::function<bool(const Record&)> keep) && {
  return RecordStream([next = std::move(next_), keep = std::move(keep)]() -> std::optional<Record> {
    while (auto r = next()) {
      if (keep(*r)) return r;
    }
    return std::nullopt;
  });
}

RecordStream RecordStream::map(std::function<Record(Record)> fn) && {
  return RecordStream([next = std::move(next_), fn = std::move(fn)]() -> std::optional<Record> {
    auto r = next();
    if (!r) return std::nullopt;
    return fn(std::move(*r));
  });
}

RecordStream RecordStream::limit(std::size_t n) && {
  auto left = std::make_shared<std::size_t>(n);
  return RecordStream([next = std::move(next_), left]() -> std::optional<Record> {
    if (*left == 0) return std::nullopt;
    auto r = next();
    if (r) --*left;
    return r;
  });
}

RecordStream::Batches RecordStream::batch(std::size_t size) && {
  return Batches(std::move(next_), size == 0 ? 1 : size);
}

std::optional<std::vector<Record>> RecordStream::Batches::next() {
  std::vector<Record> out;
  while (out.size() < size_) {
    auto r = next_ ? next_() : std::nullopt;
    if (!r) break;
    out.push_back(std::move(*r));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

PullIterator<std::vector<Record>> RecordStream::Batches::begin() {
  return PullIterator<std::vector<Record>>([this] { return next(); });
}

std::unique_ptr<Source> RecordStream::into_source() && { return std::make_unique<StreamSource>(std::move(*this)); }

std::vector<Record> RecordStream::collect() && {
  std::vector<Record> out;
  while (auto r = next()) out.push_back(std::move(*r));
  return out;
}

PullIterator<Record> RecordStream::begin() {
  return PullIterator<Record>([this] { return next(); });
}

}  // namespace sluice
