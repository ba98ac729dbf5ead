// The run's side of scale-out: a Model whose calls are work messages on NATS JetStream.
//
// Each embed() call publishes its batch on sluice.work.<model key>.<job> (stored by JetStream
// before the call goes on) and waits for the answer, which a thread pulling
// sluice.result.<job> hands over by batch number. The pipeline runs calls_in_flight() calls at
// once, so that many batches are on the wire; everything else (order, the sink, checkpoints)
// is the pipeline's, as for a model in this process. Workers are tracked by their heartbeats.

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/nats.hpp>
#include <sluice/pipeline.hpp>

#include "core/json_writer.hpp"
#include "nats_common.hpp"

namespace sluice {
namespace {

using namespace nats_wire;

class NatsModel final : public Model {
 public:
  NatsModel(ModelInfo info, const RemoteModelOptions& options)
      : info_(std::move(info)), options_(options), conn_(options.nats, "sluice run") {
    identity_ = model_identity(info_);
    key_ = model_key(identity_);
    job_ = random_hex(16);
    info_.backend = "NATS JetStream workers";
    conn_.ensure_streams();
    ensure_work_consumer();
    create_result_consumer();
    natsStatus s = natsConnection_Subscribe(&workers_sub_, conn_.nc(), kWorkersSubjects, &NatsModel::on_heartbeat, this);
    if (s != NATS_OK) {
      natsSubscription_Destroy(results_sub_);
      throw Error(ErrorCode::backend_unavailable, fmt::format("NATS subscribe: {}", status_text(s)));
    }
    results_thread_ = std::thread([this] { results_main(); });
    watch_thread_ = std::thread([this] { watch_main(); });
  }

  ~NatsModel() override {
    closing_.store(true);
    interrupt();
    {
      std::lock_guard lock(wake_mu_);
      wake_cv_.notify_all();
    }
    if (watch_thread_.joinable()) watch_thread_.join();
    if (results_thread_.joinable()) results_thread_.join();
    if (results_sub_) natsSubscription_Destroy(results_sub_);
    close_subscription(workers_sub_);  // its handler may run until then
    // What this job left on the server: unanswered work and its answers' consumer.
    if (conn_.connected()) {
      jsOptions jo;
      jsOptions_Init(&jo);
      const std::string subject = work_subject(key_, job_);
      jo.Stream.Purge.Subject = subject.c_str();
      js_PurgeStream(conn_.js(), kWorkStream, &jo, nullptr);
      js_DeleteConsumer(conn_.js(), kResultStream, result_consumer(job_).c_str(), nullptr, nullptr);
      jsOptions_Init(&jo);
      const std::string results = result_subject(job_);
      jo.Stream.Purge.Subject = results.c_str();
      js_PurgeStream(conn_.js(), kResultStream, &jo, nullptr);
    }
  }

  const ModelInfo& info() const override { return info_; }
  bool concurrent_embed() const noexcept override { return true; }
  int calls_in_flight() const noexcept override { return options_.in_flight; }

  void interrupt() noexcept override {
    interrupted_.store(true);
    std::lock_guard lock(mu_);
    for (auto& [id, p] : pending_) p->cv.notify_all();
  }

  void set_event_sink(std::function<void(EventPayload)> post) override {
    std::lock_guard lock(events_mu_);
    post_ = std::move(post);
    if (!post_) return;
    interrupted_.store(false);  // a new run with this model
    // Workers heard from before the run started listening (while it hashed the model, say).
    std::lock_guard watch(watch_mu_);
    for (const auto& [name, w] : workers_) post_(WorkerJoined{name, w.host, w.calls, w.threads});
    for (const auto& [name, r] : refused_) post_(WorkerRefused{name, r.first, r.second, identity_});
  }

  void embed(const TokenBatch& batch, std::span<float> out) override {
    const std::size_t dims = info_.dimensions;
    // A message over the server's limit (1 MB unless configured) goes as two halves.
    const std::int64_t limit = natsConnection_GetMaxPayload(conn_.nc());
    const std::size_t need = std::max(batch_bytes_bound(batch.batch, batch.seq_len), 16 + std::size_t{batch.batch} * dims * 4);
    if (limit > 0 && need + 4096 > static_cast<std::size_t>(limit) && batch.batch > 1) {
      const std::uint32_t first = batch.batch / 2;
      embed(rows_of(batch, 0, first), out.first(std::size_t{first} * dims));
      embed(rows_of(batch, first, batch.batch), out.subspan(std::size_t{first} * dims));
      return;
    }
    if (interrupted_.load()) throw Error(ErrorCode::cancelled, "the run was stopped");
    const std::uint64_t id = next_batch_.fetch_add(1) + 1;
    auto pending = std::make_shared<Pending>();
    pending->payload = encode_batch(batch);
    {
      std::lock_guard lock(mu_);
      pending_[id] = pending;
    }
    struct Forget {
      NatsModel* self;
      std::uint64_t id;
      ~Forget() {
        std::lock_guard lock(self->mu_);
        self->pending_.erase(id);
      }
    } forget{this, id};
    publish(pending->payload, id, 0);
    std::unique_lock lock(mu_);
    while (!pending->done && !interrupted_.load()) {
      pending->cv.wait_for(lock, std::chrono::milliseconds(500));
      if (conn_.down_s() > options_.nats.timeout_s) {
        throw Error(ErrorCode::backend_unavailable,
                    fmt::format("the NATS server at {} has been unreachable for {:.0f} s (--nats-timeout)", conn_.url(),
                                conn_.down_s()));
      }
    }
    if (!pending->done) throw Error(ErrorCode::cancelled, "the run was stopped");
    Answer& a = pending->answer;
    if (a.error) throw Error(a.error->code, a.error->message);
    if (a.rows != batch.batch || a.dims != dims) {
      throw Error(ErrorCode::model_error,
                  fmt::format("worker {} answered {} vectors of {} values for a batch of {} rows of {}",
                              pending->worker, a.rows, a.dims, batch.batch, dims));
    }
    std::copy(a.values.begin(), a.values.end(), out.begin());
  }

 private:
  struct Pending {
    std::string payload;  // the batch as sent, to send again after a silence of the run's
    std::condition_variable cv;
    bool done = false;
    Answer answer;
    std::string worker;
  };
  struct WorkerSeen {
    std::string host;
    double last = 0;       // steady seconds
    double rate_at = 0;    // start of the rate interval
    std::uint64_t batches = 0, rows = 0, tokens = 0;
    double busy_s = 0;
    std::uint64_t rows0 = 0, tokens0 = 0;
    double busy0 = 0;
    std::uint32_t calls = 1;
    std::uint32_t threads = 0;
  };

  static TokenBatch rows_of(const TokenBatch& b, std::uint32_t from, std::uint32_t to) {
    TokenBatch part;
    part.batch = to - from;
    part.seq_len = b.seq_len;
    const std::size_t a = std::size_t{from} * b.seq_len, e = std::size_t{to} * b.seq_len;
    part.ids.assign(b.ids.begin() + a, b.ids.begin() + e);
    part.attention_mask.assign(b.attention_mask.begin() + a, b.attention_mask.begin() + e);
    if (!b.type_ids.empty()) part.type_ids.assign(b.type_ids.begin() + a, b.type_ids.begin() + e);
    if (!b.prompt_tokens.empty()) part.prompt_tokens.assign(b.prompt_tokens.begin() + from, b.prompt_tokens.begin() + to);
    return part;
  }

  // Lock order: events_mu_, then watch_mu_ (events about workers are posted in the order their
  // facts were seen).
  void post(EventPayload e) {
    std::lock_guard lock(events_mu_);
    post_locked(std::move(e));
  }
  void post_locked(EventPayload e) {
    if (post_) post_(std::move(e));
  }

  void ensure_work_consumer() {
    const std::string durable = work_consumer(key_), filter = work_filter(key_);
    jsConsumerConfig cc = pull_consumer_config(durable, filter, options_.ack_wait_s);
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // Made, or updated to this run's ack wait (the server takes a create of an existing durable
    // consumer as an update; js_UpdateConsumer where it does not).
    natsStatus s = conn_.retry([&] { return js_AddConsumer(&ci, conn_.js(), kWorkStream, &cc, nullptr, &jerr); });
    if (s != NATS_OK && jerr == JSConsumerNameExistErr) {
      s = conn_.retry([&] { return js_UpdateConsumer(&ci, conn_.js(), kWorkStream, &cc, nullptr, &jerr); });
    }
    if (s != NATS_OK) {
      // Workers made it first with a configuration of their own: used as it is.
      s = conn_.retry([&] { return js_GetConsumerInfo(&ci, conn_.js(), kWorkStream, durable.c_str(), nullptr, &jerr); });
      if (s != NATS_OK) {
        throw Error(ErrorCode::backend_unavailable,
                    fmt::format("cannot create the work queue's consumer {}: {}", durable, status_text(s)));
      }
    }
    jsConsumerInfo_Destroy(ci);
  }

  void create_result_consumer() {
    const std::string durable = result_consumer(job_), filter = result_subject(job_);
    jsConsumerConfig cc = pull_consumer_config(durable, filter, 30);
    // A run killed before it could remove its consumer leaves it: the server ends it.
    cc.InactiveThreshold = std::int64_t{24} * 3600 * 1000 * 1000 * 1000;
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = conn_.retry([&] { return js_AddConsumer(&ci, conn_.js(), kResultStream, &cc, nullptr, &jerr); });
    if (s != NATS_OK) {
      throw Error(ErrorCode::backend_unavailable,
                  fmt::format("cannot create the consumer of this run's answers: {}", status_text(s)));
    }
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kResultStream;
    s = js_PullSubscribe(&results_sub_, conn_.js(), filter.c_str(), durable.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK) {
      throw Error(ErrorCode::backend_unavailable, fmt::format("cannot pull this run's answers: {}", status_text(s)));
    }
  }

  // `sending`: 0 the first time; later sendings get message ids of their own (JetStream would
  // drop a repeated one as a duplicate).
  void publish(const std::string& payload, std::uint64_t id, std::uint64_t sending) {
    const std::string subject = work_subject(key_, job_);
    const std::string batch_id = std::to_string(id), max = std::to_string(options_.max_deliveries);
    const std::string msg_id = fmt::format("{}.{}.{}", job_, id, sending);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = conn_.retry(
        [&] {
          natsMsg* msg = nullptr;
          natsStatus st = natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
          if (st != NATS_OK) return st;
          natsMsgHeader_Set(msg, kJob, job_.c_str());
          natsMsgHeader_Set(msg, kBatch, batch_id.c_str());
          natsMsgHeader_Set(msg, kModel, key_.c_str());
          natsMsgHeader_Set(msg, kMaxDeliveries, max.c_str());
          jsPubOptions po;
          jsPubOptions_Init(&po);
          po.MsgId = msg_id.c_str();  // a publish retried after a lost acknowledgement is stored once
          jsPubAck* ack = nullptr;
          st = js_PublishMsg(&ack, conn_.js(), msg, &po, &jerr);
          if (ack) jsPubAck_Destroy(ack);
          natsMsg_Destroy(msg);
          return st;
        },
        &interrupted_);
    if (s == NATS_OK) return;
    if (interrupted_.load()) throw Error(ErrorCode::cancelled, "the run was stopped");
    throw Error(ErrorCode::backend_unavailable,
                fmt::format("cannot queue a batch on NATS JetStream at {}: {}", conn_.url(), status_text(s)));
  }

  // Sends every unanswered batch again (or only `only`); false when a publish failed (the
  // caller tries again later).
  bool send_again(std::optional<std::uint64_t> only = std::nullopt) {
    std::vector<std::pair<std::uint64_t, std::string>> unanswered;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, p] : pending_) {
        if (!p->done && (!only || *only == id)) unanswered.emplace_back(id, p->payload);
      }
    }
    const std::uint64_t sending = ++sendings_;
    for (const auto& [id, payload] : unanswered) {
      try {
        publish(payload, id, sending);
      } catch (const Error&) {
        return false;
      }
    }
    return true;
  }

  void results_main() {
    int errors = 0;
    while (!closing_.load()) {
      natsMsgList list{};
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus s = natsSubscription_Fetch(&list, results_sub_, 64, 500, &jerr);
      if (s != NATS_OK) {
        if (s == NATS_TIMEOUT) continue;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        // Failing while connected (a server restarted on an empty store lost the consumer):
        // made again, and every unanswered batch sent again.
        if (conn_.connected() && ++errors >= 20) {
          errors = 0;
          try {
            natsSubscription* old = results_sub_;
            create_result_consumer();
            natsSubscription_Destroy(old);
            resend_.store(true);
          } catch (const Error&) {
          }
        }
        continue;
      }
      errors = 0;
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* msg = list.Msgs[i];
        take_answer(msg);
        natsMsg_Ack(msg, nullptr);
      }
      natsMsgList_Destroy(&list);
    }
  }

  void take_answer(natsMsg* msg) {
    const char* value = nullptr;
    if (natsMsgHeader_Get(msg, kBatch, &value) != NATS_OK) return;
    const std::uint64_t id = std::strtoull(value, nullptr, 10);
    std::string worker = natsMsgHeader_Get(msg, kWorker, &value) == NATS_OK ? value : "?";
    std::uint32_t deliveries = 1;
    if (natsMsgHeader_Get(msg, kDeliveries, &value) == NATS_OK) deliveries = static_cast<std::uint32_t>(std::strtoul(value, nullptr, 10));
    const bool abandoned = natsMsgHeader_Get(msg, kAbandoned, &value) == NATS_OK;
    const bool dropped = natsMsgHeader_Get(msg, kDropped, &value) == NATS_OK;
    std::shared_ptr<Pending> p;
    {
      std::lock_guard lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end() || it->second->done) return;  // a second answer, or of a call given up
      p = it->second;
    }
    if (dropped) {
      // A worker thought this run gone (it had not heard it for a while) and dropped the batch
      // unembedded: it is sent again.
      if (!send_again(id)) resend_.store(true);
      return;
    }
    Answer a;
    try {
      a = decode_answer(message_data(msg));
    } catch (const Error& e) {
      a.error = ErrorInfo{ErrorCode::model_error, fmt::format("worker {}: {}", worker, e.what()), {}, {}};
    }
    {
      std::lock_guard lock(mu_);
      p->answer = std::move(a);
      p->worker = worker;
      p->done = true;
      p->cv.notify_all();
    }
    if (deliveries > 1 || abandoned) post(BatchRedelivered{id, deliveries, worker, abandoned});
  }

  static void on_heartbeat(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
    static_cast<NatsModel*>(self)->heartbeat(std::string(message_data(msg)));
    natsMsg_Destroy(msg);
  }

  void heartbeat(const std::string& json) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return;
    auto str = [&](const char* k) {
      std::string_view v;
      return doc[k].get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
    };
    auto num = [&](const char* k) {
      double v = 0;
      if (doc[k].get(v) == simdjson::SUCCESS) return v;
      std::uint64_t u = 0;
      return doc[k].get(u) == simdjson::SUCCESS ? static_cast<double>(u) : 0.0;
    };
    const std::string name = str("worker"), host = str("host"), key = str("key"), state = str("state");
    if (name.empty()) return;
    std::lock_guard events_lock(events_mu_);
    std::lock_guard lock(watch_mu_);
    {
      if (key != key_) {
        if (refused_.try_emplace(name, host, str("model")).second) {
          post_locked(WorkerRefused{name, host, str("model"), identity_});
        }
      } else if (state == "leaving") {
        if (workers_.erase(name)) post_locked(WorkerLeft{name, "stopped"});
      } else {
        auto [it, fresh] = workers_.try_emplace(name);
        WorkerSeen& w = it->second;
        const double now = Connection::now_s();
        w.host = host;
        w.last = now;
        w.batches = static_cast<std::uint64_t>(num("batches"));
        w.rows = static_cast<std::uint64_t>(num("rows"));
        w.tokens = static_cast<std::uint64_t>(num("tokens"));
        w.busy_s = num("busy_s");
        w.calls = static_cast<std::uint32_t>(std::max(1.0, num("calls")));
        w.threads = static_cast<std::uint32_t>(num("threads"));
        if (fresh || w.rows < w.rows0 || w.tokens < w.tokens0 || w.busy_s < w.busy0) {
          // New, or started again under the same name (its counts begin anew).
          w.rate_at = now;
          w.rows0 = w.rows;
          w.tokens0 = w.tokens;
          w.busy0 = w.busy_s;
        }
        if (fresh) post_locked(WorkerJoined{name, host, w.calls, w.threads});
      }
    }
  }

  void watch_main() {
    constexpr double kSilent = 5;     // seconds without a heartbeat: the worker left
    constexpr double kRateEvery = 5;  // seconds between WorkerRate events
    std::string announcement;
    announcement += "{\"job\":";
    json::append_string(announcement, job_);
    announcement += ",\"key\":";
    json::append_string(announcement, key_);
    announcement += ",\"model\":";
    json::append_string(announcement, identity_);
    announcement += '}';
    const std::string subject = jobs_subject(job_);
    // Workers drop the batches of a run not heard from for 10 s (a run killed long ago). A run
    // that was silent for a while (suspended, cut off, the server down) sends its unanswered
    // batches again once it is back: a second answer is dropped by batch number.
    // An announcement counts as heard once the server has it (a flush answered), not when it
    // is in a socket that may be dead. Batches are also sent again after every reconnection,
    // and when a worker says it dropped one (take_answer()).
    constexpr double kGap = 4;
    double last_heard = 0;
    double reconnected = 0;
    while (!closing_.load()) {
      const bool sent = conn_.connected() &&
                        natsConnection_Publish(conn_.nc(), subject.c_str(), announcement.data(),
                                               static_cast<int>(announcement.size())) == NATS_OK &&
                        natsConnection_FlushTimeout(conn_.nc(), 1000) == NATS_OK;
      if (sent) {
        const double at = Connection::now_s();
        if ((last_heard > 0 && at - last_heard > kGap) || conn_.reconnected_at() != reconnected) resend_.store(true);
        reconnected = conn_.reconnected_at();
        last_heard = at;
        if (resend_.exchange(false) && !send_again()) resend_.store(true);  // tried again next time
      }
      {
        std::lock_guard events_lock(events_mu_);
        std::lock_guard lock(watch_mu_);
        const double now = Connection::now_s();
        for (auto it = workers_.begin(); it != workers_.end();) {
          WorkerSeen& w = it->second;
          if (now - w.last > kSilent) {
            post_locked(WorkerLeft{it->first, fmt::format("silent for {:.0f} s", now - w.last)});
            it = workers_.erase(it);
            continue;
          }
          if (now - w.rate_at >= kRateEvery) {
            const double span = now - w.rate_at;
            post_locked(WorkerRate{it->first, w.batches, w.rows, static_cast<double>(w.rows - w.rows0) / span,
                                   static_cast<double>(w.tokens - w.tokens0) / span,
                                   (w.busy_s - w.busy0) / (span * w.calls)});
            w.rate_at = now;
            w.rows0 = w.rows;
            w.tokens0 = w.tokens;
            w.busy0 = w.busy_s;
          }
          ++it;
        }
      }
      std::unique_lock wake(wake_mu_);
      wake_cv_.wait_for(wake, std::chrono::seconds(1), [this] { return closing_.load(); });
    }
  }

  ModelInfo info_;
  RemoteModelOptions options_;
  Connection conn_;
  std::string identity_, key_, job_;
  natsSubscription* results_sub_ = nullptr;
  natsSubscription* workers_sub_ = nullptr;

  std::mutex mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Pending>> pending_;  // guarded by mu_
  std::atomic<std::uint64_t> next_batch_{0};
  std::atomic<std::uint64_t> sendings_{0};
  std::atomic<bool> resend_{false};  // unanswered batches are to be sent again (watch thread)
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> closing_{false};

  std::mutex events_mu_;
  std::function<void(EventPayload)> post_;  // guarded by events_mu_

  std::mutex watch_mu_;
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;  // wakes the watch thread to end
  std::map<std::string, WorkerSeen> workers_;  // guarded by watch_mu_
  std::map<std::string, std::pair<std::string, std::string>> refused_;  // name -> host, model; watch_mu_

  std::thread results_thread_;
  std::thread watch_thread_;
};

}  // namespace

std::shared_ptr<Model> connect_nats_model(std::shared_ptr<Model> local, const RemoteModelOptions& options) {
  if (!local) throw Error(ErrorCode::invalid_argument, "connect_nats_model: no model");
  if (options.in_flight < 1 || options.in_flight > 1024) {
    throw Error(ErrorCode::invalid_argument, "batches in flight on NATS must be 1 to 1024");
  }
  if (options.max_deliveries < 2) throw Error(ErrorCode::invalid_argument, "max deliveries must be at least 2");
  if (!(options.ack_wait_s >= 2)) throw Error(ErrorCode::invalid_argument, "the ack wait must be at least 2 s");
  ModelInfo info = local->info();
  local.reset();  // the weights are the workers' business
  return std::make_shared<NatsModel>(std::move(info), options);
}

}  // namespace sluice
