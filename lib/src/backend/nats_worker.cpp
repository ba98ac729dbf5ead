// The worker's side of scale-out: pull batches of one model from JetStream, embed them, publish
// the answer, and only then acknowledge the batch.
//
// `calls` threads each pull one batch at a time from the model's shared consumer (a batch
// goes to one worker; one that is not acknowledged within the ack wait goes to another). While
// a batch is embedded, a keeper thread tells JetStream every second that it is in progress, so
// a slow batch is not taken away from a live worker. The same thread sends the worker's
// heartbeat, which runs use to see who works for them.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/nats.hpp>
#include <sluice/pipeline.hpp>

#include "core/json_writer.hpp"
#include "nats_common.hpp"

namespace sluice {

using namespace nats_wire;

class NatsWorker::Impl {
 public:
  Impl(std::shared_ptr<Model> model, WorkerOptions options)
      : model_(std::move(model)), options_(std::move(options)), conn_(options_.nats, "sluice worker") {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    host_ = host;
    name_ = options_.name.empty() ? fmt::format("{}-{}", host_, ::getpid()) : options_.name;
    identity_ = model_identity(model_->info());
    key_ = model_key(identity_);
    options_.calls = std::max(1, options_.calls);
    if (!model_->concurrent_embed()) options_.calls = 1;
    conn_.ensure_streams();
    natsStatus s = natsConnection_Subscribe(&jobs_sub_, conn_.nc(), kJobsSubjects, &Impl::on_job, this);
    if (s != NATS_OK) throw Error(ErrorCode::backend_unavailable, fmt::format("NATS subscribe: {}", status_text(s)));
    listening_since_ = Connection::now_s();
    for (int i = 0; i < options_.calls; ++i) subs_.push_back(pull_subscription());
    std::string why;
    attempts_ = conn_.attempts_bucket(why);
    if (!attempts_) {
      log(fmt::format("worker {}: no {} bucket ({}): a batch that stops workers is given up after {} deliveries, "
                      "whatever else the workers that stopped held",
                      name_, kAttemptsBucket, why, "--nats-max-deliveries"));
    }
    // Fault injection for the tests of docs/scale-out.md ("Testing"): a worker that takes a
    // batch holding this token id dies at once, as one killed for memory would.
    if (const char* fault = std::getenv("SLUICE_WORKER_DIE_ON_TOKEN"); fault && *fault) {
      die_on_token_ = std::strtoll(fault, nullptr, 10);
    }
  }

  ~Impl() {
    close_subscription(jobs_sub_);  // its handler may run until then
    for (natsSubscription* sub : subs_) natsSubscription_Destroy(sub);
    if (attempts_) kvStore_Destroy(attempts_);
  }

  void log(const std::string& line) {
    if (options_.log) options_.log(line);
  }

  void run() {
    log(fmt::format("worker {}: model {}; {} call(s) at once; serving {} on {}", name_, identity_, options_.calls,
                    work_filter(key_), conn_.url()));
    std::thread keeper([this] { keeper_main(); });
    std::vector<std::thread> threads;
    for (int i = 1; i < options_.calls; ++i) threads.emplace_back([this, i] { pull_main(subs_[i]); });
    pull_main(subs_[0]);
    for (auto& t : threads) t.join();
    {
      std::lock_guard lock(mu_);
      keeper_cv_.notify_all();
    }
    keeper.join();
    send_heartbeat("leaving");
    natsConnection_Flush(conn_.nc());
    const WorkerCounts c = counts();
    log(fmt::format("worker {} stopped: {} batches, {} rows, {} failed, {} dropped", name_, c.batches, c.rows,
                    c.failed, c.dropped));
    if (closed_.load()) {
      throw Error(ErrorCode::backend_unavailable, fmt::format("the connection to {} was closed", conn_.url()));
    }
  }

  void stop() noexcept { stopping_.store(true); }

  WorkerCounts counts() const {
    std::lock_guard lock(mu_);
    return counts_;
  }
  const std::string& name() const noexcept { return name_; }

 private:
  natsSubscription* pull_subscription() {
    const std::string durable = work_consumer(key_), filter = work_filter(key_);
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // The consumer is the model's, shared by every worker: made here only when no run or worker
    // made it yet (a run's settings, --nats-ack-wait, win when it makes it), else used as it is.
    jsConsumerConfig cc = pull_consumer_config(durable, filter, 30);
    // Asked first: the server takes a create of an existing consumer as an update of its
    // settings, which would undo the run's.
    jsConsumerInfo* ci = nullptr;
    natsStatus s =
        conn_.retry([&] { return js_GetConsumerInfo(&ci, conn_.js(), kWorkStream, durable.c_str(), nullptr, &jerr); });
    if (s == NATS_NOT_FOUND) {
      s = conn_.retry([&] { return js_AddConsumer(&ci, conn_.js(), kWorkStream, &cc, nullptr, &jerr); });
    }
    if (ci) jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK && jerr != JSConsumerNameExistErr) {
      throw Error(ErrorCode::backend_unavailable,
                  fmt::format("cannot make the work queue's consumer {} at {}: {}", durable, conn_.url(), status_text(s)));
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kWorkStream;
    so.Consumer = durable.c_str();  // bind to it, whatever its settings
    natsSubscription* sub = nullptr;
    s = conn_.retry([&] { return js_PullSubscribe(&sub, conn_.js(), filter.c_str(), nullptr, nullptr, &so, &jerr); });
    if (s != NATS_OK) {
      throw Error(ErrorCode::backend_unavailable,
                  fmt::format("cannot pull from the work queue {} at {}: {}", durable, conn_.url(), status_text(s)));
    }
    return sub;
  }

  static void on_job(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
    static_cast<Impl*>(self)->job_seen(std::string(message_data(msg)));
    natsMsg_Destroy(msg);
  }

  void job_seen(const std::string& json) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return;
    std::string_view job, key, model;
    if (doc["job"].get(job) != simdjson::SUCCESS || doc["key"].get(key) != simdjson::SUCCESS) return;
    if (doc["model"].get(model) != simdjson::SUCCESS) model = "?";
    bool refuse = false;
    {
      std::lock_guard lock(mu_);
      jobs_[std::string(job)] = Connection::now_s();
      refuse = key != key_ && refused_.emplace(std::string(job), Connection::now_s()).second;
    }
    if (refuse) {
      log(fmt::format("worker {}: refusing run {}: it needs model {}, and this worker has {}; it takes none of that "
                      "run's batches",
                      name_, job, model, identity_));
    }
  }

  // Whether the run that queued a batch is still there: it announces itself every second.
  bool job_alive(const std::string& job) {
    constexpr double kGone = 10;
    std::lock_guard lock(mu_);
    const double now = Connection::now_s();
    // Not heard every run yet: just started, or just back from a lost connection.
    if (conn_.down_s() > 0 || now - std::max(listening_since_, conn_.reconnected_at()) < 3) return true;
    auto it = jobs_.find(job);
    return it != jobs_.end() && now - it->second < kGone;
  }

  // Batches embedded now, and whether one runs alone (Gate).
  struct Gate {
    Impl& self;
    bool alone;
    Gate(Impl& s, bool a) : self(s), alone(a) {
      std::unique_lock lock(self.gate_mu_);
      self.gate_cv_.wait(lock, [&] { return !self.isolated_; });
      if (alone) {
        self.isolated_ = true;
        self.gate_cv_.wait(lock, [&] { return self.running_ == 0; });
      }
      ++self.running_;
    }
    ~Gate() {
      std::lock_guard lock(self.gate_mu_);
      --self.running_;
      if (alone) self.isolated_ = false;
      self.gate_cv_.notify_all();
    }
  };

  void pull_main(natsSubscription* sub) {
    natsStatus last_error = NATS_OK;
    while (!stopping_.load()) {
      {
        // No batch is taken while one runs alone.
        std::unique_lock lock(gate_mu_);
        gate_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return !isolated_; });
        if (isolated_) continue;
      }
      natsMsgList list{};
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus s = natsSubscription_Fetch(&list, sub, 1, 1000, &jerr);
      if (s == NATS_TIMEOUT) continue;
      if (conn_.closed()) {
        // The client gave up on the server for good (no server left to try): a supervisor
        // should start the worker again.
        log(fmt::format("worker {}: the connection to {} is closed: {}", name_, conn_.url(), status_text(s)));
        closed_.store(true);
        stopping_.store(true);
        break;
      }
      if (s != NATS_OK) {
        if (s != last_error) log(fmt::format("worker {}: pulling work: {} (retrying)", name_, status_text(s)));
        last_error = s;
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        continue;
      }
      last_error = NATS_OK;
      for (int i = 0; i < list.Count; ++i) handle(list.Msgs[i]);
      natsMsgList_Destroy(&list);
    }
  }

  void handle(natsMsg* msg) {
    auto header = [&](const char* k) {
      const char* v = nullptr;
      return natsMsgHeader_Get(msg, k, &v) == NATS_OK && v ? std::string(v) : std::string();
    };
    const std::string job = header(kJob), batch_id = header(kBatch);
    std::uint64_t delivered = 1;
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
      delivered = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
    }
    const std::uint64_t max_deliveries = std::max<std::uint64_t>(1, std::strtoull(header(kMaxDeliveries).c_str(), nullptr, 10));
    if (job.empty() || batch_id.empty()) {
      log(fmt::format("worker {}: dropped a message without a run or batch number", name_));
      natsMsg_AckSync(msg, nullptr, nullptr);
      return;
    }
    if (!job_alive(job)) {
      // Its run stopped or was killed: nobody would read the answer. In case it lives after all
      // (cut off from the server for a while), it is told, and sends the batch again.
      {
        std::lock_guard lock(mu_);
        ++counts_.dropped;
      }
      if (publish_answer(job, batch_id, delivered, Outcome::dropped, {})) natsMsg_AckSync(msg, nullptr, nullptr);
      return;
    }
    std::string answer;
    Outcome outcome = Outcome::answered;
    std::uint64_t rows = 0, tokens = 0;
    double busy = 0;
    if (header(kModel) != key_) {
      answer = encode_error(ErrorInfo{ErrorCode::model_error,
                                      fmt::format("worker {} has model {}, not the run's", name_, identity_), {}, {}});
    } else {
      {
        std::lock_guard lock(mu_);
        in_hand_.insert(msg);
      }
      // A batch on its second (or later) delivery may be the one that stopped a worker: it runs
      // alone in this worker, so that if it stops this one too, no other batch shares the blame.
      // A worker's death counts a delivery of every batch it held, even those not begun, so the
      // batch is given up on the count of its runs alone, kept in the attempts bucket, and not
      // on its count of deliveries.
      Gate gate(*this, delivered > 1);
      std::uint64_t runs = 1;
      bool give_up = false;
      if (gate.alone) {
        if (const auto before = count_run_alone(job, batch_id, max_deliveries)) {
          runs = *before + 1;
          give_up = runs >= max_deliveries;
        } else {
          runs = delivered;
          give_up = delivered > max_deliveries;
        }
      }
      if (give_up) {
        outcome = Outcome::abandoned;
        answer = encode_error(ErrorInfo{
            ErrorCode::model_error,
            fmt::format("no worker answered this batch: it ran {} times, alone in its worker after the first, and "
                        "each worker stopped before answering (killed, out of memory?)",
                        runs),
            {},
            {}});
      } else {
        answer = run_batch(msg, rows, tokens, busy);
      }
    }
    // Still in hand (kept in progress) until acknowledged: storing the answer may wait for the
    // server.
    struct Release {
      Impl* self;
      natsMsg* msg;
      ~Release() {
        std::lock_guard lock(self->mu_);
        self->in_hand_.erase(msg);
      }
    } release{this, msg};
    const bool failed = rows == 0;
    if (!publish_answer(job, batch_id, delivered, outcome, answer)) {
      // Not acknowledged: the batch goes to a worker again after the ack wait.
      log(fmt::format("worker {}: could not publish the answer to batch {} of run {}; it will be delivered again",
                      name_, batch_id, job));
      return;
    }
    natsStatus s = conn_.retry([&] { return natsMsg_AckSync(msg, nullptr, nullptr); });
    if (s != NATS_OK) {
      log(fmt::format("worker {}: could not acknowledge batch {} of run {} ({}); its run drops a second answer",
                      name_, batch_id, job, status_text(s)));
    }
    std::lock_guard lock(mu_);
    ++counts_.batches;
    counts_.rows += rows;
    counts_.tokens += tokens;
    counts_.busy_s += busy;
    if (failed) ++counts_.failed;
  }

  // Embeds the batch; the answer is its vectors, or the error that stopped it.
  std::string run_batch(natsMsg* msg, std::uint64_t& rows, std::uint64_t& tokens, double& busy) {
    try {
      const TokenBatch batch = decode_batch(message_data(msg));
      if (die_on_token_ >= 0 &&
          [&] {
            for (std::size_t i = 0; i < batch.ids.size(); ++i) {
              if (batch.attention_mask[i] && batch.ids[i] == die_on_token_) return true;
            }
            return false;
          }()) {
        ::raise(SIGKILL);
      }
      const std::uint32_t dims = model_->info().dimensions;
      std::vector<float> out(std::size_t{batch.batch} * dims);
      const auto t0 = std::chrono::steady_clock::now();
      model_->embed(batch, out);
      busy = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rows = batch.batch;
      for (auto m : batch.attention_mask) tokens += m != 0;
      return encode_vectors(batch.batch, dims, out.data());
    } catch (const Error& e) {
      return encode_error(ErrorInfo{e.code(), e.what(), {}, {}});
    } catch (const std::exception& e) {
      return encode_error(ErrorInfo{ErrorCode::model_error, fmt::format("model inference failed: {}", e.what()), {}, {}});
    }
  }

  // Counts a run alone of a batch in the attempts bucket, unless it ran alone `max - 1` times
  // already (then it is given up). Returns the runs alone before this one; nothing when the
  // bucket cannot be read or written. Only one worker holds a batch at a time (it is kept in
  // progress), so no other writes the count meanwhile.
  std::optional<std::uint64_t> count_run_alone(const std::string& job, const std::string& batch_id,
                                               std::uint64_t max) {
    if (!attempts_) return std::nullopt;
    const std::string key = fmt::format("{}.{}", job, batch_id);
    std::uint64_t before = 0;
    kvEntry* entry = nullptr;
    natsStatus s = conn_.retry([&] { return kvStore_Get(&entry, attempts_, key.c_str()); });
    if (s == NATS_OK) {
      before = std::strtoull(kvEntry_ValueString(entry), nullptr, 10);
      kvEntry_Destroy(entry);
    } else if (s != NATS_NOT_FOUND) {
      log(fmt::format("worker {}: cannot read the runs of batch {} of run {}: {}", name_, batch_id, job,
                      status_text(s)));
      return std::nullopt;
    }
    if (before + 1 >= max) return before;
    const std::string value = std::to_string(before + 1);
    s = conn_.retry([&] { return kvStore_PutString(nullptr, attempts_, key.c_str(), value.c_str()); });
    if (s != NATS_OK) {
      log(fmt::format("worker {}: cannot count a run of batch {} of run {}: {}", name_, batch_id, job,
                      status_text(s)));
      return std::nullopt;
    }
    return before;
  }

  enum class Outcome { answered, abandoned, dropped };

  bool publish_answer(const std::string& job, const std::string& batch_id, std::uint64_t delivered, Outcome outcome,
                      const std::string& answer) {
    const std::string subject = result_subject(job), deliveries = std::to_string(delivered);
    // A "dropped" notice has an id of its own: it must not keep the real answer out.
    const std::string msg_id = outcome == Outcome::dropped ? fmt::format("{}.{}.dropped.{}", job, batch_id, delivered)
                                                           : fmt::format("{}.{}", job, batch_id);
    const natsStatus s = conn_.retry([&] {
      natsMsg* out = nullptr;
      natsStatus st = natsMsg_Create(&out, subject.c_str(), nullptr, answer.data(), static_cast<int>(answer.size()));
      if (st != NATS_OK) return st;
      natsMsgHeader_Set(out, kBatch, batch_id.c_str());
      natsMsgHeader_Set(out, kWorker, name_.c_str());
      natsMsgHeader_Set(out, kDeliveries, deliveries.c_str());
      if (outcome == Outcome::abandoned) natsMsgHeader_Set(out, kAbandoned, "1");
      if (outcome == Outcome::dropped) natsMsgHeader_Set(out, kDropped, "1");
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MsgId = msg_id.c_str();  // a second answer to the batch is stored once
      jsPubAck* ack = nullptr;
      st = js_PublishMsg(&ack, conn_.js(), out, &po, nullptr);
      if (ack) jsPubAck_Destroy(ack);
      natsMsg_Destroy(out);
      return st;
    });
    return s == NATS_OK;
  }

  void send_heartbeat(const char* state) {
    const WorkerCounts c = counts();
    std::string json = "{\"worker\":";
    json::append_string(json, name_);
    json += ",\"host\":";
    json::append_string(json, host_);
    json += ",\"key\":";
    json::append_string(json, key_);
    json += ",\"model\":";
    json::append_string(json, identity_);
    json += ",\"state\":";
    json::append_string(json, state);
    json += fmt::format(",\"calls\":{},\"threads\":{},\"batches\":{},\"rows\":{},\"tokens\":{},\"busy_s\":{:.6f}}}",
                        options_.calls, options_.threads, c.batches, c.rows, c.tokens, c.busy_s);
    const std::string subject = workers_subject(key_, name_);
    natsConnection_Publish(conn_.nc(), subject.c_str(), json.data(), static_cast<int>(json.size()));
  }

  void keeper_main() {
    // Batches in hand are said in progress 4 times a second (an ack wait of 2 s, the least a run
    // allows, keeps them); the heartbeat goes every second.
    std::unique_lock lock(mu_);
    for (unsigned tick = 0; !stopping_.load() || !in_hand_.empty(); ++tick) {
      for (natsMsg* m : in_hand_) natsMsg_InProgress(m, nullptr);
      if (tick % 4 == 0) {
        // Runs not heard from for an hour are forgotten (a worker may serve runs for months).
        const double now = Connection::now_s();
        std::erase_if(jobs_, [now](const auto& j) { return now - j.second > 3600; });
        std::erase_if(refused_, [now](const auto& j) { return now - j.second > 3600; });
        lock.unlock();
        send_heartbeat("up");
        lock.lock();
      }
      keeper_cv_.wait_for(lock, std::chrono::milliseconds(250));
    }
  }

  std::shared_ptr<Model> model_;
  WorkerOptions options_;
  Connection conn_;
  std::string host_, name_, identity_, key_;
  natsSubscription* jobs_sub_ = nullptr;
  std::vector<natsSubscription*> subs_;
  double listening_since_ = 0;
  long long die_on_token_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  int running_ = 0;        // batches being embedded; guarded by gate_mu_
  bool isolated_ = false;  // one runs alone; guarded by gate_mu_
  kvStore* attempts_ = nullptr;  // runs alone of each batch given again; null: not to be had

  mutable std::mutex mu_;
  std::condition_variable keeper_cv_;
  WorkerCounts counts_;                // guarded by mu_
  std::map<std::string, double> jobs_;  // run -> when last announced; guarded by mu_
  std::map<std::string, double> refused_;  // runs of another model, when refused; guarded by mu_
  std::set<natsMsg*> in_hand_;          // guarded by mu_
};

NatsWorker::NatsWorker(std::shared_ptr<Model> model, WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {}
NatsWorker::~NatsWorker() = default;
void NatsWorker::run() { impl_->run(); }
void NatsWorker::stop() noexcept { impl_->stop(); }
WorkerCounts NatsWorker::counts() const { return impl_->counts(); }
const std::string& NatsWorker::name() const noexcept { return impl_->name(); }

}  // namespace sluice
