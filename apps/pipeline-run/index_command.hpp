#pragma once
// `pipeline-run index DIR -o STORE`: a source tree into a store, chunked by syntax, one
// transaction per file, incremental (docs/code-index.md).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nats_args.hpp"

namespace pipeline_run {

struct IndexArgs {
  std::string root;
  std::string store = "sqlite:index.db";
  std::filesystem::path model;
  std::uint32_t chunk_tokens = 0;  // 0: the model's limit
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  std::uint64_t max_file_bytes = std::uint64_t{1} << 20;
  std::string events;
  std::string progress = "auto";
  std::string dead_letter;
  std::string precision = "fp32";
  int threads = 0;
  int model_workers = 0;
  std::size_t batch_size = 256;
  std::size_t max_batch_tokens = 4096;
  std::size_t sort_window = 0;  // 0: the batch size
  NatsArgs nats;
};

/// Runs the command; returns the exit code (exit_codes.hpp): 0 when every file was indexed or
/// skipped, 4 when some failed (each recorded in the store with its error), 130 when stopped.
int run_index(IndexArgs& args);

}  // namespace pipeline_run
