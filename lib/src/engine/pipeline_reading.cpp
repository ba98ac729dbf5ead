// Reading and admission: the source's records (the JSONL file's is one like any other), under
// the in-flight bounds, in windows, to the tokenizer.

#include "pipeline_impl.hpp"


#include <algorithm>

#include <fmt/format.h>

namespace sluice {

void Pipeline::Impl::open_input() {
  if (!source_) {
    // The JSONL input: the same source any program can make, on the same path as any source.
    JsonlSourceOptions o;
    o.max_record_bytes = opt_.max_record_bytes;
    o.read_chunk_bytes = opt_.read_chunk_bytes;
    source_ = make_jsonl_source(opt_.input, o);
  }
  input_name_ = source_->name();
  input_size_ = source_->size_bytes();
}

void Pipeline::Impl::set_reader_state(StageState to, const char* reason) {
  if (reader_state_ == to) return;
  if (bus_.wants<StageStateChanged>()) bus_.publish(StageStateChanged{Stage::reader, reader_state_, to, reason});
  reader_state_ = to;
}

void Pipeline::Impl::maybe_read() {
  if (finishing_ || failed_ || eof_) return;
  if (stop_requested_.load()) return;
  if (!has_budget()) {
    if (!reader_paused_) {
      reader_paused_ = true;
      set_reader_state(StageState::paused, in_flight_records_ >= opt_.max_in_flight_records ? "in-flight record limit reached"
                                                                                  : "in-flight byte limit reached");
    }
    return;
  }
  if (reader_paused_) {
    reader_paused_ = false;
    set_reader_state(StageState::running, "room in the queues");
  }
  pull_source();
}

void Pipeline::Impl::reach_end_of_input(const char* reason) {
  eof_ = true;
  set_reader_state(StageState::stopped, reason);
  workers_->finish_input();
  check_done();
}

void Pipeline::Impl::source_main() {
  const std::size_t want = std::max<std::size_t>(opt_.batch_size, 64);
  for (;;) {
    if (!source_requests_.pop()) return;  // closed: the run is over
    SourceBatch b;
    try {
      b.records = source_->read_batch(want);
      b.end = b.records.empty();
    } catch (const Error& e) {
      b.end = true;
      b.error = e.what();
    } catch (const std::exception& e) {
      b.end = true;
      b.error = fmt::format("{} failed: {}", source_->name(), e.what());
    }
    const bool end = b.end;
    if (!source_queue_.push(std::move(b))) return;  // aborted
    uv_async_send(&source_async_);
    if (end) return;
  }
}

void Pipeline::Impl::request_batch() {
  if (source_requested_ || source_end_seen_) return;
  source_requested_ = true;
  source_requests_.push(1);
}

void Pipeline::Impl::stop_source() {
  source_requests_.close_and_clear();
  source_queue_.close_and_clear();
}

void Pipeline::Impl::pull_source() {
  // A bad record completes at once, and its completion asks for more reading: that request is
  // this loop's next turn, not a call deeper (a run of bad records would overflow the stack).
  if (pulling_) return;
  pulling_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{pulling_};
  while (has_budget() && !finishing_ && !failed_ && !stop_requested_.load()) {
    if (source_pending_.empty()) {
      if (source_end_seen_) return;
      auto b = source_queue_.try_pop();
      if (!b) {
        request_batch();
        return;  // the source thread will wake us
      }
      source_requested_ = false;
      if (!b->error.empty()) {
        source_end_seen_ = true;
        fail_run(b->error);
        return;
      }
      if (b->end) {
        source_end_seen_ = true;
        // A source that knows its size has read all of it (blank lines after the last record).
        summary_.bytes_read = std::max(summary_.bytes_read, input_size_);
        reach_end_of_input("end of input");
        return;
      }
      for (auto& r : b->records) source_pending_.push_back(std::move(r));
      // The next batch is read while this one is admitted.
      request_batch();
      continue;
    }
    Record r = std::move(source_pending_.front());
    source_pending_.pop_front();
    handle_record(std::move(r));
  }
}

void Pipeline::Impl::handle_record(Record&& r) {
  if (finishing_ || failed_) return;
  WorkItem item;
  item.index = next_index_++;
  item.line = r.line != 0 ? r.line : item.index + 1;
  // A record without offsets is placed after the bytes of the records before it.
  item.offset = r.offset == 0 && r.end_offset == 0 ? summary_.bytes_read : r.offset;
  item.end_offset = r.end_offset != 0 ? r.end_offset : item.offset + r.json.size();
  summary_.bytes_read = std::max(summary_.bytes_read, item.end_offset);
  item.source_position = std::move(r.position);
  ++summary_.records_read;

  if (r.error) {
    item.json = std::move(r.json);
    fail_item(std::move(item), std::move(*r.error));
    return;
  }
  if (r.embedding) {
    item.json = std::move(r.json);
    if (wants_jsonl_) {
      fail_item(std::move(item), ErrorInfo{ErrorCode::invalid_argument,
                                           "the source gave this record's vector, and the output takes JSONL lines: "
                                           "a record with Record::embedding needs a sink that takes vectors",
                                           {},
                                           {}});
      return;
    }
    // Not embedded: straight to the ordered commit, as if its results had come back.
    item.embedding = std::move(*r.embedding);
    item.weight = item.json.size() + item.embedding.size() * sizeof(float) + item.source_position.size() +
                  sizeof(WorkItem);
    ++in_flight_records_;
    in_flight_bytes_ += item.weight;
    count_processed(item, true);
    if (bus_.wants<DocumentStarted>()) bus_.publish(DocumentStarted{item.index, location(item.line, item.offset)});
    const auto index = item.index;
    reorder_.emplace(index, std::move(item));
    release();
    return;
  }
  auto parsed = parser_.parse(r.json);
  const std::optional<std::string>& text = r.text;
  if (!parsed) {
    ErrorInfo error = parsed.error();
    // A source that supplies the text itself needs only a JSON object without the output field.
    bool text_supplied = text && !text->empty() &&
                         (error.code == ErrorCode::missing_field || error.code == ErrorCode::field_not_string ||
                          error.code == ErrorCode::empty_text);
    if (!text_supplied) {
      item.json = std::move(r.json);
      fail_item(std::move(item), std::move(error));
      return;
    }
    // Find the closing brace ourselves: the object was valid up to the text check.
    const std::string_view json = r.json;
    std::size_t end = json.find_last_not_of(" \t\r\n");
    std::size_t first = json.find_first_not_of(" \t\r\n");
    std::size_t before = json.find_last_not_of(" \t\r\n", end - 1);
    item.prefix_length = end;
    item.empty_object = before == first;
  } else {
    item.prefix_length = parsed.value().prefix_length;
    item.empty_object = parsed.value().empty_object;
    item.text = std::move(parsed.value().text);
    item.id_json = std::move(parsed.value().id_json);
  }
  if (text) item.text = *text;
  item.json = std::move(r.json);
  const std::size_t dims = model_->info().dimensions;
  item.weight = item.json.size() * 2 + item.text.size() + item.source_position.size() + dims * 16 + sizeof(WorkItem);
  item.started_at = unix_time_now();
  ++window_records_;
  window_weight_ += item.weight;
  item.closes_window = window_records_ >= window_ || window_weight_ >= opt_.sort_window_bytes;
  if (item.closes_window) {
    window_records_ = window_weight_ = 0;
    ++windows_closed_;
  }
  if (bus_.wants<DocumentStarted>()) bus_.publish(DocumentStarted{item.index, location(item.line, item.offset)});
  ++in_flight_records_;
  in_flight_bytes_ += item.weight;
  workers_->push(std::move(item));
}

void Pipeline::Impl::fail_item(WorkItem&& item, ErrorInfo error) {
  item.error = std::move(error);
  item.weight = item.json.size() + item.source_position.size() + sizeof(WorkItem);
  ++in_flight_records_;
  in_flight_bytes_ += item.weight;
  count_processed(item, true);
  const auto index = item.index;
  reorder_.emplace(index, std::move(item));
  release();
}

}  // namespace sluice
