#pragma once
// `embed --remote URL`: the options of the remote API backend (docs/remote.md).

#include <filesystem>
#include <memory>
#include <string>

#include <sluice/remote.hpp>
#include <sluice/tokenizer.hpp>

namespace CLI {
class App;
}

namespace pipeline_run {

struct RemoteArgs {
  sluice::RemoteOptions remote;
  std::string key_env = "OPENAI_API_KEY";  // the variable that holds the key
  std::string key_file;                    // or a file that holds it
  std::size_t max_inputs = 2048;           // inputs per request
  std::size_t max_tokens = 300000;         // tokens per request (the estimate, or the tokenizer's count)
  bool given = false;
};

/// --remote URL, --remote-model, --remote-key-env, --remote-key-file, --remote-max-inputs,
/// --remote-max-tokens, --remote-max-input-tokens, --remote-concurrency, --rate-limit-rpm,
/// --rate-limit-tpm, --remote-retries, --remote-retry-time, --remote-timeout,
/// --remote-dimensions, --remote-bytes-per-token.
void add_remote_options(CLI::App& cmd, RemoteArgs& args);

/// Makes `args.remote` ready for connect_remote_model() and returns the tokenizer the run
/// counts with: the key read from the file or the variable (never from a flag, which `ps`
/// shows); with `model_dir` (not empty), that folder's tokenizer.json, counted by content into
/// the model's identity, inputs cut at that model's maximum unless --remote-max-input-tokens
/// is lower; without it, the estimate of --remote-bytes-per-token. Throws sluice::Error
/// (invalid_argument) without --remote-model or for an unreadable key file.
std::shared_ptr<sluice::Tokenizer> prepare_remote(RemoteArgs& args, const std::filesystem::path& model_dir);

}  // namespace pipeline_run
