// The Pipeline: construction, the options it refuses, start and the end of a run (its state).

#include "pipeline_impl.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "model/model_config.hpp"

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

}  // namespace

Pipeline::Impl::Impl(PipelineOptions options, std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer,
                     bool loaded_here)
    : opt_(std::move(options)),
      model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      bus_(opt_.pipeline_id.empty() ? random_pipeline_id() : opt_.pipeline_id),
      parser_(opt_.text_field, opt_.output_field) {
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
  // A remote backend keeps its own number of batches on the wire, whatever the cores here.
  if (const int calls = model_->calls_in_flight(); calls > 0) layout_ = ThreadLayout{calls, 1};
  if (opt_.read_chunk_bytes == 0) throw Error(ErrorCode::invalid_argument, "read chunk size must be at least 1");
  if (opt_.text_field.empty()) throw Error(ErrorCode::invalid_argument, "the text field name is empty");
  if (opt_.output_field.empty()) throw Error(ErrorCode::invalid_argument, "the output field name is empty");
  const auto& info = model_->info();
  if (model_->wants_texts() && opt_.long_input == LongInput::chunk) {
    throw Error(ErrorCode::invalid_argument,
                "--long-input chunk cuts texts by the model's own tokens, which a remote API does not give: use "
                "--long-input truncate or fail with it");
  }
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

Pipeline::Impl::~Impl() {
  model_->set_event_sink({});
  // A sink's thread may still be committing: it is joined before anything its callback uses.
  sink_.reset();
  if (workers_) {
    workers_->abort();
    workers_->join();
  }
  stop_source();
  if (source_thread_.joinable()) source_thread_.join();
  if (checkpoint_lock_fd_ >= 0) ::close(checkpoint_lock_fd_);
}

std::vector<FileRole> run_files(const PipelineOptions& o) {
  std::vector<FileRole> roles;
  roles.push_back({"input", o.input, STDIN_FILENO});
  roles.push_back({"output", o.output, STDOUT_FILENO});
  roles.push_back({"dead-letter file", o.dead_letter, STDOUT_FILENO});
  if (!o.checkpoint.empty()) {
    roles.push_back({"checkpoint", o.checkpoint});
    roles.push_back({"checkpoint's temporary file", o.checkpoint + ".tmp"});
    roles.push_back({"checkpoint's lock file", o.checkpoint + ".lock"});
  }
  roles.insert(roles.end(), o.other_files.begin(), o.other_files.end());
  return roles;
}

void Pipeline::Impl::lock_checkpoint() {
  if (opt_.checkpoint.empty() || checkpoint_lock_fd_ >= 0) return;
  // A file of its own: the checkpoint itself is replaced by a rename at every write, so a lock
  // on it would not last. Left in place after the run (removing it would race a run that just
  // opened it); it holds nothing.
  const std::string path = opt_.checkpoint + ".lock";
  checkpoint_lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (checkpoint_lock_fd_ < 0) {
    throw Error(ErrorCode::io_error, fmt::format("cannot open the checkpoint's lock file {}: {}", path, std::strerror(errno)));
  }
  if (::flock(checkpoint_lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(checkpoint_lock_fd_);
    checkpoint_lock_fd_ = -1;
    throw Error(ErrorCode::invalid_argument,
                fmt::format("another run is using the checkpoint {} now ({} is locked); wait for it to end, or give "
                            "this run a checkpoint of its own",
                            opt_.checkpoint, path));
  }
}

void Pipeline::Impl::check_files_are_distinct() const {
  std::vector<FileRole> roles = run_files(opt_);
  // A program's own source or sink takes the place of the input or output file; a sink that
  // writes a file (make_jsonl_sink()) has that file as the output.
  const std::optional<std::string> sink_file = sink_ ? sink_->file() : std::nullopt;
  const std::optional<std::string> source_file = source_ ? source_->file() : std::nullopt;
  std::erase_if(roles, [&](const FileRole& r) {
    return (source_ && !source_file && r.role == "input") || (sink_ && !sink_file && r.role == "output");
  });
  for (FileRole& r : roles) {
    if (r.role == "output" && sink_file) r.path = *sink_file;
    if (r.role == "input" && source_file) r.path = *source_file;
  }
  check_distinct_files(roles);
}

void Pipeline::Impl::start(uv_loop_t* loop, std::function<void(const RunSummary&)> on_finished) {
  if (sink_ && !sink_->wants_jsonl() && opt_.long_input == LongInput::chunk) {
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
  open_input();
  check_files_are_distinct();
  lock_checkpoint();
  if (!sink_) {
    // The JSONL output: the same sink any program can make, on the same path as any sink.
    sink_ = make_jsonl_sink(opt_.output);
    own_jsonl_ = true;
  }
  wants_jsonl_ = sink_->wants_jsonl();
  fingerprint_ = compute_fingerprint();
  const std::optional<CheckpointState> resume_state = open_sink_and_read_checkpoint();
  const bool resumed = resume_state.has_value();
  const bool already_finished = resumed && load_resume_point(*resume_state);
  if (!already_finished) {
    if (!sink_checkpoints()) {
      // After the files were checked against the checkpoint: a sink that goes back (the JSONL
      // file is cut) only once the checkpoint is known to be right.
      std::string position;
      if (resumed) {
        position = resume_state->output_position.empty() && sink_->file()
                       ? std::to_string(resume_state->output_offset)
                       : resume_state->output_position;
      }
      sink_->open(sink_run(resumed, position));
    }
    open_outputs();
  }
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
  wc.format_output = wants_jsonl_;
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
  // A backend's own events (workers joining, redeliveries) reach the bus through the loop.
  model_->set_event_sink([this](EventPayload payload) {
    std::lock_guard lock(sink_mutex_);
    if (!async_ready_.load()) return;
    backend_events_.push_back(std::move(payload));
    uv_async_send(&results_async_);
  });
  workers_->start();

  const auto& info = model_->info();
  bus_.publish(PipelineStarted{input_name_, own_jsonl_ ? opt_.output : sink_->name(),
                               info.dir.empty() ? info.family : info.dir.string(),
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
  source_thread_ = std::thread([this] { source_main(); });
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
  if (!input_over) return;
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
  if (dead_ && !dead_->idle()) return;
  finish();
}

void Pipeline::Impl::fail_run(const std::string& message) {
  if (failed_) return;
  failed_ = true;
  summary_.status = RunStatus::failed;
  summary_.error = message;
  check_done();
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
  model_->set_event_sink({});
  publish_backend_events();
  stop_source();
  summary_.elapsed_s = unix_time_now() - start_time_;
  summary_.bytes_written = wants_jsonl_ ? done_.output_offset : 0;
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
    if (dead_) {
      if (!last_dead_letter_line_.empty()) dead_->append(last_dead_letter_line_);
      dead_->close([this] { close_all(); });
    } else {
      close_all();
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

void Pipeline::Impl::on_handle_closed(uv_handle_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  if (--self->open_handles_ > 0) return;
  if (self->source_thread_.joinable()) self->source_thread_.join();
  // The run is over: the checkpoint is free for the next one (a resume in this process too).
  if (self->checkpoint_lock_fd_ >= 0) {
    ::close(self->checkpoint_lock_fd_);
    self->checkpoint_lock_fd_ = -1;
  }
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
bool Pipeline::has_sink() const noexcept { return impl_->has_users_sink(); }
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
