#pragma once
// `pipeline-run serve --model DIR [--listen HOST:PORT]`: the model behind an OpenAI-compatible
// POST /v1/embeddings, with GET /health and GET /metrics (docs/serve.md).

#include <filesystem>
#include <string>

#include <sluice/serve.hpp>

namespace pipeline_run {

struct ServeArgs {
  std::filesystem::path model;
  std::string listen = "127.0.0.1:8080";
  sluice::ServeOptions server;
  std::string pooling;
  bool normalize = false;
  bool no_normalize = false;
  std::string precision = "fp32";
  std::string device = "cpu";
};

/// Serves until SIGINT or SIGTERM, then answers the requests already received and exits 0 (a
/// second signal exits at once). Returns the exit code.
int run_serve(ServeArgs& args);

/// Splits "HOST:PORT" ("[::1]:PORT" for IPv6; ":PORT" or "PORT" for 127.0.0.1). Throws
/// sluice::Error (invalid_argument).
void parse_listen(const std::string& text, std::string& host, int& port);

}  // namespace pipeline_run
