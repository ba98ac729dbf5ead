#include "run_support.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#include "exit_codes.hpp"

namespace pipeline_run {

// The default model folder: $SLUICE_DEFAULT_MODEL, else models/use-lite of the source tree
// this binary was built in (build/apps/pipeline-run/), else <prefix>/share/sluice/use-lite.
std::optional<sluice::Pooling> parse_pooling(std::string_view name) {
  if (name.empty()) return std::nullopt;
  return name == "cls"          ? sluice::Pooling::cls
         : name == "max"        ? sluice::Pooling::max
         : name == "last_token" ? sluice::Pooling::last_token
                                : sluice::Pooling::mean;
}

int cap_to_cores(int value, std::string_view name) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (value <= cores) return value;
  fmt::print(stderr, "note: {} {} is more than this machine's {} cores: using {}\n", name, value, cores, cores);
  return cores;
}

sluice::ModelOptions serving_model_options(const std::string& pooling, bool normalize, bool no_normalize,
                                           const std::string& precision, int threads) {
  sluice::ModelOptions mo;
  mo.threads = threads;
  mo.pooling = parse_pooling(pooling);
  if (normalize) mo.normalize = true;
  if (no_normalize) mo.normalize = false;
  sluice::precision_from_name(precision, mo.precision);
  return mo;
}

namespace {
std::atomic<void (*)(void*)> g_stop{nullptr};
std::atomic<void*> g_stop_target{nullptr};
std::atomic<int> g_stop_signals{0};

void on_stop_signal(int) {
  if (g_stop_signals.fetch_add(1) > 0) _exit(kExitInterrupted);  // a second signal: at once
  if (auto stop = g_stop.load()) stop(g_stop_target.load());
}
}  // namespace

void on_stop_signals(void (*stop)(void*), void* target) {
  g_stop_target.store(target);
  g_stop.store(stop);
  if (!stop) return;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::filesystem::path default_model_dir() {
  if (const char* env = std::getenv("SLUICE_DEFAULT_MODEL"); env && *env) return env;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const auto& candidate : {exe.parent_path() / "../../../models/use-lite",
                                  exe.parent_path() / "../share/sluice/use-lite"}) {
      if (std::filesystem::exists(candidate / "config.json")) return std::filesystem::weakly_canonical(candidate);
    }
  }
  throw sluice::Error(sluice::ErrorCode::invalid_argument,
                      "no --model given and the default model (Universal Sentence Encoder Lite) is not installed: "
                      "run `bash tools/models/install_default_model.sh` in the source tree, or set "
                      "SLUICE_DEFAULT_MODEL to its folder");
}

StopSignals::StopSignals(uv_loop_t* loop, sluice::Pipeline& pipeline, std::string what)
    : pipeline_(&pipeline), what_(std::move(what)) {
  uv_signal_init(loop, &sigint_);
  uv_signal_init(loop, &sigterm_);
  sigint_.data = sigterm_.data = this;
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
}

void StopSignals::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
}

void StopSignals::on_signal(uv_signal_t* handle, int signum) {
  auto* s = static_cast<StopSignals*>(handle->data);
  if (++s->count_ == 1) {
    fmt::print(stderr, "\n{}: stopping: {} (again to abort at once)\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
               s->what_);
    s->pipeline_->stop();
  } else {
    fmt::print(stderr, "\naborting\n");
    std::fflush(stderr);
    _exit(kExitInterrupted);
  }
}

sluice::RunSummary run_on_loop(sluice::Pipeline& pipeline, const std::string& what) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  StopSignals signals(&loop, pipeline, what);
  sluice::RunSummary summary;
  try {
    pipeline.start(&loop, [&](const sluice::RunSummary& s) {
      summary = s;
      signals.close();
    });
  } catch (...) {
    signals.close();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    throw;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return summary;
}

// A finished run leaves nothing the kernel does not clean up: its files are written, synced
// and closed, and its threads are done. Exiting at once skips the destructors of the pipeline
// (the model's tensors) and of libtorch's shared libraries (about 290 on Debian): about 0.1 s,
// and the pages those destructors fault in, several MiB of peak RSS. A build with
// AddressSanitizer or ThreadSanitizer takes the normal path, so leak checks see every object.
int finished(int code) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return code;
#else
  std::fflush(nullptr);
  _exit(code);
#endif
}

}  // namespace pipeline_run
