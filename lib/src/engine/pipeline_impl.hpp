#pragma once
// The engine behind sluice::Pipeline, in parts named for what they do (docs/architecture.md):
//   pipeline.cpp             construction, start, the run's state and its end
//   pipeline_reading.cpp     reading the source and admission (in-flight bounds, windows)
//   pipeline_commit.cpp      the ordered commit: input order, writing, sink commits, completion
//   pipeline_checkpoint.cpp  fingerprint, content hashes, resume, checkpoints
//   pipeline_progress.cpp    BatchProgress: rates, fraction, ETA
// Every member runs on the loop thread unless its comment says otherwise.

#include <sluice/pipeline.hpp>

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "async_file_writer.hpp"
#include "bounded_queue.hpp"
#include "checkpoint.hpp"
#include "embed_workers.hpp"
#include "event_bus.hpp"
#include "io/content_hash.hpp"
#include "io/record_parser.hpp"
#include "work_item.hpp"

namespace sluice {

// Rates of model work for progress and the ETA. Samples start when the first results come
// back (the first model call, slow to warm up, is the base, not part of the rate), and the rate
// is taken over a span that grows with the run: 30 % of the time since then, from 2 to 30 s,
// long enough to smooth the saw-tooth of length-sorted windows and short enough to follow a
// change of speed.
class RateWindow {
 public:
  /// A sample at each arrival of results: between two arrivals lie whole model calls, so a
  /// rate between them does not depend on when progress happens to be published. Arrivals
  /// closer than 50 ms are one sample.
  void add(double t, std::uint64_t docs, std::uint64_t tokens, std::uint64_t bytes) {
    if (samples_.empty()) first_t_ = t;
    if (samples_.size() >= 2 && t - samples_[samples_.size() - 2].t < 0.05) samples_.pop_back();
    samples_.push_back({t, docs, tokens, bytes});
    while (samples_.size() > 2 && t - samples_[1].t > kKeepS) samples_.pop_front();
  }
  bool empty() const { return samples_.empty(); }
  double last_t() const { return samples_.empty() ? 0 : samples_.back().t; }
  struct Rates {
    double docs = 0, tokens = 0, bytes = 0;
    double over_s = 0;  // the span the rates were taken over; 0: none yet
  };
  Rates rates() const {
    if (samples_.size() < 2) return {};
    const Sample& b = samples_.back();
    const double want = std::clamp(0.3 * (b.t - first_t_), kMinSpanS, kMaxSpanS);
    // The newest sample at least `want` before the last one, or the oldest kept.
    std::size_t i = samples_.size() - 1;
    while (i > 0 && b.t - samples_[i].t < want) --i;
    const Sample& a = samples_[i];
    const double dt = b.t - a.t;
    if (dt <= 0) return {};
    return {(b.docs - a.docs) / dt, (b.tokens - a.tokens) / dt, (b.bytes - a.bytes) / dt, dt};
  }

 private:
  static constexpr double kMinSpanS = 2.0;
  static constexpr double kMaxSpanS = 30.0;
  static constexpr double kKeepS = 31.0;
  struct Sample {
    double t;
    std::uint64_t docs, tokens, bytes;
  };
  std::deque<Sample> samples_;
  double first_t_ = 0;
};

// Bookkeeping for a record released in order, completed once its output bytes are written.
struct Pending {
  std::uint64_t output_end = 0;  // records written to the sink up to this one: committed first
  std::uint64_t index = 0;
  std::uint64_t line = 0;
  std::uint64_t offset = 0;
  std::uint64_t end_offset = 0;
  std::string source_position;
  std::uint32_t tokens = 0;
  bool truncated = false;
  bool failed = false;
  bool closes_window = false;
  double started_at = 0;
  std::size_t weight = 0;
  // With a sink: the dead-letter line, written when the record completes (in order with the
  // sink's rejections, which come back with commits); the sink's position after the window
  // this record closes; what the sink refused.
  std::string dead_letter_line;
  std::string sink_position;
  std::uint64_t output_bytes_end = 0;  // JSONL bytes handed to the sink up to this record
  std::shared_ptr<const SinkRejection> rejection;
};

// Where a run can resume: everything before it is durable once the output is synced.
struct Position {
  std::uint64_t records = 0;       // records done (next index)
  std::uint64_t input_offset = 0;  // input bytes before it (progress)
  std::uint64_t input_line = 0;    // line of the last record done
  std::string source_position;     // Record::position of the last record done
  std::uint64_t output_offset = 0;
  std::uint64_t dead_letter_offset = 0;
  std::uint64_t completed = 0, failed = 0, tokens = 0, truncated = 0;
  std::string sink_position;  // Sink::position() at the last window boundary
};

// One batch handed from the source thread to the loop; `end` marks the end of the source.
struct SourceBatch {
  std::vector<Record> records;
  bool end = false;
  std::string error;
};

class Pipeline::Impl {
 public:
  Impl(PipelineOptions options, std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer,
       bool loaded_here);
  ~Impl();

  void start(uv_loop_t* loop, std::function<void(const RunSummary&)> on_finished);
  RunSummary run();
  void stop() noexcept {
    stop_requested_.store(true);
    if (async_ready_.load()) uv_async_send(&control_async_);
  }
  void abort() noexcept {
    abort_requested_.store(true);
    stop_requested_.store(true);
    if (async_ready_.load()) uv_async_send(&control_async_);
  }

  PipelineOptions opt_;
  std::shared_ptr<Model> model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<Sink> sink_;
  EventBus bus_;
  // Whether sink_ is one a program set, not the pipeline's own JSONL output.
  bool has_users_sink() const { return sink_ && !own_jsonl_; }

 private:
  // Setup and teardown.
  void open_input();
  void open_outputs();
  std::string compute_fingerprint();
  void check_files_are_distinct() const;
  // Holds `<checkpoint>.lock` for the run: two runs never write one checkpoint file (each
  // output has its own lock, but two outputs can name one --checkpoint).
  void lock_checkpoint();
  int checkpoint_lock_fd_ = -1;
  // Carries the content hashes forward to `state`'s offsets and writes them into it. Returns
  // an empty string, or what could not be read.
  std::string hash_up_to(CheckpointState& state);
  // hash_up_to(state), then the checkpoint file. Returns an empty string, or what failed.
  std::string save_checkpoint(CheckpointState& state);
  // On resume: the source goes back to the checkpoint's position, and the bytes before the
  // output's and dead letters' offsets must be those its run wrote.
  void verify_files_against(const CheckpointState& state);
  // After a finished run was resumed: the source must have nothing more.
  void check_source_ended(const CheckpointState& state);
  // The sink stores the checkpoint in its own commits (a database, in the rows' transaction).
  bool sink_checkpoints() const { return sink_ && sink_->keeps_checkpoint(); }
  bool checkpointing() const { return !opt_.checkpoint.empty() || sink_checkpoints(); }
  // The checkpoint's name in messages and events: its file, or the sink.
  std::string checkpoint_name() const { return sink_checkpoints() ? sink_->name() : opt_.checkpoint; }
  SinkRun sink_run(bool resume, std::string position) const;
  // The output is a file that can be read again (the JSONL file, not standard output).
  bool output_rereadable() const { return sink_ && sink_->file().has_value(); }
  bool dead_letter_rereadable() const { return !opt_.dead_letter.empty() && opt_.dead_letter != "-"; }
  // The checkpoint to resume from (the file, or the sink's), or none; opens the sink.
  std::optional<CheckpointState> open_sink_and_read_checkpoint();
  // Restores positions and counters from the checkpoint; returns whether the checkpointed run
  // had finished. Throws sluice::Error when the run differs from it.
  bool load_resume_point(const CheckpointState& state);
  void close_all();
  static void on_handle_closed(uv_handle_t* handle);

  // Reading.
  // Under the in-flight bounds, or finishing the window that was open when they were reached:
  // it is always completed, so batch composition never depends on memory pressure. A window
  // is at most sort_window records and sort_window_bytes of weight (and one record), so the
  // bound grows by at most that.
  bool has_budget() {
    const bool under = in_flight_records_ < opt_.max_in_flight_records && in_flight_bytes_ < opt_.max_in_flight_bytes;
    if (under) {
      finishing_window_.reset();
      return true;
    }
    if (window_records_ == 0) return false;
    // Only the window open when the bounds were reached: a read that finishes it may start
    // the next one, which waits for room like any other.
    if (!finishing_window_) finishing_window_ = windows_closed_;
    return windows_closed_ == *finishing_window_;
  }
  void maybe_read();
  void pull_source();
  // The source thread: one batch per request (request_batch()), so that at most the batch
  // being admitted and one more are held beyond the in-flight bounds.
  void source_main();
  void request_batch();
  void stop_source();
  void handle_record(Record&& record);
  void reach_end_of_input(const char* reason);
  void set_reader_state(StageState to, const char* reason);

  // Results, order and writing.
  static void on_results(uv_async_t* handle);
  // Publishes what the model backend posted (Model::set_event_sink), on the loop.
  void publish_backend_events();
  static void on_control(uv_async_t* handle);
  void release();
  void fail_item(WorkItem&& item, ErrorInfo error);
  void on_output_written();
  // Completes, in order, the released records whose bytes are all written.
  void complete_written();
  void complete(Pending& p);
  // A bad record (of the input, the model or the sink): its DocumentFailed, and its count
  // against --max-errors. Returns the message that ends the run (OnError::fail, or past
  // --max-errors), or nothing.
  std::optional<std::string> report_bad_record(std::uint64_t index, std::uint64_t line, std::uint64_t offset,
                                               const ErrorInfo& error, bool retryable);
  void check_done();
  void fail_run(const std::string& message);

  // Progress and checkpoints.
  static void on_progress_timer(uv_timer_t* handle);
  void publish_progress();
  void maybe_checkpoint(bool final_one, std::function<void()> then);
  // Sinks: one commit outstanding at a time, covering every record written before it.
  void maybe_commit();
  void issue_commit(std::function<void()> then);
  void final_commit(std::function<void()> then);
  void on_commit_done(std::uint64_t covered, CommitResult result);
  static void on_sink_async(uv_async_t* handle);
  // Writes sink_batch_; false when the sink threw (the run then fails).
  void flush_sink_batch();
  bool flush_sink_batch_ok() {
    flush_sink_batch();
    return !sink_failed_;
  }
  CheckpointState checkpoint_state() const;
  void finish();

  InputLocation location(std::uint64_t line, std::uint64_t offset) const {
    return InputLocation{input_name_, line, offset};
  }

  uv_loop_t* loop_ = nullptr;
  std::function<void(const RunSummary&)> on_finished_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> abort_requested_{false};
  std::atomic<bool> async_ready_{false};
  uv_async_t results_async_{};
  uv_async_t control_async_{};
  uv_async_t source_async_{};
  uv_async_t sink_async_{};
  uv_timer_t progress_timer_{};
  int open_handles_ = 0;

  // Input.
  std::string input_name_;      // source_->name()
  std::uint64_t input_size_ = 0;  // source_->size_bytes()
  bool eof_ = false;
  bool reader_paused_ = false;
  StageState reader_state_ = StageState::created;
  RecordParser parser_;
  BoundedQueue<SourceBatch> source_queue_{2};
  BoundedQueue<int> source_requests_{1};
  bool source_requested_ = false;  // a batch was asked for and has not been taken yet
  bool pulling_ = false;           // pull_source() is running (it is not reentered)
  std::thread source_thread_;
  std::deque<Record> source_pending_;
  bool source_end_seen_ = false;

  // Work in flight.
  std::unique_ptr<EmbedWorkers> workers_;
  std::uint64_t next_index_ = 0;
  std::uint64_t next_release_ = 0;
  std::uint64_t failed_released_ = 0;  // records released as failed, those before a resume included
  std::map<std::uint64_t, WorkItem> reorder_;
  std::uint64_t in_flight_records_ = 0;
  std::uint64_t in_flight_bytes_ = 0;

  // Output.
  std::unique_ptr<AsyncFileWriter> dead_;
  std::deque<Pending> pending_;
  std::vector<EmbeddedRecord> sink_batch_;
  std::uint64_t output_appended_ = 0;       // JSONL bytes handed to the sink
  bool own_jsonl_ = false;    // the sink is the pipeline's own JSONL output (options.output)
  bool wants_jsonl_ = false;  // the sink takes formatted lines
  std::uint64_t dead_letter_appended_ = 0;  // bytes handed to dead_
  // A sink: records handed to write(), and those a commit has made durable (the sink's bytes
  // written and synced). One commit at a time; its callback comes back through sink_async_.
  std::uint64_t sink_written_ = 0;
  std::uint64_t sink_committed_ = 0;
  bool sink_commit_busy_ = false;
  bool sink_failed_ = false;      // a commit failed: no more are issued
  bool stop_completing_ = false;  // a rejection failed the run: the records after it stay undone
  std::string last_dead_letter_line_;  // of the record that failed the run, written at the end
  std::function<void()> commit_then_;          // after the commit outstanding
  std::optional<CheckpointState> committing_checkpoint_;  // the checkpoint it stores
  std::function<void()> final_commit_waiting_;  // the final commit, asked for while one was busy
  std::mutex sink_mutex_;
  std::deque<std::pair<std::uint64_t, CommitResult>> sink_results_;  // guarded by sink_mutex_
  std::vector<EventPayload> backend_events_;  // posted by the model backend; guarded by sink_mutex_

  // Done position: every record before it is written or failed. Boundary: the last done
  // position at a batch boundary, the one checkpoints name (a resume recomputes the batch
  // after it exactly as an uninterrupted run does).
  Position done_;
  Position boundary_;
  std::size_t chunk_tokens_ = 0;       // window length with --long-input chunk
  std::uint64_t window_ = 1;            // records per window: sort_window, or batch_size
  ThreadLayout layout_;                 // concurrent model calls and their threads
  std::uint64_t window_records_ = 0;  // valid records in the open window
  std::uint64_t window_weight_ = 0;   // and their weight
  std::uint64_t windows_closed_ = 0;  // windows closed so far
  std::optional<std::uint64_t> finishing_window_;  // over the bounds: windows_closed_ then
  std::string fingerprint_;
  std::string model_hash_;  // the model folder's files by content (model_content_hash)

  // Checkpoints.
  bool checkpoint_busy_ = false;
  std::function<void()> final_checkpoint_waiting_;  // the final one, asked for while one was busy
  // Hashes of the bytes before the last checkpoint's positions (io/content_hash.hpp), carried
  // forward at each checkpoint by reading the new bytes back from the files.
  ContentHash output_hash_, dead_letter_hash_;
  std::uint64_t last_checkpoint_records_ = 0;
  double last_checkpoint_time_ = 0;

  RunSummary summary_;
  double start_time_ = 0;
  // Progress measures model work, in completion order (publish_progress()): records whose
  // results came back (or that failed before the model), their input bytes and tokens, and
  // what a resume started from.
  RateWindow rates_;
  void count_processed(const WorkItem& item, bool before_model);
  std::uint64_t processed_ = 0, processed_bytes_ = 0, processed_tokens_ = 0;
  std::uint64_t skipped_bytes_ = 0;  // of records that failed before the tokenizer
  std::uint64_t resumed_bytes_ = 0, resumed_tokens_ = 0, resumed_records_ = 0;
  bool final_progress_ = false;  // the last BatchProgress: the run's outcome is known
  bool failed_ = false;
  bool finishing_ = false;
};

}  // namespace sluice
