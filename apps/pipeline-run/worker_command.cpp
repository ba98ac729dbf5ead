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

int run_worker(WorkerArgs& args) {
  if (args.model.empty()) args.model = default_model_dir();
  args.threads = cap_to_cores(args.threads, "--threads");
  args.calls = cap_to_cores(args.calls, "--model-workers");
  // The layout a run in this process gives its model: one single-threaded call per core (up to
  // 8 cores), so a worker's vectors are the ones a local run makes on the same processor.
  const sluice::ThreadLayout layout = sluice::model_thread_layout(args.threads, args.calls, true);
  const sluice::ModelOptions mo =
      serving_model_options(args.pooling, args.normalize, args.no_normalize, args.precision, layout.threads_per_worker);

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
  on_stop_signals([](void* w) { static_cast<sluice::NatsWorker*>(w)->stop(); }, &worker);
  worker.run();
  on_stop_signals(nullptr, nullptr);
  return kExitOk;  // stopped by a signal after answering what it held
}

}  // namespace pipeline_run
