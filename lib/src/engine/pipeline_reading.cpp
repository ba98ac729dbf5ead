// Reading and admission: the input file (or a Source) into records, under the in-flight bounds,
// in windows, to the tokenizer.

#include "pipeline_impl.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace sluice {

void Pipeline::Impl::open_input() {
  if (source_) {
    input_name_ = "<source>";
    return;
  }
  input_ = std::make_unique<JsonlInput>(opt_.input, opt_.max_record_bytes, opt_.read_chunk_bytes);
  input_name_ = input_->name();
  input_size_ = input_->size();
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
  if (source_) {
    pull_source();
  } else if (!read_in_flight_) {
    read_file_chunk();
  }
}

void Pipeline::Impl::read_file_chunk() {
  read_in_flight_ = true;
  read_req_.data = this;
  const std::span<char> into = input_->buffer();
  uv_buf_t buf = uv_buf_init(into.data(), static_cast<unsigned>(into.size()));
  int r = uv_fs_read(loop_, &read_req_, input_->fd(), &buf, 1, input_->read_offset(), &Impl::on_read);
  if (r < 0) {
    read_in_flight_ = false;
    fail_run(fmt::format("{}: cannot read input: {}", input_name_, uv_strerror(r)));
  }
}

void Pipeline::Impl::on_read(uv_fs_t* req) {
  auto* self = static_cast<Impl*>(req->data);
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  self->read_in_flight_ = false;
  if (self->finishing_) return;
  if (n < 0) {
    self->fail_run(fmt::format("{}: cannot read input: {}", self->input_name_, uv_strerror(static_cast<int>(n))));
    return;
  }
  if (self->stop_requested_.load()) {
    // Drain: the bytes just read are dropped; a resume reads them again from the checkpoint.
    self->check_done();
    return;
  }
  if (n == 0) {
    self->read_in_flight_ = true;  // no read past the end while the last line is handled
    self->input_->consumed(0, [self](const Line& line) { self->on_line(line); });
    self->read_in_flight_ = false;
    self->reach_end_of_input("end of input");
    return;
  }
  self->summary_.bytes_read += static_cast<std::uint64_t>(n);
  // While the buffer is being split, no read may be issued into it: a record that completes
  // at once (a bad one) reaches maybe_read() from inside consumed().
  self->read_in_flight_ = true;
  self->input_->consumed(static_cast<std::size_t>(n), [self](const Line& line) { self->on_line(line); });
  self->read_in_flight_ = false;
  self->maybe_read();
  self->check_done();  // a failure during feed() waited for the read to be over
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
    SourceBatch b;
    try {
      b.records = source_->read_batch(want);
      b.end = b.records.empty();
    } catch (const std::exception& e) {
      b.end = true;
      b.error = fmt::format("source failed: {}", e.what());
    }
    bool end = b.end;
    if (!source_queue_.push(std::move(b))) return;  // aborted
    uv_async_send(&source_async_);
    if (end) return;
  }
}

void Pipeline::Impl::pull_source() {
  while (has_budget() && !finishing_ && !failed_ && !stop_requested_.load()) {
    if (source_pending_.empty()) {
      if (source_end_seen_) return;
      auto b = source_queue_.try_pop();
      if (!b) return;  // the source thread will wake us
      if (!b->error.empty()) {
        fail_run(b->error);
        return;
      }
      if (b->end) {
        source_end_seen_ = true;
        reach_end_of_input("end of source");
        return;
      }
      for (auto& r : b->records) source_pending_.push_back(std::move(r));
      continue;
    }
    Record r = std::move(source_pending_.front());
    source_pending_.pop_front();
    std::uint64_t line = r.line != 0 ? r.line : next_index_ + 1;
    summary_.bytes_read += r.json.size();
    handle_record(r.json, r.text, line, r.offset, r.offset + r.json.size(), false, r.json.size());
  }
}

void Pipeline::Impl::on_line(const Line& line) {
  handle_record(line.bytes, std::nullopt, line.number, line.offset, line.end_offset, line.too_long, line.length);
}

void Pipeline::Impl::handle_record(std::string_view json, const std::optional<std::string>& text, std::uint64_t line,
                                   std::uint64_t offset, std::uint64_t end_offset, bool too_long,
                                   std::uint64_t length) {
  if (finishing_ || failed_) return;
  WorkItem item;
  item.index = next_index_++;
  item.line = line;
  item.offset = offset;
  item.end_offset = end_offset;
  ++summary_.records_read;

  if (too_long) {
    fail_item(std::move(item),
              ErrorInfo{ErrorCode::record_too_large,
                        fmt::format("record is {} bytes, more than the limit of {} (raise it with --max-record-bytes)",
                                    length, opt_.max_record_bytes),
                        {},
                        {}});
    return;
  }
  auto parsed = parser_.parse(json);
  if (!parsed) {
    ErrorInfo error = parsed.error();
    // A source that supplies the text itself needs only a JSON object without the output field.
    bool text_supplied = text && !text->empty() &&
                         (error.code == ErrorCode::missing_field || error.code == ErrorCode::field_not_string ||
                          error.code == ErrorCode::empty_text);
    if (!text_supplied) {
      item.json.assign(json);
      fail_item(std::move(item), std::move(error));
      return;
    }
    // Find the closing brace ourselves: the object was valid up to the text check.
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
  item.json.assign(json);
  const std::size_t dims = model_->info().dimensions;
  item.weight = item.json.size() * 2 + item.text.size() + dims * 16 + sizeof(WorkItem);
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
  item.weight = item.json.size() + sizeof(WorkItem);
  ++in_flight_records_;
  in_flight_bytes_ += item.weight;
  count_processed(item, true);
  const auto index = item.index;
  reorder_.emplace(index, std::move(item));
  release();
}

}  // namespace sluice
