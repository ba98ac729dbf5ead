#include "remote_args.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/model.hpp>

namespace pipeline_run {

void add_remote_options(CLI::App& cmd, RemoteArgs& args) {
  auto& r = args.remote;
  cmd.add_option_function<std::string>(
      "--remote",
      [&args](const std::string& v) {
        args.remote.url = v;
        args.given = true;
      },
      "Embed through an OpenAI-compatible API at this base URL (https://api.openai.com/v1, or a TEI, vLLM, Ollama, "
      "infinity or `pipeline-run serve` server's http://host:port/v1); docs/remote.md");
  cmd.add_option("--remote-model", r.model, "With --remote: the API's model name (the request's \"model\")");
  cmd.add_option("--remote-key-env", args.key_env,
                 "With --remote: the environment variable holding the API key (sent as a Bearer token)")
      ->capture_default_str();
  cmd.add_option("--remote-key-file", args.key_file, "With --remote: a file holding the API key instead")
      ->check(CLI::ExistingFile);
  cmd.add_option("--remote-max-inputs", args.max_inputs, "With --remote: inputs per request, at most")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  cmd.add_option("--remote-max-tokens", args.max_tokens,
                 "With --remote: tokens per request, at most (inputs x the longest, as counted here)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  cmd.add_option("--remote-max-input-tokens", r.max_input_tokens,
                 "With --remote and --model: an input's tokens, at most (longer ones as --long-input says)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 24));
  cmd.add_option("--remote-concurrency", r.concurrency, "With --remote: requests in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd.add_option("--rate-limit-rpm", r.requests_per_minute, "With --remote: requests a minute, at most (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  cmd.add_option("--rate-limit-tpm", r.tokens_per_minute, "With --remote: tokens a minute, at most (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e12));
  cmd.add_option("--remote-retries", r.max_retries,
                 "With --remote: attempts after the first for a request that fails (429, 5xx, timeout, connection)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd.add_option("--remote-retry-time", r.max_retry_s, "With --remote: seconds one request may spend on retries")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd.add_option("--remote-timeout", r.timeout_s, "With --remote: seconds one request may take")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd.add_option("--remote-dimensions", r.dimensions,
                 "With --remote: the vectors' size; without it one short request asks (a few tokens billed)")
      ->check(CLI::Range(1u, 1u << 20));
  cmd.add_option("--remote-bytes-per-token", r.bytes_per_token,
                 "With --remote and no --model: bytes of text counted as one token, for batching and rate limits")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 64.0));
}

namespace {

void load_remote_key(RemoteArgs& args) {
  if (!args.key_file.empty()) {
    std::ifstream in(args.key_file, std::ios::binary);
    if (!in) {
      throw sluice::Error(sluice::ErrorCode::invalid_argument,
                          fmt::format("--remote-key-file {}: cannot read it", args.key_file));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string key = ss.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
    args.remote.api_key = key;
    return;
  }
  if (const char* v = std::getenv(args.key_env.c_str()); v && *v) args.remote.api_key = v;
}

}  // namespace

std::shared_ptr<sluice::Tokenizer> prepare_remote(RemoteArgs& args, const std::filesystem::path& model_dir) {
  if (args.remote.model.empty()) {
    throw sluice::Error(sluice::ErrorCode::invalid_argument, "--remote needs --remote-model NAME (the API's model)");
  }
  load_remote_key(args);
  if (model_dir.empty()) return sluice::make_estimating_tokenizer(args.remote.bytes_per_token);
  std::shared_ptr<sluice::Tokenizer> tokenizer = sluice::Tokenizer::from_file(model_dir / "tokenizer.json");
  // The API runs this folder's model: its maximum, unless --remote-max-input-tokens is lower (a
  // folder with a tokenizer alone keeps the option's).
  std::uint32_t max = args.remote.max_input_tokens;
  if (std::filesystem::exists(model_dir / "config.json")) max = std::min(max, sluice::model_max_tokens(model_dir));
  if (auto t = tokenizer->max_length(); t && *t < max) max = static_cast<std::uint32_t>(*t);
  args.remote.max_input_tokens = max;
  args.remote.tokenizer_file = model_dir / "tokenizer.json";
  return tokenizer;
}

}  // namespace pipeline_run
