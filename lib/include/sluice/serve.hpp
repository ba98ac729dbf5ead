#pragma once
/// An embedding server: `POST /v1/embeddings` in the OpenAI request and response format, plus
/// `GET /health` and `GET /metrics` (Prometheus text), on a libuv loop (docs/serve.md).
///
/// Threads: the loop thread accepts connections, parses HTTP (Node's http-parser), reads the
/// JSON requests and writes the answers; one tokenizer thread turns a request's inputs into
/// token ids; `model_workers` inference threads each take the next batch from the queue of
/// rows of every request (dynamic batching: the rows queued when a thread is free are planned
/// by the pipeline's plan_window(), sorted by length under the token budget, and the batch
/// holding the oldest row goes first), embed it and, when a request's last row is done,
/// format its answer.
///
/// Memory is bounded by the options: a request body is at most max_request_bytes, the bodies
/// read or waiting at most max_pending_bytes, the rows queued at most max_queue_rows (a
/// request past either bound gets 429 with Retry-After), and the connections at most
/// max_connections.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <sluice/model.hpp>
#include <sluice/tokenizer.hpp>

namespace sluice {

struct ServeOptions {
  std::string host = "127.0.0.1";  ///< address to listen on (IPv4 or IPv6 literal)
  int port = 8080;                 ///< 0: any free port (EmbeddingServer::port() says which)
  /// The name the server answers to: a request's "model", when given, must be this name
  /// (404 model_not_found otherwise); answers carry it. Empty: the model folder's name.
  std::string model_name;
  std::size_t batch_size = 64;          ///< rows per model call, at most
  std::size_t max_batch_tokens = 8192;  ///< padded tokens per model call, at most
  int threads = 0;                      ///< cores the model uses, all calls together; 0: every core
  int model_workers = 0;                ///< model calls at once; 0: model_thread_layout()'s choice
  std::size_t max_inputs = 2048;        ///< inputs per request, at most (OpenAI's limit)
  std::size_t max_request_bytes = 8u << 20;   ///< a request's body, at most (413 past it)
  std::size_t max_pending_bytes = 256u << 20; ///< bodies being read or waiting, all together (429)
  std::size_t max_queue_rows = 16384;         ///< inputs accepted and not yet embedded (429)
  std::size_t max_connections = 1024;         ///< open connections; one more is answered 503
  double idle_timeout_s = 60;     ///< a keep-alive connection idle this long is closed
  double request_timeout_s = 30;  ///< a request not fully received this long after its first byte: 408
  /// Inputs longer than the model accepts: false (OpenAI's way) fails the request (400,
  /// naming the input); true truncates them to the model's maximum. A request's
  /// "truncate": true|false (as TEI has it) overrides this.
  bool truncate = false;
};

/// What the server did so far (also the /metrics figures). Any thread.
struct ServeCounts {
  std::uint64_t requests = 0;   ///< answered, any status
  std::uint64_t ok = 0;         ///< answered 200 to /v1/embeddings
  std::uint64_t rejected = 0;   ///< answered 429 (queue or pending bytes full)
  std::uint64_t inputs = 0;     ///< inputs embedded
  std::uint64_t tokens = 0;     ///< their tokens (usage.prompt_tokens, summed)
  std::uint64_t batches = 0;    ///< model calls
};

class EmbeddingServer {
 public:
  /// Binds and listens (throws sluice::Error, invalid_argument or io_error, when it cannot).
  /// The tokenizer's max length is capped to the model's.
  EmbeddingServer(std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer, ServeOptions options);
  ~EmbeddingServer();
  EmbeddingServer(const EmbeddingServer&) = delete;
  EmbeddingServer& operator=(const EmbeddingServer&) = delete;

  /// The port it listens on (the one chosen when ServeOptions::port was 0).
  int port() const noexcept;
  /// Serves until stop(); then stops accepting, closes the connections with nothing received
  /// to answer, answers every request already received (then closes its connection) and
  /// returns.
  void run();
  /// Begins the graceful stop described at run(). Thread: any; async-signal-safe.
  void stop() noexcept;
  ServeCounts counts() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
