#pragma once
// `pipeline-run chunk`: a source tree as JSONL chunks, cut by syntax (docs/code-index.md), one
// object per chunk with its path, kind, qualified name, lines and the text to embed; what could
// not be chunked is listed with its reason. The output is what `embed` reads.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pipeline_run {

struct ChunkArgs {
  std::string root;
  std::string output = "-";
  std::string files_output;  // JSONL of every file recorded, with its status; empty: none
  std::filesystem::path model;
  std::uint32_t chunk_tokens = 0;  // 0: the model's limit
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  std::uint64_t max_file_bytes = std::uint64_t{1} << 20;
};

/// Runs the command; returns the exit code (exit_codes.hpp). Throws sluice::Error for setup
/// errors (no such folder, no tokenizer in the model folder).
int run_chunk(const ChunkArgs& args);

}  // namespace pipeline_run
