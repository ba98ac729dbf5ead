#pragma once
// `embed --remote URL`: the options of the remote API backend (docs/remote.md).

#include <string>

#include <sluice/remote.hpp>

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
  double bytes_per_token = 3.0;            // the estimate, without --model
  bool given = false;
};

/// --remote URL, --remote-model, --remote-key-env, --remote-key-file, --remote-max-inputs,
/// --remote-max-tokens, --remote-max-input-tokens, --remote-concurrency, --rate-limit-rpm,
/// --rate-limit-tpm, --remote-retries, --remote-retry-time, --remote-timeout,
/// --remote-dimensions, --remote-bytes-per-token.
void add_remote_options(CLI::App& cmd, RemoteArgs& args);

/// Reads the key from the file or the variable (never from a flag, which `ps` shows). Throws
/// sluice::Error (invalid_argument) for an unreadable file.
void load_remote_key(RemoteArgs& args);

}  // namespace pipeline_run
