#include "worker_command.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/model.hpp>
#include <sluice/nats.hpp>
#include <sluice/pipeline.hpp>

#include "exit_codes.hpp"
#include "run_support.hpp"

namespace pipeline_run {
namespace {

std::atomic<sluice::NatsWorker*> g_worker{nullptr};
std::atomic<int> g_signals{0};

void on_signal(int) {
  if (g_signals.fetch_add(1) > 0) _exit(kExitInterrupted);  // a second signal: at once
  if (sluice::NatsWorker* w = g_worker.load()) w->stop();
}

}  // namespace

int run_worker(WorkerArgs& args) {
  if (args.model.empty()) args.model = default_model_dir();
  args.threads = cap_to_cores(args.threads, "--threads");
  args.calls = cap_to_cores(args.calls, "--model-workers");
  // The layout a run in this process gives its model: one single-threaded call per core (up to
  // 8 cores), so a worker's vectors are the ones a local run makes on the same processor.
  const sluice::ThreadLayout layout = sluice::model_thread_layout(args.threads, args.calls, true);
  sluice::ModelOptions mo;
  mo.threads = layout.threads_per_worker;
  mo.pooling = parse_pooling(args.pooling);
  if (args.normalize) mo.normalize = true;
  if (args.no_normalize) mo.normalize = false;
  sluice::precision_from_name(args.precision, mo.precision);

  fmt::print(stderr, "loading the model from {}\n", args.model.string());
  std::shared_ptr<sluice::Model> model = sluice::Model::load(args.model, mo);

  sluice::WorkerOptions wo;
  wo.nats = args.nats.remote.nats;
  wo.name = args.name;
  wo.calls = model->concurrent_embed() ? layout.workers : 1;
  wo.threads = layout.workers * layout.threads_per_worker;
  wo.log = [](std::string_view line) {
    fmt::print(stderr, "{}\n", line);
    std::fflush(stderr);
  };
  sluice::NatsWorker worker(model, wo);
  g_worker.store(&worker);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  worker.run();
  g_worker.store(nullptr);
  return kExitOk;  // stopped by a signal after answering what it held
}

}  // namespace pipeline_run
