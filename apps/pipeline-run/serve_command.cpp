#include "serve_command.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/model.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/tokenizer.hpp>

#include "exit_codes.hpp"
#include "run_support.hpp"

namespace pipeline_run {

void parse_listen(const std::string& text, std::string& host, int& port) {
  std::string h = "127.0.0.1", p = text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw sluice::Error(sluice::ErrorCode::invalid_argument,
                          fmt::format("--listen {}: write an IPv6 address as [ADDRESS]:PORT", text));
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    if (colon > 0) h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  int value = -1;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value < 0 || value > 65535) {
    throw sluice::Error(sluice::ErrorCode::invalid_argument,
                        fmt::format("--listen {}: the port must be a number from 0 to 65535", text));
  }
  host = h;
  port = value;
}

int run_serve(ServeArgs& args) {
  if (args.model.empty()) args.model = default_model_dir();
  parse_listen(args.listen, args.server.host, args.server.port);
  args.server.threads = cap_to_cores(args.server.threads, "--threads");
  args.server.model_workers = cap_to_cores(args.server.model_workers, "--model-workers");
  const sluice::Device device = sluice::parse_device(args.device);
  const bool cpu = device.kind == sluice::DeviceKind::cpu;
  const sluice::ThreadLayout layout = sluice::model_thread_layout(args.server.threads, args.server.model_workers, cpu);
  sluice::ModelOptions mo =
      serving_model_options(args.pooling, args.normalize, args.no_normalize, args.precision, layout.threads_per_worker);
  mo.device = device;
  fmt::print(stderr, "loading the model from {}\n", args.model.string());
  std::shared_ptr<sluice::Model> model = sluice::Model::load(args.model, mo);
  std::shared_ptr<sluice::Tokenizer> tokenizer = sluice::Tokenizer::from_file(args.model / "tokenizer.json");
  if (args.server.model_workers == 0) args.server.model_workers = layout.workers;

  // Writes to a client that left must not kill the server.
  ::signal(SIGPIPE, SIG_IGN);
  sluice::EmbeddingServer server(model, tokenizer, args.server);
  on_stop_signals([](void* s) { static_cast<sluice::EmbeddingServer*>(s)->stop(); }, &server);
  const std::string host = args.server.host.find(':') != std::string::npos ? "[" + args.server.host + "]" : args.server.host;
  fmt::print(stderr, "serving {} ({} dimensions) on http://{}:{}/v1/embeddings; {} model call(s) at once\n",
             args.server.model_name.empty() ? args.model.filename().string() : args.server.model_name,
             model->info().dimensions, host, server.port(),
             model->concurrent_embed() ? args.server.model_workers : 1);
  std::fflush(stderr);
  server.run();
  on_stop_signals(nullptr, nullptr);
  const sluice::ServeCounts c = server.counts();
  fmt::print(stderr, "stopped: {} requests answered ({} ok, {} refused as busy), {} inputs, {} tokens, {} model calls\n",
             c.requests, c.ok, c.rejected, c.inputs, c.tokens, c.batches);
  return kExitOk;
}

}  // namespace pipeline_run
