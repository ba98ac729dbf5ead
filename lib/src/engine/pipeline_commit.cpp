// The ordered commit: results back in input order, written to the sink (the JSONL output is one),
// records completed once the sink has committed them.

#include "pipeline_impl.hpp"

#include <fmt/format.h>

#include "io/output_format.hpp"

namespace sluice {

void Pipeline::Impl::open_outputs() {
  if (!opt_.dead_letter.empty()) {
    // A resumed run cuts the file back to the checkpoint's offset: lines after it belong to
    // records that are done again.
    check_resume_size(opt_.dead_letter, done_.dead_letter_offset);
    dead_ = std::make_unique<AsyncFileWriter>(
        loop_, [this](std::uint64_t) { on_output_written(); },
        [this](const std::string& message) { fail_run(message); });
    dead_->open(opt_.dead_letter, done_.dead_letter_offset);
  }
}

void Pipeline::Impl::publish_backend_events() {
  std::vector<EventPayload> events;
  {
    std::lock_guard lock(sink_mutex_);
    events.swap(backend_events_);
  }
  for (EventPayload& e : events) {
    const bool wanted = std::visit(
        [this](const auto& payload) { return bus_.wants<std::decay_t<decltype(payload)>>(); }, e);
    if (wanted) bus_.publish(std::move(e));
  }
}

void Pipeline::Impl::on_results(uv_async_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  self->publish_backend_events();
  if (!self->workers_) return;
  auto results = self->workers_->take_results();
  if (self->finishing_) return;
  for (auto& item : results) {
    self->count_processed(item, false);
    const auto index = item.index;
    self->reorder_.emplace(index, std::move(item));
  }
  // The first arrival is the base of the rates: work from there on, over time from there on.
  if (!results.empty()) {
    self->rates_.add(unix_time_now(), self->processed_, self->processed_tokens_, self->processed_bytes_);
  }
  self->release();
  self->check_done();
}

void Pipeline::Impl::release() {
  while (!reorder_.empty() && reorder_.begin()->first == next_release_ && !failed_) {
    auto node = reorder_.extract(reorder_.begin());
    WorkItem& item = node.mapped();
    ++next_release_;
    Pending p;
    p.index = item.index;
    p.line = item.line;
    p.offset = item.offset;
    p.end_offset = item.end_offset;
    p.source_position = std::move(item.source_position);
    p.tokens = item.tokens;
    p.truncated = item.truncated;
    p.started_at = item.started_at;
    p.weight = item.weight;
    p.closes_window = item.closes_window;
    if (item.error && item.error->code == ErrorCode::backend_unavailable) {
      // The model backend is gone (NATS unreachable past its timeout): the run fails here, and
      // neither this record nor any after it counts as done, so a resume embeds them.
      flush_sink_batch();
      fail_run(item.error->message);
      return;
    }
    if (item.error) {
      const ErrorInfo& e = *item.error;
      p.failed = true;
      if (dead_) {
        // Written when it completes, in order with the records the sink may yet refuse.
        append_dead_letter_line(p.dead_letter_line, location(item.line, item.offset), e, item.json);
      }
      const bool retryable = e.code == ErrorCode::model_error || e.code == ErrorCode::io_error;
      if (auto ends_run = report_bad_record(item.index, item.line, item.offset, e, retryable)) {
        // Counted now, as its document_failed was published: the run ends here, and this record
        // stays out of every position (a resume reads it again, fixed or not). The records
        // before it go to the sink: they are done. It is dead-lettered too, after the records
        // before it (finish()), past the final checkpoint's offset: a resume cuts it off and
        // writes it again if it still fails.
        ++summary_.failed;
        last_dead_letter_line_ = std::move(p.dead_letter_line);
        flush_sink_batch();
        fail_run(*ends_run);
        return;
      }
    } else {
      EmbeddedRecord r;
      r.index = item.index;
      r.line = item.line;
      if (wants_jsonl_) {
        output_appended_ += item.output_line.size();
        r.jsonl = std::move(item.output_line);
      } else {
        r.json = std::move(item.json);
        r.embedding = std::move(item.embedding);
      }
      r.tokens = item.tokens;
      r.truncated = item.truncated;
      sink_batch_.push_back(std::move(r));
      ++sink_written_;
    }
    // Done once a commit covers the records written up to it (and this one).
    p.output_end = sink_written_;
    p.output_bytes_end = output_appended_;
    if (p.closes_window) {
      // The sink's position after this window: its records must have been written.
      if (!flush_sink_batch_ok()) return;
      p.sink_position = sink_->position();
    }
    pending_.push_back(std::move(p));
  }
  if (!flush_sink_batch_ok()) return;
  maybe_commit();
  on_output_written();
}

std::optional<std::string> Pipeline::Impl::report_bad_record(std::uint64_t index, std::uint64_t line,
                                                             std::uint64_t offset, const ErrorInfo& error,
                                                             bool retryable) {
  const std::string message = fmt::format("{}:{}: {}", input_name_, line, error.message);
  if (bus_.wants<DocumentFailed>()) {
    bus_.publish(DocumentFailed{index, location(line, offset), error.code, message, error.field, retryable, 1});
  }
  ++failed_released_;
  const bool too_many = opt_.max_errors && failed_released_ > *opt_.max_errors;
  if (too_many) {
    return fmt::format("{} records failed, more than --max-errors {} allows; the last: {}", failed_released_,
                       *opt_.max_errors, message);
  }
  if (opt_.on_error == OnError::fail) return message;
  return std::nullopt;
}

void Pipeline::Impl::flush_sink_batch() {
  if (sink_batch_.empty() || failed_) {
    sink_batch_.clear();
    return;
  }
  try {
    sink_->write(sink_batch_);
  } catch (const std::exception& e) {
    sink_failed_ = true;
    fail_run(fmt::format("{} failed: {}", sink_->name(), e.what()));
  }
  sink_batch_.clear();
}

void Pipeline::Impl::complete_written() {
  while (!stop_completing_ && !pending_.empty() && pending_.front().output_end <= sink_committed_) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    complete(p);
  }
}

void Pipeline::Impl::on_output_written() {
  complete_written();
  if (!finishing_) {
    maybe_checkpoint(false, nullptr);
    maybe_read();
    check_done();
  }
}

void Pipeline::Impl::complete(Pending& p) {
  if (p.rejection) {
    // The sink refused it: a bad record like any other, in its place in the input's order.
    const SinkRejection& r = *p.rejection;
    if (auto ends_run = report_bad_record(p.index, p.line, p.offset, r.error, false)) {
      // As for a bad record at release: the run ends here, and neither it nor the records
      // after it (already in the sink: a resume writes them again, by id) count as done.
      ++summary_.failed;
      stop_completing_ = true;
      if (dead_) append_dead_letter_line(last_dead_letter_line_, location(p.line, p.offset), r.error, r.json);
      fail_run(*ends_run);
      return;
    }
    p.failed = true;
    if (dead_) append_dead_letter_line(p.dead_letter_line, location(p.line, p.offset), r.error, r.json);
  }
  if (!p.dead_letter_line.empty()) {
    dead_letter_appended_ += p.dead_letter_line.size();
    dead_->append(p.dead_letter_line);
  }
  --in_flight_records_;
  in_flight_bytes_ -= p.weight;
  // The summary counts this run's outcome, the done position what is durable in order: a
  // record that failed the run is in the first and never in the second.
  if (p.failed) {
    ++summary_.failed;
    ++done_.failed;
  } else {
    ++summary_.completed;
    ++done_.completed;
    summary_.tokens += p.tokens;
    done_.tokens += p.tokens;
    if (p.truncated) {
      ++summary_.truncated;
      ++done_.truncated;
    }
  }
  done_.records = p.index + 1;
  done_.input_offset = p.end_offset;
  done_.input_line = p.line;
  done_.source_position = std::move(p.source_position);
  // The output's position: bytes of a JSONL sink, records of another.
  done_.output_offset = wants_jsonl_ ? p.output_bytes_end : p.output_end;
  done_.dead_letter_offset = dead_letter_appended_;
  if (p.closes_window) {
    done_.sink_position = std::move(p.sink_position);
    boundary_ = done_;
  }
  if (!p.failed && bus_.wants<DocumentCompleted>()) {
    bus_.publish(DocumentCompleted{p.index, location(p.line, p.offset), p.tokens, p.truncated,
                                   (unix_time_now() - p.started_at) * 1000.0});
  }
}

void Pipeline::Impl::maybe_commit() {
  if (sink_commit_busy_ || sink_failed_ || finishing_) return;
  if (sink_written_ == sink_committed_) return;
  issue_commit(nullptr);
}

void Pipeline::Impl::issue_commit(std::function<void()> then) {
  sink_commit_busy_ = true;
  commit_then_ = std::move(then);
  const std::uint64_t covered = sink_written_;
  // The checkpoint as of the records already done; those this commit covers follow in the
  // next one. Its dead letters are written and synced before the commit names them, and
  // hashed once they are.
  std::optional<CheckpointState> state;
  if (sink_checkpoints()) state = checkpoint_state();
  auto commit = [this, covered, state = std::move(state)](int status) mutable {
    if (status < 0) {
      on_commit_done(covered, CommitResult{fmt::format("{}: cannot sync the dead-letter file: {}", opt_.dead_letter,
                                                       uv_strerror(status)),
                                           {}});
      return;
    }
    std::string checkpoint;
    if (state) {
      if (std::string err = hash_up_to(*state); !err.empty()) {
        on_commit_done(covered, CommitResult{err, {}});
        return;
      }
      checkpoint = checkpoint_to_json(*state);
      committing_checkpoint_ = std::move(state);
    }
    try {
      sink_->commit(checkpoint, [this, covered](CommitResult result) {
        std::lock_guard lock(sink_mutex_);
        if (!async_ready_.load()) return;  // the run is over
        sink_results_.emplace_back(covered, std::move(result));
        uv_async_send(&sink_async_);
      });
    } catch (const std::exception& e) {
      on_commit_done(covered, CommitResult{e.what(), {}});
    }
  };
  if (dead_) {
    dead_->sync(commit);
  } else {
    commit(0);
  }
}

void Pipeline::Impl::on_sink_async(uv_async_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  std::deque<std::pair<std::uint64_t, CommitResult>> results;
  {
    std::lock_guard lock(self->sink_mutex_);
    results.swap(self->sink_results_);
  }
  for (auto& [covered, result] : results) self->on_commit_done(covered, std::move(result));
}

void Pipeline::Impl::on_commit_done(std::uint64_t covered, CommitResult result) {
  sink_commit_busy_ = false;
  auto then = std::move(commit_then_);
  commit_then_ = nullptr;
  if (!result.error.empty()) {
    sink_failed_ = true;
    // A sink's message may name it already.
    const std::string name = sink_->name();
    fail_run(result.error.starts_with(name) ? result.error : fmt::format("{}: {}", name, result.error));
  } else {
    // What the sink refused becomes a bad record when it completes, in order.
    for (SinkRejection& r : result.rejected) {
      if (pending_.empty() || r.index < pending_.front().index || r.index - pending_.front().index >= pending_.size()) {
        continue;  // not a record of this commit: ignored
      }
      pending_[r.index - pending_.front().index].rejection = std::make_shared<const SinkRejection>(std::move(r));
    }
    sink_committed_ = covered;
    complete_written();
    if (committing_checkpoint_ &&
        (committing_checkpoint_->records_done > last_checkpoint_records_ || committing_checkpoint_->finished)) {
      // The checkpoint this commit stored: that of the records done before it.
      const CheckpointState& state = *committing_checkpoint_;
      last_checkpoint_records_ = state.records_done;
      last_checkpoint_time_ = unix_time_now();
      if (bus_.wants<Checkpointed>()) {
        bus_.publish(Checkpointed{sink_->name(), state.records_done, state.input_offset, state.input_line,
                                  state.output_offset});
      }
    }
  }
  committing_checkpoint_.reset();
  if (then) {
    then();
    return;
  }
  if (auto f = std::move(final_commit_waiting_)) {
    final_commit_waiting_ = nullptr;
    final_commit(std::move(f));
    return;
  }
  if (!finishing_) {
    maybe_checkpoint(false, nullptr);
    maybe_commit();
    maybe_read();
  }
  check_done();
}

void Pipeline::Impl::final_commit(std::function<void()> then) {
  if (sink_failed_) {
    then();
    return;
  }
  if (sink_commit_busy_) {
    final_commit_waiting_ = std::move(then);
    return;
  }
  if (sink_written_ > sink_committed_) {
    // The records written since the last commit first; the final checkpoint then names them.
    final_commit_waiting_ = std::move(then);
    issue_commit(nullptr);
    return;
  }
  if (!sink_checkpoints() || stop_completing_) {
    then();
    return;
  }
  // Everything written is durable: the last commit stores the final checkpoint alone.
  complete_written();
  issue_commit(std::move(then));
}

}  // namespace sluice
