#include <sluice/pipeline.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <uv.h>

#include "async_file_writer.hpp"
#include "bounded_queue.hpp"
#include "checkpoint.hpp"
#include "event_bus.hpp"
#include "embed_workers.hpp"
#include "io/content_hash.hpp"
#include "io/line_splitter.hpp"
#include "io/output_format.hpp"
#include "io/record_parser.hpp"
#include "model/model_config.hpp"
#include "work_item.hpp"

// gperftools' C API, weak: null when the process does not run on tcmalloc (-Dtcmalloc=disabled).
extern "C" int MallocExtension_SetNumericProperty(const char* name, size_t value) __attribute__((weak));

namespace sluice {

namespace {

/// tcmalloc's per-thread caches start small and grow on misses, up to 32 MiB in all. Records
/// pass from thread to thread (reader, tokenizer, model calls, writer), so memory freed on one
/// thread fills another's cache, and the caches, with the peak RSS, kept growing through a long
/// run. 1 MiB in all bounds them (docs/performance.md, "Memory and scale"); a
/// TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES of the user's is left alone. Process-wide, set again
/// by each pipeline to the same value.
void cap_thread_caches() {
  if (MallocExtension_SetNumericProperty == nullptr) return;
  if (std::getenv("TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES") != nullptr) return;
  MallocExtension_SetNumericProperty("tcmalloc.max_total_thread_cache_bytes", std::size_t{1} << 20);
}

std::string random_pipeline_id() {
  std::random_device rd;
  std::uint64_t a = (std::uint64_t{rd()} << 32) ^ rd();
  return fmt::format("{:016x}", a);
}

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
  std::uint64_t output_end = 0;       // output bytes that must be written first
  std::uint64_t dead_letter_end = 0;  // dead-letter bytes that must be written first
  std::uint64_t index = 0;
  std::uint64_t line = 0;
  std::uint64_t offset = 0;
  std::uint64_t end_offset = 0;
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
  std::shared_ptr<const SinkRejection> rejection;
};

// Where a run can resume: everything before it is durable once the output is synced.
struct Position {
  std::uint64_t records = 0;       // records done (next index)
  std::uint64_t input_offset = 0;  // input byte offset to resume from
  std::uint64_t input_line = 0;    // lines before input_offset
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

}  // namespace

class Pipeline::Impl {
 public:
  Impl(PipelineOptions options, std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer,
       bool loaded_here)
      : opt_(std::move(options)),
        model_(std::move(model)),
        tokenizer_(std::move(tokenizer)),
        bus_(opt_.pipeline_id.empty() ? random_pipeline_id() : opt_.pipeline_id),
        parser_(opt_.text_field, opt_.output_field),
        splitter_(opt_.max_record_bytes) {
    if (opt_.batch_size == 0) throw Error(ErrorCode::invalid_argument, "batch size must be at least 1");
    if (opt_.sort_window_bytes == 0) throw Error(ErrorCode::invalid_argument, "sort window bytes must be at least 1");
    if (opt_.max_in_flight_records == 0 || opt_.max_in_flight_bytes == 0) {
      throw Error(ErrorCode::invalid_argument, "the in-flight bounds must be at least 1 record and 1 byte");
    }
    cap_thread_caches();
    window_ = opt_.sort_window > 0 ? opt_.sort_window : opt_.batch_size;
    if (opt_.threads < 0 || opt_.model_workers < 0) {
      throw Error(ErrorCode::invalid_argument, "threads and model workers must be 0 (automatic) or more");
    }
    // The layout load_model_for() gave the model; a model passed in keeps its own threads, so
    // it runs one call at a time unless model_workers asks for more.
    layout_ = model_thread_layout(opt_.threads, opt_.model_workers,
                                  model_->concurrent_embed() && (loaded_here || opt_.model_workers > 0));
    if (opt_.read_chunk_bytes == 0) throw Error(ErrorCode::invalid_argument, "read chunk size must be at least 1");
    if (opt_.text_field.empty()) throw Error(ErrorCode::invalid_argument, "the text field name is empty");
    if (opt_.output_field.empty()) throw Error(ErrorCode::invalid_argument, "the output field name is empty");
    const auto& info = model_->info();
    if (opt_.dimensions > info.dimensions) {
      throw Error(ErrorCode::invalid_argument, fmt::format("--dim {} is more than the model's {} dimensions",
                                                           opt_.dimensions, info.dimensions));
    }
    if (opt_.vector_format.type == VectorType::int8 && !info.normalize) {
      throw Error(ErrorCode::invalid_argument,
                  "int8 output needs normalised embeddings (components in [-1, 1]); this model's are not normalised");
    }
    if (!opt_.prompt.empty() && !opt_.prompt_name.empty()) {
      throw Error(ErrorCode::invalid_argument, "give a prompt or a prompt name, not both");
    }
    const std::string& name = opt_.prompt.empty() && opt_.prompt_name.empty() ? info.default_prompt_name
                                                                               : opt_.prompt_name;
    if (!name.empty()) {
      auto it = std::find_if(info.prompts.begin(), info.prompts.end(), [&](const auto& p) { return p.first == name; });
      if (it == info.prompts.end()) {
        std::string known;
        for (const auto& p : info.prompts) known += (known.empty() ? "" : ", ") + p.first;
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("the model has no prompt named \"{}\" (config_sentence_transformers.json has: {})",
                                name, known.empty() ? "none" : known));
      }
      opt_.prompt = it->second;
    }
    if (opt_.long_input == LongInput::chunk) {
      chunk_tokens_ = opt_.chunk_tokens > 0 ? opt_.chunk_tokens : info.max_tokens;
      if (info.max_tokens > 0 && chunk_tokens_ > info.max_tokens) {
        throw Error(ErrorCode::invalid_argument, fmt::format("--chunk-tokens {} is more than the model's {} tokens",
                                                             chunk_tokens_, info.max_tokens));
      }
      // Room for at least one new token per window past the special tokens and the overlap.
      const std::size_t special = tokenizer_->encode("").ids.size();
      if (chunk_tokens_ <= special + opt_.chunk_overlap) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("--chunk-overlap {} leaves no room in windows of {} tokens ({} special)",
                                opt_.chunk_overlap, chunk_tokens_, special));
      }
      parser_.set_id_field(opt_.id_field);
    }
    const auto max_tokens = model_->info().max_tokens;
    if (max_tokens > 0 && (!tokenizer_->max_length() || *tokenizer_->max_length() > max_tokens)) {
      tokenizer_->set_max_length(max_tokens);
    }
    // A prompt that fills the model's limit would leave every text cut to nothing: every vector
    // the same.
    if (!opt_.prompt.empty() && max_tokens > 0 && opt_.long_input != LongInput::chunk) {
      const Encoding with_prompt = tokenizer_->encode(opt_.prompt);
      const std::size_t prompt_tokens = with_prompt.truncated() ? with_prompt.untruncated_length : with_prompt.ids.size();
      if (prompt_tokens >= max_tokens) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("the prompt is {} tokens with the special tokens, and the model takes {}: no room is "
                                "left for the text",
                                prompt_tokens, max_tokens));
      }
    }
  }

  ~Impl() {
    // A sink's thread may still be committing: it is joined before anything its callback uses.
    sink_.reset();
    if (workers_) {
      workers_->abort();
      workers_->join();
    }
    source_queue_.close_and_clear();
    if (source_thread_.joinable()) source_thread_.join();
  }

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

 private:
  // Setup and teardown.
  void open_input();
  void open_outputs();
  std::string compute_fingerprint();
  void check_files_are_distinct() const;
  // Carries the content hashes forward to `state`'s offsets and writes them into it. Returns
  // an empty string, or what could not be read.
  std::string hash_up_to(CheckpointState& state);
  // hash_up_to(state), then the checkpoint file. Returns an empty string, or what failed.
  std::string save_checkpoint(CheckpointState& state);
  // On resume: the bytes before each of the checkpoint's offsets must be those its run saw.
  void verify_files_against(const CheckpointState& state);
  bool input_rereadable() const { return !source_ && opt_.input != "-" && seekable_input_; }
  // The sink stores the checkpoint in its own commits (a database, in the rows' transaction).
  bool sink_checkpoints() const { return sink_ && sink_->keeps_checkpoint(); }
  bool checkpointing() const { return !opt_.checkpoint.empty() || sink_checkpoints(); }
  // The checkpoint's name in messages and events: its file, or the sink.
  std::string checkpoint_name() const { return sink_checkpoints() ? sink_->name() : opt_.checkpoint; }
  SinkRun sink_run(bool resume, std::string position) const;
  bool output_rereadable() const { return !sink_ && opt_.output != "-"; }
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
  void read_file_chunk();
  static void on_read(uv_fs_t* req);
  void pull_source();
  void source_main();
  void on_line(const Line& line);
  void handle_record(std::string_view json, const std::optional<std::string>& text, std::uint64_t line,
                     std::uint64_t offset, std::uint64_t end_offset, bool too_long, std::uint64_t length);
  void reach_end_of_input(const char* reason);
  void set_reader_state(StageState to, const char* reason);

  // Results, order and writing.
  static void on_results(uv_async_t* handle);
  static void on_control(uv_async_t* handle);
  void release();
  void fail_item(WorkItem&& item, ErrorInfo error);
  void on_output_written();
  // Completes, in order, the released records whose bytes are all written.
  void complete_written();
  void complete(Pending& p);
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
  std::string input_name_;
  uv_file in_fd_ = -1;
  bool owns_in_fd_ = false;
  bool seekable_input_ = false;
  std::uint64_t input_size_ = 0;
  std::uint64_t read_offset_ = 0;
  uv_fs_t read_req_{};
  std::vector<char> read_buf_;
  bool read_in_flight_ = false;
  bool eof_ = false;
  bool reader_paused_ = false;
  StageState reader_state_ = StageState::created;
  RecordParser parser_;
  LineSplitter splitter_;
  BoundedQueue<SourceBatch> source_queue_{2};
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
  std::unique_ptr<AsyncFileWriter> out_;
  std::unique_ptr<AsyncFileWriter> dead_;
  std::deque<Pending> pending_;
  std::vector<EmbeddedRecord> sink_batch_;
  std::uint64_t output_appended_ = 0;       // bytes handed to out_
  std::uint64_t dead_letter_appended_ = 0;  // bytes handed to dead_
  // A sink: records handed to write(), and those a commit has made durable (the sink's bytes
  // written and synced). One commit at a time; its callback comes back through sink_async_.
  std::uint64_t sink_written_ = 0;
  std::uint64_t sink_committed_ = 0;
  bool sink_commit_busy_ = false;
  bool sink_failed_ = false;      // a commit failed: no more are issued
  bool stop_completing_ = false;  // a rejection failed the run: the records after it stay undone
  std::function<void()> commit_then_;          // after the commit outstanding
  std::optional<CheckpointState> committing_checkpoint_;  // the checkpoint it stores
  std::function<void()> final_commit_waiting_;  // the final commit, asked for while one was busy
  std::mutex sink_mutex_;
  std::deque<std::pair<std::uint64_t, CommitResult>> sink_results_;  // guarded by sink_mutex_

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
  ContentHash input_hash_, output_hash_, dead_letter_hash_;
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

// ---------------------------------------------------------------------------------------------
// Setup

void Pipeline::Impl::open_input() {
  if (source_) {
    input_name_ = "<source>";
    return;
  }
  input_name_ = opt_.input == "-" ? "<stdin>" : opt_.input;
  if (opt_.input == "-") {
    in_fd_ = STDIN_FILENO;
    owns_in_fd_ = false;
  } else {
    uv_fs_t req;
    int r = uv_fs_open(nullptr, &req, opt_.input.c_str(), O_RDONLY, 0, nullptr);
    uv_fs_req_cleanup(&req);
    if (r < 0) throw Error(ErrorCode::io_error, fmt::format("{}: cannot open input: {}", opt_.input, uv_strerror(r)));
    in_fd_ = r;
    owns_in_fd_ = true;
  }
  struct stat st {};
  if (fstat(in_fd_, &st) == 0 && S_ISREG(st.st_mode)) {
    seekable_input_ = true;
    input_size_ = static_cast<std::uint64_t>(st.st_size);
  }
  read_buf_.resize(opt_.read_chunk_bytes);
}

void Pipeline::Impl::open_outputs() {
  auto on_error = [this](const std::string& message) { fail_run(message); };
  // A resumed run cuts each file back to the checkpoint's offset: bytes after it belong to
  // records that are done again.
  auto check_size = [](const std::string& path, std::uint64_t offset) {
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (offset > 0 && (ec || size < offset)) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: {} bytes, shorter than the {} the checkpoint records: it was changed since; "
                              "run without --resume to start again",
                              path, ec ? 0 : size, offset));
    }
  };
  if (!sink_) {
    check_size(opt_.output, done_.output_offset);
    out_ = std::make_unique<AsyncFileWriter>(
        loop_, [this](std::uint64_t) { on_output_written(); }, on_error);
    out_->open(opt_.output, done_.output_offset);
  }
  if (!opt_.dead_letter.empty()) {
    check_size(opt_.dead_letter, done_.dead_letter_offset);
    dead_ = std::make_unique<AsyncFileWriter>(
        loop_, [this](std::uint64_t) { on_output_written(); }, on_error);
    dead_->open(opt_.dead_letter, done_.dead_letter_offset);
  }
}

std::vector<FileRole> run_files(const PipelineOptions& o) {
  std::vector<FileRole> roles;
  roles.push_back({"input", o.input, STDIN_FILENO});
  roles.push_back({"output", o.output, STDOUT_FILENO});
  roles.push_back({"dead-letter file", o.dead_letter, STDOUT_FILENO});
  if (!o.checkpoint.empty()) {
    roles.push_back({"checkpoint", o.checkpoint});
    roles.push_back({"checkpoint's temporary file", o.checkpoint + ".tmp"});
  }
  roles.insert(roles.end(), o.other_files.begin(), o.other_files.end());
  return roles;
}

void Pipeline::Impl::check_files_are_distinct() const {
  std::vector<FileRole> roles = run_files(opt_);
  // A program's own source or sink takes the place of the input or output file.
  std::erase_if(roles, [&](const FileRole& r) {
    return (source_ && r.role == "input") || (sink_ && r.role == "output");
  });
  check_distinct_files(roles);
}

namespace {

/// The files of a model folder that can change its vectors, by content: configuration,
/// tokenizer and weights (every .json, .txt, .model, .safetensors and .pt file, in every
/// module folder), in path order. Not the folder's own path: an identical copy elsewhere is
/// the same model.
std::string model_content_hash(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (dir.empty()) return "none";
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string ext = p.extension().string();
    if (ext != ".json" && ext != ".txt" && ext != ".model" && ext != ".safetensors" && ext != ".pt") continue;
    if (!it->is_regular_file(ec)) continue;  // through links, as the loaders open them
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  ContentHash all;
  for (const fs::path& p : files) {
    ContentHash one;
    const std::uint64_t size = fs::file_size(p, ec);
    std::string err = ec ? "cannot read its size" : hash_file_to(p.string(), size, one);
    const std::string rel = p.lexically_relative(dir).generic_string();
    all.update(rel);
    all.update(err.empty() ? one.hex() : "unreadable");
  }
  return fmt::format("{} files, {}", files.size(), all.hex());
}

}  // namespace

namespace {
std::string identity_with_hash(const ModelInfo& info, const std::string& hash) {
  return fmt::format("{} ({}), pooling {}, {}normalized, precision {}", info.family, hash, pooling_name(info.pooling),
                     info.normalize ? "" : "not ", precision_name(info.precision));
}
}  // namespace

std::string model_identity(const ModelInfo& info) { return identity_with_hash(info, model_content_hash(info.dir)); }

std::string Pipeline::Impl::compute_fingerprint() {
  // Everything that can change an output byte, one part per line so that a refused resume can
  // say what changed. The input is checked by content instead (verify_files_against).
  const ModelInfo& info = model_->info();
  // The threads of one model call can change a vector's last bits (how work is split inside
  // a product); how many calls run at once cannot.
  model_hash_ = model_content_hash(info.dir);
  std::string model = fmt::format("model={} ({}), pooling {}, {}normalized, precision {}, device {}, {} thread(s) a call",
                                  info.family, model_hash_, pooling_name(info.pooling),
                                  info.normalize ? "" : "not ", precision_name(info.precision),
                                  device_name(info.device), layout_.threads_per_worker);
  std::string options = fmt::format(
      "options=text field \"{}\", output field \"{}\", batch size {}, max batch tokens {}, sort window {}, "
      "sort window bytes {}, max record bytes {}, on error {}, dead letter {}, prompt \"{}\", dimensions {}, output {} {}, "
      "long input {}",
      opt_.text_field, opt_.output_field, opt_.batch_size, opt_.max_batch_tokens, window_, opt_.sort_window_bytes,
      opt_.max_record_bytes,
      opt_.on_error == OnError::skip ? "skip" : "fail", opt_.dead_letter.empty() ? "none" : "a file",
      opt_.prompt, opt_.dimensions == 0 ? model_->info().dimensions : opt_.dimensions,
      to_string(opt_.vector_format.type), to_string(opt_.vector_format.encoding),
      opt_.long_input == LongInput::truncate ? std::string("truncate")
      : opt_.long_input == LongInput::fail
          ? std::string("fail")
          : fmt::format("chunk {} tokens, overlap {}, id field \"{}\"{}", chunk_tokens_, opt_.chunk_overlap,
                        opt_.id_field, opt_.chunk_document ? ", document vectors" : ""));
  return model + "\n" + options;
}

std::string Pipeline::Impl::hash_up_to(CheckpointState& state) {
  if (input_rereadable()) {
    if (std::string err = hash_fd_to(in_fd_, input_name_, state.input_offset, input_hash_); !err.empty()) return err;
    state.input_hash = input_hash_.hex();
  }
  if (output_rereadable()) {
    if (std::string err = hash_file_to(opt_.output, state.output_offset, output_hash_); !err.empty()) return err;
    state.output_hash = output_hash_.hex();
  }
  if (dead_letter_rereadable()) {
    if (std::string err = hash_file_to(opt_.dead_letter, state.dead_letter_offset, dead_letter_hash_); !err.empty()) {
      return err;
    }
    state.dead_letter_hash = dead_letter_hash_.hex();
  }
  return {};
}

std::string Pipeline::Impl::save_checkpoint(CheckpointState& state) {
  std::string err = hash_up_to(state);
  return err.empty() ? write_checkpoint_file(opt_.checkpoint, state) : err;
}

void Pipeline::Impl::verify_files_against(const CheckpointState& state) {
  const std::string again = "; run without --resume to start again";
  auto refuse = [&](const std::string& what) {
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: cannot resume: {}{}", checkpoint_name(), what, again));
  };
  // The counters agree with each other.
  if (state.completed + state.failed != state.records_done || state.truncated > state.completed ||
      state.records_done > state.input_line || state.input_offset < state.input_line) {
    refuse(fmt::format("its counters disagree ({} records done, {} embedded, {} failed, {} truncated, {} lines, "
                       "offset {}): it was edited or damaged",
                       state.records_done, state.completed, state.failed, state.truncated, state.input_line,
                       state.input_offset));
  }
  // The input, up to where the run had read: the same bytes, the same lines.
  if (state.input_offset > input_size_) {
    refuse(fmt::format("it records input offset {}, past the end of {} ({} bytes)", state.input_offset, input_name_,
                       input_size_));
  }
  if (std::string err = hash_fd_to(in_fd_, input_name_, state.input_offset, input_hash_); !err.empty()) refuse(err);
  if (input_hash_.hex() != state.input_hash) {
    refuse(fmt::format("the first {} bytes of {} are not those the checkpoint's run read: the input was changed "
                       "before the point the run had reached (changes after it are fine)",
                       state.input_offset, input_name_));
  }
  const bool ends_unterminated = state.input_offset == input_size_ && input_hash_.last_byte() != '\n';
  if (input_hash_.newlines() != state.input_line &&
      !(ends_unterminated && input_hash_.newlines() + 1 == state.input_line)) {
    refuse(fmt::format("it records {} lines before input offset {}, and {} has {} there", state.input_line,
                       state.input_offset, input_name_, input_hash_.newlines()));
  }
  if (state.input_offset > 0 && input_hash_.last_byte() != '\n' && !ends_unterminated) {
    refuse(fmt::format("input offset {} is not at the end of a line of {}", state.input_offset, input_name_));
  }
  // After a finished run, the input holds nothing more than blank lines past its offset. A run
  // over records appended since would batch them otherwise than one run over the whole file,
  // so its bytes would not be those of an uninterrupted run.
  if (state.finished) {
    std::vector<char> buf(64u << 10);
    for (std::uint64_t at = state.input_offset; at < input_size_;) {
      const ssize_t got = ::pread(in_fd_, buf.data(), buf.size(), static_cast<off_t>(at));
      if (got <= 0) break;
      for (ssize_t i = 0; i < got; ++i) {
        const char c = buf[static_cast<std::size_t>(i)];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
          refuse(fmt::format("it records a finished run that read {} up to byte {}, and the file has records "
                             "after that point now ({} bytes): it grew since",
                             input_name_, state.input_offset, input_size_));
        }
      }
      at += static_cast<std::uint64_t>(got);
    }
  }
  // The output and dead letters, up to the checkpoint's offsets; after a finished run, nothing
  // may follow them.
  auto verify = [&](const std::string& path, const char* what, std::uint64_t offset, const std::string& want,
                    ContentHash& hash, std::uint64_t lines) {
    std::error_code ec;
    const std::uint64_t size = std::filesystem::exists(path, ec) ? std::filesystem::file_size(path, ec) : 0;
    if (size < offset) {
      refuse(fmt::format("{} has {} bytes, fewer than the {} the checkpoint records: it was changed since", path, size,
                         offset));
    }
    if (std::string err = hash_file_to(path, offset, hash); !err.empty()) refuse(err);
    if (hash.hex() != want) {
      refuse(fmt::format("the first {} bytes of the {} {} are not those the checkpoint's run wrote: it was changed "
                         "since",
                         offset, what, path));
    }
    if (offset > 0 && hash.last_byte() != '\n') {
      refuse(fmt::format("{} offset {} is not at the end of a line of {}", what, offset, path));
    }
    if (lines != UINT64_MAX && hash.newlines() != lines) {
      refuse(fmt::format("the {} {} has {} lines before offset {}, and the checkpoint counts {} records there", what,
                         path, hash.newlines(), offset, lines));
    }
    if (state.finished && size > offset) {
      refuse(fmt::format("{} bytes were added to the {} {} after its run finished", size - offset, what, path));
    }
  };
  // One output line per embedded record, except with windows of a long text as lines of their own.
  const bool line_per_record = opt_.long_input != LongInput::chunk || opt_.chunk_document;
  if (output_rereadable()) {
    verify(opt_.output, "output", state.output_offset, state.output_hash, output_hash_,
           line_per_record ? state.completed : UINT64_MAX);
  }
  if (dead_letter_rereadable()) {
    verify(opt_.dead_letter, "dead-letter file", state.dead_letter_offset, state.dead_letter_hash, dead_letter_hash_,
           state.failed);
  }
}

SinkRun Pipeline::Impl::sink_run(bool resume, std::string position) const {
  const ModelInfo& info = model_->info();
  SinkRun run;
  run.pipeline_id = bus_.pipeline_id();
  run.fingerprint = fingerprint_;
  run.model = info.dir.string();
  run.model_family = info.family;
  run.model_identity = identity_with_hash(info, model_hash_);
  run.pooling = pooling_name(info.pooling);
  run.precision = precision_name(info.precision);
  run.dimensions = opt_.dimensions > 0 ? opt_.dimensions : info.dimensions;
  run.normalized = info.normalize;
  run.vector_format = opt_.vector_format;
  run.input = input_name_;
  run.resume = resume;
  run.position = std::move(position);
  return run;
}

std::optional<CheckpointState> Pipeline::Impl::open_sink_and_read_checkpoint() {
  if (opt_.resume) {
    if (!checkpointing()) throw Error(ErrorCode::invalid_argument, "resuming needs a checkpoint file");
    if (source_ || opt_.input == "-") {
      throw Error(ErrorCode::invalid_argument, "cannot resume reading standard input or a custom source");
    }
    if (!seekable_input_) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("cannot resume reading {}: it is not a regular file (a pipe or device is read once)",
                              input_name_));
    }
    if (!sink_ && opt_.output == "-") {
      throw Error(ErrorCode::invalid_argument, "cannot resume writing to standard output");
    }
  }
  if (sink_checkpoints()) {
    sink_->open(sink_run(opt_.resume, {}));
    if (!opt_.resume) return std::nullopt;
    std::optional<std::string> json = sink_->load_checkpoint();
    if (!json) return std::nullopt;  // nothing committed yet: start at the beginning
    auto state = checkpoint_from_json(*json);
    if (!state) {
      throw Error(ErrorCode::invalid_argument, fmt::format("{}: cannot resume: its checkpoint is damaged: {}",
                                                           sink_->name(), state.error().message));
    }
    return std::move(state.value());
  }
  std::optional<CheckpointState> state;
  std::error_code ec;
  if (opt_.resume && std::filesystem::exists(opt_.checkpoint, ec)) state = read_checkpoint_file(opt_.checkpoint);
  if (sink_) sink_->open(sink_run(state.has_value(), state ? state->output_position : std::string()));
  return state;
}

bool Pipeline::Impl::load_resume_point(const CheckpointState& state) {
  if (state.fingerprint != fingerprint_) {
    auto split = [](const std::string& f) {
      std::vector<std::string> parts;
      std::stringstream ss(f);
      for (std::string line; std::getline(ss, line);) parts.push_back(line);
      return parts;
    };
    auto before = split(state.fingerprint), now = split(fingerprint_);
    std::string what;
    for (std::size_t i = 0; i < std::max(before.size(), now.size()); ++i) {
      std::string a = i < before.size() ? before[i] : "", b = i < now.size() ? now[i] : "";
      if (a != b) what += fmt::format("\n  checkpoint: {}\n  now:        {}", a, b);
    }
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: cannot resume: the run differs from the checkpoint's:{}\nRun without --resume to "
                            "start again.",
                            checkpoint_name(), what));
  }
  verify_files_against(state);
  Position at;
  at.records = state.records_done;
  at.input_offset = state.input_offset;
  at.input_line = state.input_line;
  at.output_offset = state.output_offset;
  at.dead_letter_offset = state.dead_letter_offset;
  at.completed = state.completed;
  at.failed = state.failed;
  at.tokens = state.tokens;
  at.truncated = state.truncated;
  at.sink_position = state.output_position;
  done_ = boundary_ = at;
  next_index_ = next_release_ = at.records;
  summary_.records_read = at.records;
  summary_.completed = at.completed;
  summary_.failed = at.failed;
  failed_released_ = at.failed;
  summary_.tokens = at.tokens;
  summary_.truncated = at.truncated;
  summary_.bytes_read = at.input_offset;
  resumed_bytes_ = at.input_offset;
  resumed_tokens_ = at.tokens;
  resumed_records_ = at.records;
  output_appended_ = at.output_offset;
  sink_written_ = sink_committed_ = at.output_offset;
  dead_letter_appended_ = at.dead_letter_offset;
  read_offset_ = at.input_offset;
  splitter_ = LineSplitter(opt_.max_record_bytes, at.input_offset, at.input_line + 1);
  last_checkpoint_records_ = at.records;
  return state.finished;
}

void Pipeline::Impl::start(uv_loop_t* loop, std::function<void(const RunSummary&)> on_finished) {
  if (sink_ && opt_.long_input == LongInput::chunk) {
    throw Error(ErrorCode::invalid_argument, "--long-input chunk writes JSONL output; a Sink is not supported with it");
  }
  loop_ = loop;
  on_finished_ = std::move(on_finished);
  start_time_ = unix_time_now();
  last_checkpoint_time_ = start_time_;
  if (sink_checkpoints() && !opt_.checkpoint.empty()) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{} keeps the run's checkpoint itself, with its rows: give no checkpoint file",
                            sink_->name()));
  }
  check_files_are_distinct();
  open_input();
  fingerprint_ = compute_fingerprint();
  const std::optional<CheckpointState> resume_state = open_sink_and_read_checkpoint();
  const bool resumed = resume_state.has_value();
  const bool already_finished = resumed && load_resume_point(*resume_state);
  if (!already_finished) open_outputs();
  if (!opt_.checkpoint.empty() && !resumed) {
    // A checkpoint from the start, so a run killed before its first periodic one resumes too.
    CheckpointState state = checkpoint_state();
    if (std::string err = save_checkpoint(state); !err.empty()) throw Error(ErrorCode::io_error, err);
  }

  results_async_.data = control_async_.data = source_async_.data = sink_async_.data = progress_timer_.data = this;
  uv_async_init(loop_, &results_async_, &Impl::on_results);
  uv_async_init(loop_, &control_async_, &Impl::on_control);
  uv_async_init(loop_, &source_async_, [](uv_async_t* h) { static_cast<Impl*>(h->data)->maybe_read(); });
  uv_async_init(loop_, &sink_async_, &Impl::on_sink_async);
  uv_timer_init(loop_, &progress_timer_);
  open_handles_ = 5;
  async_ready_.store(true);

  EmbedWorkers::Config wc;
  wc.batch_size = opt_.batch_size;
  wc.max_batch_tokens = opt_.max_batch_tokens;
  wc.format_output = !sink_;
  wc.output_field = opt_.output_field;
  wc.prompt = opt_.prompt;
  wc.dimensions = opt_.dimensions;
  wc.renormalize = model_->info().normalize;
  wc.vector_format = opt_.vector_format;
  wc.text_field = opt_.text_field;
  wc.long_input = opt_.long_input;
  wc.chunk_tokens = chunk_tokens_;
  wc.chunk_overlap = opt_.chunk_overlap;
  wc.chunk_document = opt_.chunk_document;
  wc.inference_threads = static_cast<std::size_t>(layout_.workers);
  workers_ = std::make_unique<EmbedWorkers>(model_, tokenizer_, wc, [this] { uv_async_send(&results_async_); });
  workers_->start();

  const auto& info = model_->info();
  bus_.publish(PipelineStarted{source_ ? "<source>" : opt_.input, sink_ ? sink_->name() : opt_.output, info.dir.string(),
                               input_size_, static_cast<std::uint32_t>(opt_.batch_size),
                               opt_.dimensions > 0 ? opt_.dimensions : info.dimensions,
                               info.max_tokens, static_cast<std::uint32_t>(opt_.max_batch_tokens),
                               static_cast<std::uint32_t>(opt_.sort_window),
                               static_cast<std::uint32_t>(layout_.workers),
                               static_cast<std::uint32_t>(layout_.threads_per_worker)});
  bus_.publish(StageStateChanged{Stage::pipeline, StageState::created, StageState::running,
                                 resumed ? fmt::format("resumed at record {}", done_.records) : ""});
  set_reader_state(StageState::running, "");
  if (already_finished) {
    // The checkpoint says the run finished: nothing to read, nothing to write.
    reach_end_of_input("the checkpoint records a finished run");
    return;
  }

  if (opt_.progress_interval_s > 0) {
    auto ms = static_cast<std::uint64_t>(opt_.progress_interval_s * 1000);
    uv_timer_start(&progress_timer_, &Impl::on_progress_timer, ms, ms);
  }
  if (source_) {
    source_thread_ = std::thread([this] { source_main(); });
  }
  // A stop() that came before the handles existed.
  if (stop_requested_.load()) uv_async_send(&control_async_);
  maybe_read();
}

RunSummary Pipeline::Impl::run() {
  uv_loop_t loop;
  if (int r = uv_loop_init(&loop); r < 0)
    throw Error(ErrorCode::internal, fmt::format("uv_loop_init: {}", uv_strerror(r)));
  RunSummary result;
  try {
    start(&loop, [&](const RunSummary& s) { result = s; });
  } catch (...) {
    // Handles opened before the failure must be closed before the loop is.
    if (async_ready_.exchange(false)) close_all();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    throw;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  int r = uv_loop_close(&loop);
  (void)r;  // every handle is closed by finish(); see the unit test asserting it
  return result;
}

// ---------------------------------------------------------------------------------------------
// Reading

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
  uv_buf_t buf = uv_buf_init(read_buf_.data(), static_cast<unsigned>(read_buf_.size()));
  int64_t offset = seekable_input_ ? static_cast<int64_t>(read_offset_) : -1;
  int r = uv_fs_read(loop_, &read_req_, in_fd_, &buf, 1, offset, &Impl::on_read);
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
    self->splitter_.finish([self](const Line& line) { self->on_line(line); });
    self->read_in_flight_ = false;
    self->reach_end_of_input("end of input");
    return;
  }
  self->read_offset_ += static_cast<std::uint64_t>(n);
  self->summary_.bytes_read += static_cast<std::uint64_t>(n);
  // While read_buf_ is being split, no read may be issued into it: a record that completes
  // at once (a bad one) reaches maybe_read() from inside feed().
  self->read_in_flight_ = true;
  self->splitter_.feed(std::string_view(self->read_buf_.data(), static_cast<std::size_t>(n)),
                       [self](const Line& line) { self->on_line(line); });
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

void Pipeline::Impl::count_processed(const WorkItem& item, bool before_model) {
  ++processed_;
  const std::uint64_t bytes = item.end_offset - item.offset;
  processed_bytes_ += bytes;
  if (before_model) {
    skipped_bytes_ += bytes;
  } else {
    processed_tokens_ += item.model_tokens;
  }
}

// ---------------------------------------------------------------------------------------------
// Results: restore input order, write, complete

void Pipeline::Impl::on_results(uv_async_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
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
    p.tokens = item.tokens;
    p.truncated = item.truncated;
    p.started_at = item.started_at;
    p.weight = item.weight;
    p.closes_window = item.closes_window;
    if (item.error) {
      ErrorInfo& e = *item.error;
      std::string message = fmt::format("{}:{}: {}", input_name_, item.line, e.message);
      p.failed = true;
      if (bus_.wants<DocumentFailed>()) {
        bool retryable = e.code == ErrorCode::model_error || e.code == ErrorCode::io_error;
        bus_.publish(
            DocumentFailed{item.index, location(item.line, item.offset), e.code, message, e.field, retryable, 1});
      }
      if (dead_) {
        std::string line;
        append_dead_letter_line(line, location(item.line, item.offset), e, item.json);
        if (sink_) {
          // Written when it completes, in order with the records the sink may yet refuse.
          p.dead_letter_line = std::move(line);
        } else {
          dead_letter_appended_ += line.size();
          dead_->append(line);
        }
      }
      ++failed_released_;
      const bool too_many = opt_.max_errors && failed_released_ > *opt_.max_errors;
      if (opt_.on_error == OnError::fail || too_many) {
        // Counted now, as its document_failed was published: the run ends here, and this record
        // stays out of every position (a resume reads it again, fixed or not). The records
        // before it go to the sink: they are done.
        ++summary_.failed;
        flush_sink_batch();
        fail_run(too_many ? fmt::format("{} records failed, more than --max-errors {} allows; the last: {}",
                                        failed_released_, *opt_.max_errors, message)
                          : message);
        return;
      }
    } else if (sink_) {
      EmbeddedRecord r;
      r.index = item.index;
      r.line = item.line;
      r.json = std::move(item.json);
      r.embedding = std::move(item.embedding);
      r.tokens = item.tokens;
      r.truncated = item.truncated;
      sink_batch_.push_back(std::move(r));
      ++sink_written_;
    } else {
      output_appended_ += item.output_line.size();
      out_->append(item.output_line);
    }
    if (sink_) {
      // Done once a commit covers the records written up to it (and this one).
      p.output_end = sink_written_;
      if (p.closes_window) {
        // The sink's position after this window: its records must have been written.
        if (!flush_sink_batch_ok()) return;
        p.sink_position = sink_->position();
      }
    } else {
      p.output_end = output_appended_;
      p.dead_letter_end = dead_letter_appended_;
    }
    pending_.push_back(std::move(p));
  }
  if (!flush_sink_batch_ok()) return;
  maybe_commit();
  on_output_written();
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
  const std::uint64_t out_written = sink_ ? sink_committed_ : out_ ? out_->written() : output_appended_;
  const std::uint64_t dead_written = dead_ && !sink_ ? dead_->written() : dead_letter_appended_;
  while (!stop_completing_ && !pending_.empty() && pending_.front().output_end <= out_written &&
         pending_.front().dead_letter_end <= dead_written) {
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
    const std::string message = fmt::format("{}:{}: {}", input_name_, p.line, r.error.message);
    if (bus_.wants<DocumentFailed>()) {
      bus_.publish(DocumentFailed{p.index, location(p.line, p.offset), r.error.code, message, r.error.field, false, 1});
    }
    ++failed_released_;
    const bool too_many = opt_.max_errors && failed_released_ > *opt_.max_errors;
    if (opt_.on_error == OnError::fail || too_many) {
      // As for a bad record at release: the run ends here, and neither it nor the records
      // after it (already in the sink: a resume writes them again, by id) count as done.
      ++summary_.failed;
      stop_completing_ = true;
      fail_run(too_many ? fmt::format("{} records failed, more than --max-errors {} allows; the last: {}",
                                      failed_released_, *opt_.max_errors, message)
                        : message);
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
  done_.output_offset = p.output_end;
  done_.dead_letter_offset = sink_ ? dead_letter_appended_ : p.dead_letter_end;
  if (p.closes_window) {
    if (sink_) done_.sink_position = std::move(p.sink_position);
    boundary_ = done_;
  }
  if (!p.failed && bus_.wants<DocumentCompleted>()) {
    bus_.publish(DocumentCompleted{p.index, location(p.line, p.offset), p.tokens, p.truncated,
                                   (unix_time_now() - p.started_at) * 1000.0});
  }
}

void Pipeline::Impl::fail_run(const std::string& message) {
  if (failed_) return;
  failed_ = true;
  summary_.status = RunStatus::failed;
  summary_.error = message;
  check_done();
}

void Pipeline::Impl::on_control(uv_async_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  if (self->finishing_) return;
  if (self->abort_requested_.load()) {
    if (self->summary_.status == RunStatus::completed) self->summary_.status = RunStatus::stopped;
    self->summary_.error = "aborted";
    self->workers_->abort();
    self->finish();
    return;
  }
  if (self->stop_requested_.load()) {
    if (self->bus_.wants<StageStateChanged>()) {
      self->bus_.publish(
          StageStateChanged{Stage::pipeline, StageState::running, StageState::draining, "stop requested"});
    }
    self->set_reader_state(StageState::stopped, "stop requested");
    self->workers_->finish_input();
    self->check_done();
  }
}

void Pipeline::Impl::check_done() {
  if (finishing_) return;
  const bool input_over = eof_ || failed_ || stop_requested_.load();
  if (!input_over || read_in_flight_) return;
  // A failure, or a stop before everything read is done: only the model calls under way run
  // to their end (their results are dropped); what was released is written, and the final
  // checkpoint names the last window boundary before the first record not done. So a stop
  // takes at most as long as one model call, not the whole in-flight window.
  const bool all_done = eof_ && in_flight_records_ == 0;
  if (failed_ || (stop_requested_.load() && !all_done)) {
    if (!failed_) summary_.status = RunStatus::stopped;
    workers_->abort();
    finish();
    return;
  }
  if (in_flight_records_ > 0) return;
  if (sink_commit_busy_) return;
  if (out_ && !out_->idle()) return;
  if (dead_ && !dead_->idle()) return;
  finish();
}

// ---------------------------------------------------------------------------------------------
// Progress, checkpoints, finish

void Pipeline::Impl::on_progress_timer(uv_timer_t* handle) { static_cast<Impl*>(handle->data)->publish_progress(); }

void Pipeline::Impl::publish_progress() {
  const double now = unix_time_now();
  if (!bus_.wants<BatchProgress>()) return;
  const RateWindow::Rates r = rates_.rates();
  const bool finished = final_progress_ && summary_.status == RunStatus::completed;
  BatchProgress p;
  p.completed = summary_.completed;
  p.failed = summary_.failed;
  p.in_flight = in_flight_records_;
  p.bytes_read = summary_.bytes_read;
  p.bytes_total = input_size_;
  p.tokens = summary_.tokens;
  p.docs_per_s = r.docs;
  p.tokens_per_s = r.tokens;
  p.bytes_per_s = r.bytes;
  // Draining: every record read has been through the model; writing and syncing remain.
  if (final_progress_) {
    p.phase = summary_.status == RunStatus::completed ? RunPhase::finished
              : summary_.status == RunStatus::stopped ? RunPhase::stopped
                                                      : RunPhase::failed;
  } else if (finishing_) {
    p.phase = RunPhase::finishing;
  } else {
    p.phase = eof_ && processed_ == summary_.records_read - resumed_records_ ? RunPhase::draining : RunPhase::embedding;
  }
  p.processed = resumed_records_ + processed_;
  p.bytes_processed = resumed_bytes_ + processed_bytes_;
  p.tokens_processed = resumed_tokens_ + processed_tokens_;
  p.elapsed_s = now - start_time_;

  // The work left, in tokens, the unit model time follows: those the tokenizer has counted
  // and the model not yet embedded, plus the input not yet tokenized at the tokens a byte seen
  // so far. The input's end is its size, or once read (stdin), where reading ended.
  const EmbedWorkers::Tokenized t = workers_ ? workers_->tokenized() : EmbedWorkers::Tokenized{};
  const std::uint64_t end = eof_ ? summary_.bytes_read : input_size_;
  std::optional<double> tokens_left;
  if (end > 0 && t.bytes > 0) {
    const std::uint64_t accounted = resumed_bytes_ + t.bytes + skipped_bytes_;
    const double unknown_bytes = end > accounted ? static_cast<double>(end - accounted) : 0.0;
    const double known = t.tokens > processed_tokens_ ? static_cast<double>(t.tokens - processed_tokens_) : 0.0;
    tokens_left = known + unknown_bytes * (static_cast<double>(t.tokens) / static_cast<double>(t.bytes));
  }
  if (tokens_left) {
    const double done = static_cast<double>(p.tokens_processed);
    p.tokens_expected = static_cast<std::uint64_t>(done + *tokens_left + 0.5);
    p.fraction = done + *tokens_left > 0 ? done / (done + *tokens_left) : 0.0;
  } else if (end > 0) {
    p.fraction = static_cast<double>(p.bytes_processed) / static_cast<double>(end);
  }
  // 100 % is said once, at the end.
  p.fraction = finished ? 1.0 : std::min(p.fraction, 0.999);
  if (finished) {
    p.eta_s = 0.0;
  } else if (tokens_left && r.tokens > 0 && r.over_s >= 2.0) {
    // Meaningful once the rate has been measured over two seconds of model work after the
    // first call. The calls running now are partly done: the time since the last results counts.
    p.eta_s = std::max(0.0, *tokens_left / r.tokens - (now - rates_.last_t()));
  }
  bus_.publish(std::move(p));
}

CheckpointState Pipeline::Impl::checkpoint_state() const {
  const bool finished = eof_ && in_flight_records_ == 0 && !failed_;
  const Position& at = finished ? done_ : boundary_;
  CheckpointState s;
  s.input = source_ ? "<source>" : opt_.input;
  s.input_size = input_size_;
  s.input_offset = at.input_offset;
  s.input_line = at.input_line;
  s.records_done = at.records;
  s.output = sink_ ? sink_->name() : opt_.output;
  s.output_offset = at.output_offset;
  s.output_position = at.sink_position;
  s.dead_letter = opt_.dead_letter;
  s.dead_letter_offset = at.dead_letter_offset;
  s.completed = at.completed;
  s.failed = at.failed;
  s.tokens = at.tokens;
  s.truncated = at.truncated;
  s.fingerprint = fingerprint_;
  s.finished = finished;
  return s;
}

void Pipeline::Impl::maybe_checkpoint(bool final_one, std::function<void()> then) {
  auto done = [then = std::move(then)] {
    if (then) then();
  };
  if (opt_.checkpoint.empty()) {
    // No checkpoint, or the sink's, which goes with each commit (final_commit() stores the last).
    done();
    return;
  }
  if (checkpoint_busy_) {
    // The final checkpoint must not be lost to a periodic one still syncing: it follows it.
    if (final_one) {
      final_checkpoint_waiting_ = std::move(done);
    } else {
      done();
    }
    return;
  }
  if (!final_one) {
    const bool due = boundary_.records - last_checkpoint_records_ >= opt_.checkpoint_every_records ||
                     (boundary_.records > last_checkpoint_records_ &&
                      unix_time_now() - last_checkpoint_time_ >= opt_.checkpoint_every_s);
    if (!due) {
      done();
      return;
    }
  }
  checkpoint_busy_ = true;
  CheckpointState state = checkpoint_state();
  // The checkpoint names positions only once the bytes before them are on disk.
  auto write_it = [this, state, done, final_one](int status) mutable {
    checkpoint_busy_ = false;
    // A final checkpoint asked for meanwhile runs once this one is over (after done()).
    struct FinalAfter {
      Impl* self;
      ~FinalAfter() {
        if (auto then = std::move(self->final_checkpoint_waiting_)) {
          self->final_checkpoint_waiting_ = nullptr;
          self->maybe_checkpoint(true, std::move(then));
        }
      }
    } final_after{this};
    if (status < 0) {
      fail_run(fmt::format("{}: cannot sync output: {}", opt_.output, uv_strerror(status)));
      done();
      return;
    }
    if (final_one) {
      // The run is finishing and nothing more is released: every byte appended before is now
      // written and synced, so the records still waiting for their writes are done too (a run
      // that failed at record 20 records the window before it, not the last checkpoint).
      complete_written();
      state = checkpoint_state();
    }
    if (std::string err = save_checkpoint(state); !err.empty()) {
      fail_run(err);
      done();
      return;
    }
    last_checkpoint_records_ = state.records_done;
    last_checkpoint_time_ = unix_time_now();
    if (bus_.wants<Checkpointed>()) {
      bus_.publish(
          Checkpointed{opt_.checkpoint, state.records_done, state.input_offset, state.input_line, state.output_offset});
    }
    done();
    // The sync held the writers busy: the run may have become complete meanwhile.
    check_done();
  };
  auto sync_output = [this, write_it](int status) mutable {
    if (status < 0 || !out_) {
      write_it(status);
      return;
    }
    out_->sync(write_it);
  };
  if (dead_) {
    dead_->sync(sync_output);
  } else {
    sync_output(0);
  }
}

void Pipeline::Impl::finish() {
  if (finishing_) return;
  finishing_ = true;
  uv_timer_stop(&progress_timer_);
  if (workers_) {
    workers_->finish_input();
    workers_->join();
    // Results that arrived after the decision to finish are dropped (abort, failure).
  }
  source_queue_.close_and_clear();
  summary_.elapsed_s = unix_time_now() - start_time_;
  summary_.bytes_written = sink_ ? 0 : done_.output_offset;
  if (workers_) {
    const EmbedWorkers::ModelStats m = workers_->model_stats();
    summary_.model_calls = m.calls;
    summary_.model_tokens = m.tokens;
    summary_.padded_tokens = m.padded_tokens;
    summary_.model_busy_s = m.busy_s;
    summary_.model_workers = static_cast<std::uint32_t>(layout_.workers);
  }

  // "finishing": every record is written; the final checkpoint (which waits for the output to
  // be synced) and closing remain. Then the last event, "finished" (or how the run ended).
  publish_progress();
  auto after_checkpoint = [this] {
    if (sink_ && summary_.status != RunStatus::failed) {
      try {
        if (summary_.status == RunStatus::completed) {
          // The sink counts what it holds of this run: every record embedded, once.
          summary_.verified = sink_->verified_count();
          if (summary_.verified && *summary_.verified != summary_.completed) {
            summary_.status = RunStatus::failed;
            summary_.error = fmt::format("{} holds {} records of this run, and the run embedded {}", sink_->name(),
                                         *summary_.verified, summary_.completed);
          }
        }
        if (summary_.status != RunStatus::failed) sink_->finish();
      } catch (const std::exception& e) {
        summary_.status = RunStatus::failed;
        summary_.error = fmt::format("{} failed: {}", sink_->name(), e.what());
      }
    }
    final_progress_ = true;
    publish_progress();
    auto close_dead = [this] {
      if (dead_) {
        dead_->close([this] { close_all(); });
      } else {
        close_all();
      }
    };
    if (out_) {
      out_->close(close_dead);
    } else {
      close_dead();
    }
  };
  if (abort_requested_.load()) {
    after_checkpoint();
  } else {
    // A sink's records are made durable (with its checkpoint, when it keeps one), then the
    // checkpoint file.
    final_commit([this, after_checkpoint] { maybe_checkpoint(true, after_checkpoint); });
  }
}

// ---------------------------------------------------------------------------------------------
// Sink commits

void Pipeline::Impl::maybe_commit() {
  if (!sink_ || sink_commit_busy_ || sink_failed_ || finishing_) return;
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
    fail_run(fmt::format("{}: {}", sink_->name(), result.error));
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
  if (!sink_ || sink_failed_) {
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

void Pipeline::Impl::on_handle_closed(uv_handle_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  if (--self->open_handles_ > 0) return;
  if (self->owns_in_fd_ && self->in_fd_ >= 0) {
    uv_fs_t req;
    uv_fs_close(nullptr, &req, self->in_fd_, nullptr);
    uv_fs_req_cleanup(&req);
    self->in_fd_ = -1;
  }
  if (self->source_thread_.joinable()) self->source_thread_.join();
  const StageState final_state =
      self->summary_.status == RunStatus::failed ? StageState::failed : StageState::stopped;
  self->bus_.publish(StageStateChanged{Stage::pipeline,
                                       self->stop_requested_.load() ? StageState::draining : StageState::running,
                                       final_state, self->summary_.error});
  self->bus_.publish(PipelineFinished{self->summary_});
  if (self->on_finished_) {
    auto cb = std::move(self->on_finished_);
    cb(self->summary_);
  }
}

void Pipeline::Impl::close_all() {
  {
    // A sink's commit callback (another thread) checks it under the same lock before it signals.
    std::lock_guard lock(sink_mutex_);
    async_ready_.store(false);
  }
  // The control handle may still be signalled by stop() from another thread: libuv allows
  // uv_async_send until uv_close, and async_ready_ is cleared first.
  uv_close(reinterpret_cast<uv_handle_t*>(&results_async_), &Impl::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&control_async_), &Impl::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&source_async_), &Impl::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&sink_async_), &Impl::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&progress_timer_), &Impl::on_handle_closed);
}

// ---------------------------------------------------------------------------------------------
// Pipeline

namespace {
std::shared_ptr<Model> load_model_for(const PipelineOptions& o) {
  if (o.model.empty()) throw Error(ErrorCode::invalid_argument, "no model folder given");
  ModelOptions mo;
  // Each concurrent call gets its share of the cores (a CPU model allows concurrent calls).
  mo.threads = model_thread_layout(o.threads, o.model_workers, o.device.kind == DeviceKind::cpu).threads_per_worker;
  mo.pooling = o.pooling;
  mo.normalize = o.normalize;
  mo.precision = o.precision;
  mo.device = o.device;
  return std::shared_ptr<Model>(Model::load(o.model, mo));
}
std::shared_ptr<Tokenizer> load_tokenizer_for(const PipelineOptions& o) {
  return std::shared_ptr<Tokenizer>(Tokenizer::from_file(o.model / "tokenizer.json"));
}
}  // namespace

Pipeline::Pipeline(PipelineOptions options) {
  auto model = load_model_for(options);
  auto tokenizer = load_tokenizer_for(options);
  impl_ = std::make_unique<Impl>(std::move(options), std::move(model), std::move(tokenizer), true);
}

Pipeline::Pipeline(PipelineOptions options, std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(model), std::move(tokenizer), false)) {}

Pipeline::~Pipeline() = default;

void Pipeline::set_source(std::unique_ptr<Source> source) { impl_->source_ = std::move(source); }
void Pipeline::set_sink(std::unique_ptr<Sink> sink) { impl_->sink_ = std::move(sink); }
bool Pipeline::has_sink() const noexcept { return impl_->sink_ != nullptr; }
SubscriptionId Pipeline::subscribe(EventFilter filter, EventCallback callback) {
  return impl_->bus_.subscribe(filter, std::move(callback));
}
void Pipeline::unsubscribe(SubscriptionId id) { impl_->bus_.unsubscribe(id); }
RunSummary Pipeline::run() { return impl_->run(); }
void Pipeline::start(uv_loop_s* loop, std::function<void(const RunSummary&)> on_finished) {
  impl_->start(loop, std::move(on_finished));
}
void Pipeline::stop() noexcept { impl_->stop(); }
void Pipeline::abort() noexcept { impl_->abort(); }
const ModelInfo& Pipeline::model_info() const { return impl_->model_->info(); }
const std::string& Pipeline::pipeline_id() const { return impl_->bus_.pipeline_id(); }

}  // namespace sluice
