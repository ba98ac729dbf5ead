#pragma once
// `pipeline-run worker --nats URL --model DIR`: a model worker for runs with --nats
// (docs/scale-out.md).

#include <filesystem>
#include <string>

#include "nats_args.hpp"

namespace pipeline_run {

struct WorkerArgs {
  NatsArgs nats;
  std::filesystem::path model;
  std::string name;
  int threads = 0;  // 0: every core
  int calls = 0;    // 0: chosen by cores, as embed's model calls
  std::string pooling;
  bool normalize = false;
  bool no_normalize = false;
  std::string precision = "fp32";
};

/// Serves until SIGINT or SIGTERM (the batches in hand are finished and answered first; a
/// second signal exits at once). Returns the exit code.
int run_worker(WorkerArgs& args);

}  // namespace pipeline_run
