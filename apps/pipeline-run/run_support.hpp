#pragma once
// What the commands that run a pipeline share: the event log writer, the default model folder
// and the fast exit of a finished run.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/events.hpp>
#include <sluice/pipeline.hpp>
#include <uv.h>

namespace pipeline_run {

// The event stream as JSON lines. Thread: loop. The user asked for this file: a write that
// fails (a full disk, /dev/full, a closed pipe) stops the run, which then fails naming it.
class EventWriter {
 public:
  EventWriter(const std::string& path, std::function<void()> on_failure)
      : path_(path == "-" ? "standard output" : path), on_failure_(std::move(on_failure)) {
    if (path == "-") {
      file_ = stdout;
    } else {
      file_ = std::fopen(path.c_str(), "wb");
      if (!file_) {
        throw sluice::Error(sluice::ErrorCode::io_error,
                            fmt::format("{}: cannot open for writing: {}", path, std::strerror(errno)));
      }
      owned_ = true;
    }
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  }
  ~EventWriter() { close(); }
  void on_event(const sluice::PipelineEvent& e) {
    if (!error_.empty() || file_ == nullptr) return;
    line_.clear();
    line_ = sluice::to_json(e);
    line_.push_back('\n');
    bool ok = std::fwrite(line_.data(), 1, line_.size(), file_) == line_.size();
    // Progress-level events are flushed at once so a reader sees them live.
    if (ok && !std::holds_alternative<sluice::DocumentStarted>(e.payload) &&
        !std::holds_alternative<sluice::DocumentCompleted>(e.payload)) {
      ok = std::fflush(file_) == 0;
    }
    if (!ok) fail();
  }
  /// Flushes and closes; false (with error()) when anything could not be written.
  bool close() {
    if (file_ != nullptr) {
      if (error_.empty() && std::fflush(file_) != 0) fail();
      if (owned_ && std::fclose(file_) != 0 && error_.empty()) fail();
      file_ = nullptr;
    }
    return error_.empty();
  }
  const std::string& error() const { return error_; }

 private:
  void fail() {
    error_ = fmt::format("{}: cannot write the event log: {}", path_, std::strerror(errno != 0 ? errno : EIO));
    if (on_failure_) on_failure_();
  }

  std::string path_;
  std::function<void()> on_failure_;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string line_;
  std::string error_;
};

/// The default model folder: $SLUICE_DEFAULT_MODEL, else models/use-lite of the source tree
/// this binary was built in (build/apps/pipeline-run/), else <prefix>/share/sluice/use-lite.
/// Throws sluice::Error (invalid_argument) saying how to install it.
std::filesystem::path default_model_dir();

/// A pooling name as the options and the stores spell it ("mean", "cls", "max",
/// "last_token"); anything else is mean pooling, and an empty name none (the folder's).
std::optional<sluice::Pooling> parse_pooling(std::string_view name);

/// `value` of option `name` (--threads, --model-workers), capped to this machine's cores with a
/// note: more only slows a run down (each waits for a core).
int cap_to_cores(int value, std::string_view name);

/// The model options the serving commands (worker, serve) share: --pooling, --normalize,
/// --no-normalize and --precision as given (checked by CLI11), with `threads` a call.
sluice::ModelOptions serving_model_options(const std::string& pooling, bool normalize, bool no_normalize,
                                           const std::string& precision, int threads);

/// SIGINT and SIGTERM for a serving command: the first calls `stop(target)` (which must be
/// async-signal-safe), a second exits at once with 130. `stop` null: back to no target (the
/// first signal then does nothing but count).
void on_stop_signals(void (*stop)(void*), void* target);

/// SIGINT and SIGTERM on the run's loop: the first stops the pipeline (it drains, saying
/// `what` it does meanwhile), the second exits at once (130). close() before the loop ends.
class StopSignals {
 public:
  StopSignals(uv_loop_t* loop, sluice::Pipeline& pipeline, std::string what);
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  void close();

 private:
  static void on_signal(uv_signal_t* handle, int signum);
  sluice::Pipeline* pipeline_;
  std::string what_;
  int count_ = 0;
  bool closed_ = false;
  uv_signal_t sigint_{}, sigterm_{};
};

/// Starts `pipeline` on a loop of its own with StopSignals (`what` a stop does) and runs the
/// loop until the run has ended; returns its summary. Rethrows what start() throws (a run
/// refused before it began), the loop closed.
sluice::RunSummary run_on_loop(sluice::Pipeline& pipeline, const std::string& what);

/// The exit of a finished run: see run_support.cpp.
int finished(int code);

}  // namespace pipeline_run
