#pragma once
// What the run's side (nats_model.cpp) and the worker's (nats_worker.cpp) share: the
// connection, the JetStream streams and subjects, and the wire format of a batch and of its
// answer. docs/scale-out.md describes the protocol.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nats/nats.h>

#include <sluice/error.hpp>
#include <sluice/model.hpp>
#include <sluice/nats.hpp>

namespace sluice::nats_wire {

// Streams (work queues: a message is gone once acknowledged; MaxAge ends what a vanished run
// left behind).
inline constexpr const char* kWorkStream = "SLUICE_WORK";
inline constexpr const char* kResultStream = "SLUICE_RESULTS";
// Key-value bucket: how many times each redelivered batch ran alone in a worker ("<job>.<batch>").
inline constexpr const char* kAttemptsBucket = "SLUICE_ATTEMPTS";

// Subjects. A model's work: sluice.work.<model key>.<job>; a job's answers: sluice.result.<job>;
// worker heartbeats: sluice.workers.<model key>.<worker>; job announcements: sluice.jobs.<job>.
std::string model_key(std::string_view identity);  // 16 hex digits of SHA-256 of model_identity()
std::string work_subject(std::string_view key, std::string_view job);
std::string work_filter(std::string_view key);
std::string work_consumer(std::string_view key);
std::string result_subject(std::string_view job);
std::string result_consumer(std::string_view job);
inline constexpr const char* kWorkersSubjects = "sluice.workers.>";
std::string workers_subject(std::string_view key, std::string_view worker);
inline constexpr const char* kJobsSubjects = "sluice.jobs.>";
std::string jobs_subject(std::string_view job);
// A name as one subject token: letters, digits, '-' and '_' kept, anything else '_'.
std::string subject_token(std::string_view name);
std::string random_hex(int digits);

// Headers.
inline constexpr const char* kJob = "Sluice-Job";
inline constexpr const char* kBatch = "Sluice-Batch";
inline constexpr const char* kModel = "Sluice-Model";
inline constexpr const char* kMaxDeliveries = "Sluice-Max-Deliveries";
inline constexpr const char* kWorker = "Sluice-Worker";
inline constexpr const char* kDeliveries = "Sluice-Deliveries";
inline constexpr const char* kAbandoned = "Sluice-Abandoned";
inline constexpr const char* kDropped = "Sluice-Dropped";  // the worker dropped the batch unembedded

// A batch on the wire: "SLW1", u32 rows, u32 seq_len, u32 flags (1: type ids, 2: prompt
// tokens), i64 pad id, rows x u32 real length, the real ids (i32), then the type ids (i32) and
// the prompt tokens (u32 per row) when flagged. Little-endian. Padding is not sent.
std::string encode_batch(const TokenBatch& batch);
// Throws sluice::Error (model_error) for a malformed message.
TokenBatch decode_batch(std::string_view data);
// Bytes encode_batch() takes for rows x seq_len, at most.
std::size_t batch_bytes_bound(std::size_t rows, std::size_t seq_len);

// An answer: "SLR1", u32 status. 0: u32 rows, u32 dims, rows x dims f32. 1: u32 length and the
// error code's name, u32 length and the message.
std::string encode_vectors(std::uint32_t rows, std::uint32_t dims, const float* values);
std::string encode_error(const ErrorInfo& error);
struct Answer {
  std::uint32_t rows = 0;
  std::uint32_t dims = 0;
  std::vector<float> values;
  std::optional<ErrorInfo> error;
};
Answer decode_answer(std::string_view data);  // throws sluice::Error (model_error)

// A durable pull consumer's settings: explicit acknowledgement, redelivery without limit (the
// workers count deliveries), 100,000 unacknowledged messages at most. `durable` and `filter`
// must outlive the result.
jsConsumerConfig pull_consumer_config(const std::string& durable, const std::string& filter, double ack_wait_s);
// A message's payload.
std::string_view message_data(natsMsg* msg);

// Unsubscribes an asynchronous subscription and waits (a few seconds at most) until its
// handler can no longer run, then destroys it: the handler's object may then go.
void close_subscription(natsSubscription* sub);

// The status's text and the library's last error, for messages.
std::string status_text(natsStatus s);

// A connection that reconnects forever and remembers since when it is disconnected.
class Connection {
 public:
  Connection(const NatsOptions& options, const std::string& client_name);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  natsConnection* nc() const noexcept { return nc_; }
  jsCtx* js() const noexcept { return js_; }
  bool connected() const;
  // Seconds the connection has been down (0 when up).
  double down_s() const;
  // When it last came back (steady seconds; 0: never lost).
  double reconnected_at() const { return state_->reconnected_at.load(); }
  // Whether the client library gave up on the connection for good (closed).
  bool closed() const { return natsConnection_IsClosed(nc_); }
  const NatsOptions& options() const noexcept { return options_; }
  std::string url() const { return redact_nats_url(options_.url); }

  // Runs `op` until it returns NATS_OK, a failure that retrying cannot mend, the connection has
  // been down longer than options().timeout_s, or `cancel` is set. Returns the last status.
  template <typename Op>
  natsStatus retry(Op&& op, const std::atomic<bool>* cancel = nullptr) const {
    const double first = now_s();
    for (;;) {
      // Nothing is attempted while the connection is down: a publish would only fill the
      // reconnect buffer with a copy that the retry then sends again.
      while (!connected() && !closed() && !(cancel && cancel->load()) && down_s() <= options_.timeout_s) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      const natsStatus s = op();
      if (s == NATS_OK || !transient(s)) return s;
      if (cancel && cancel->load()) return s;
      // Down, or up but failing (a JetStream not answering yet after a restart): bounded alike.
      if (down_s() > options_.timeout_s || now_s() - first > options_.timeout_s) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  static bool transient(natsStatus s);

  // Creates the two streams when missing (an existing one is used as it is).
  void ensure_streams() const;
  // Opens the attempts bucket, made when missing; null (and said in `why`) when it cannot be had.
  kvStore* attempts_bucket(std::string& why) const;

 private:
  // What the client library's callback thread touches: shared with it, so that a callback run
  // after the connection is destroyed (the library does not wait for them) finds it alive.
  struct State {
    std::atomic<double> down_since{0};  // 0: connected
    std::atomic<double> reconnected_at{0};
    std::mutex mu;
    std::condition_variable cv;
    bool closed = false;  // guarded by mu
  };
  static void on_disconnected(natsConnection*, void* state);
  static void on_reconnected(natsConnection*, void* state);
  static void on_closed(natsConnection*, void* state);

 public:
  static double now_s();

 private:
  NatsOptions options_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace sluice::nats_wire
