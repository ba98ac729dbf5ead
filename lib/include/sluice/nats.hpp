#pragma once
/// Scale-out through NATS JetStream (docs/scale-out.md): the model stage of a run goes to
/// workers on any number of machines, and everything else (reading, order, the sink, the
/// checkpoint) stays in the run, as on one machine.
///
///  - connect_nats_model() makes a Model whose calls are work messages on JetStream: a
///    Pipeline given it runs as usual, with `calls_in_flight` batches on the wire.
///  - NatsWorker pulls those messages, embeds them with a local Model, publishes the vectors
///    and acknowledges the work only once JetStream has stored the result.
///
/// A batch whose worker dies is delivered again after the acknowledgement deadline; a second
/// answer for a batch is dropped. A job names its model by identity (model_identity(): the
/// weights by content, pooling, normalisation, precision): a worker with another model takes
/// none of its batches.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <sluice/model.hpp>

namespace sluice {

/// How to reach the NATS server. Secrets never go in a URL that shows in `ps` or in events:
/// a credentials file, TLS files, or the environment (SLUICE_NATS_USER and
/// SLUICE_NATS_PASSWORD, or SLUICE_NATS_TOKEN) carry them.
struct NatsOptions {
  /// One or more servers, comma-separated: "nats://host:4222,nats://other:4222".
  std::string url = "nats://127.0.0.1:4222";
  std::string creds_file;  ///< a NATS credentials file (user JWT and NKey seed)
  std::string tls_ca;      ///< CA certificates to trust (PEM); with it, TLS is required
  std::string tls_cert;    ///< this client's certificate chain (PEM), for mutual TLS
  std::string tls_key;     ///< its private key (PEM)
  /// How long the server may stay unreachable (reconnecting) before an operation gives up:
  /// the run then fails with backend_unavailable, resumable.
  double timeout_s = 120;
};

/// The URL with any user:password@ part replaced by "***@", for messages.
std::string redact_nats_url(std::string_view url);

struct RemoteModelOptions {
  NatsOptions nats;
  /// Batches on the wire at once (each is one model call of the pipeline); it bounds the
  /// memory both here and on the server.
  int in_flight = 8;
  /// A worker that took a batch and went silent (killed, cut off) loses it after this long;
  /// it is then delivered to another worker. Workers extend it while they embed. At least 2.
  double ack_wait_s = 30;
  /// A batch that ran this many times, each time stopping its worker before an answer, is
  /// abandoned: its records are tried one by one, and those that still get none fail, instead
  /// of killing worker after worker. Its first run shares the worker with other batches; later
  /// runs are alone in their worker, and only those are counted for it (docs/scale-out.md), so
  /// a batch is not blamed for another's crash. At least 2.
  std::uint32_t max_deliveries = 3;
};

/// A Model for the pipeline whose calls run on NATS workers. `local` is the model folder loaded
/// here, for its info and identity (what workers must have); it is released at once, so its
/// weights do not stay in memory. Connects, creates the JetStream streams when missing, and
/// starts listening for workers. Throws sluice::Error (backend_unavailable) when the server
/// cannot be reached, with the URL redacted.
std::shared_ptr<Model> connect_nats_model(std::shared_ptr<Model> local, const RemoteModelOptions& options);

struct WorkerOptions {
  NatsOptions nats;
  std::string name;  ///< how runs name this worker; empty: HOST-PID
  int calls = 1;     ///< batches embedded at once (the model's calls must be concurrent for more)
  int threads = 1;   ///< cores all its calls use together (reported to runs)
  /// Lines for the worker's log (joined, refused a job, a batch failed...). Any thread.
  std::function<void(std::string_view)> log;
};

/// Counts of a worker since it started.
struct WorkerCounts {
  std::uint64_t batches = 0;
  std::uint64_t rows = 0;
  std::uint64_t tokens = 0;
  std::uint64_t failed = 0;   ///< batches answered with an error
  std::uint64_t dropped = 0;  ///< batches of runs no longer there, dropped unembedded
  double busy_s = 0;
};

/// A model worker. run() serves until stop(); then the batches in hand are finished, answered
/// and acknowledged, and the runs are told it left.
class NatsWorker {
 public:
  /// Connects (throws sluice::Error, backend_unavailable) and binds to the queue of its model.
  NatsWorker(std::shared_ptr<Model> model, WorkerOptions options);
  ~NatsWorker();
  NatsWorker(const NatsWorker&) = delete;
  NatsWorker& operator=(const NatsWorker&) = delete;

  void run();
  /// Thread: any; async-signal-safe.
  void stop() noexcept;
  WorkerCounts counts() const;
  const std::string& name() const noexcept;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
