#include "nats_common.hpp"

#include <cstdlib>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include <sluice/pipeline.hpp>

#include "io/sha256.hpp"

namespace sluice {

std::string redact_nats_url(std::string_view url) {
  // Each comma-separated URL: scheme://user:password@host -> scheme://***@host.
  std::string out;
  std::size_t start = 0;
  while (start <= url.size()) {
    std::size_t end = url.find(',', start);
    if (end == std::string_view::npos) end = url.size();
    std::string_view one = url.substr(start, end - start);
    const std::size_t scheme = one.find("://");
    const std::size_t host_from = scheme == std::string_view::npos ? 0 : scheme + 3;
    // The user info ends at the last '@' (as the client library reads it): a password may hold '@'.
    std::size_t at = one.rfind('@');
    if (at != std::string_view::npos && at < host_from) at = std::string_view::npos;
    if (!out.empty() || start > 0) out += ',';
    if (at != std::string_view::npos) {
      out += one.substr(0, host_from);
      out += "***";
      out += one.substr(at);
    } else {
      out += one;
    }
    if (end == url.size()) break;
    start = end + 1;
  }
  return out;
}

namespace nats_wire {

std::string model_key(std::string_view identity) { return sha256_hex(identity).substr(0, 16); }
std::string work_subject(std::string_view key, std::string_view job) {
  return fmt::format("sluice.work.{}.{}", key, job);
}
std::string work_filter(std::string_view key) { return fmt::format("sluice.work.{}.>", key); }
std::string work_consumer(std::string_view key) { return fmt::format("sluice-workers-{}", key); }
std::string result_subject(std::string_view job) { return fmt::format("sluice.result.{}", job); }
std::string result_consumer(std::string_view job) { return fmt::format("sluice-run-{}", job); }
std::string workers_subject(std::string_view key, std::string_view worker) {
  return fmt::format("sluice.workers.{}.{}", key, subject_token(worker));
}
std::string jobs_subject(std::string_view job) { return fmt::format("sluice.jobs.{}", job); }

std::string subject_token(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    out += keep ? c : '_';
  }
  return out.empty() ? "_" : out;
}

std::string random_hex(int digits) {
  std::random_device rd;
  std::string out;
  while (static_cast<int>(out.size()) < digits) out += fmt::format("{:08x}", rd());
  return out.substr(0, static_cast<std::size_t>(digits));
}

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  out.append(b, 4);
}
void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v));
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
}

struct Reader {
  std::string_view data;
  std::size_t at = 0;
  [[noreturn]] static void bad(const char* what) {
    throw Error(ErrorCode::model_error, fmt::format("malformed message on the NATS queue: {}", what));
  }
  std::uint32_t u32() {
    if (data.size() - at < 4) bad("it ends early");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(data[at + i])} << (8 * i);
    at += 4;
    return v;
  }
  std::uint64_t u64() {
    const std::uint64_t lo = u32();
    return lo | (std::uint64_t{u32()} << 32);
  }
  std::string_view bytes(std::size_t n) {
    if (data.size() - at < n) bad("it ends early");
    std::string_view v = data.substr(at, n);
    at += n;
    return v;
  }
  void magic(std::string_view m) {
    if (bytes(4) != m) bad("unknown format (a sluice of another version?)");
  }
};

}  // namespace

std::size_t batch_bytes_bound(std::size_t rows, std::size_t seq_len) {
  return 24 + rows * 8 + rows * seq_len * 8;
}

std::string encode_batch(const TokenBatch& b) {
  std::string out;
  const std::size_t n = std::size_t{b.batch} * b.seq_len;
  bool types = false;
  for (std::size_t i = 0; i < n && !types; ++i) types = b.type_ids.size() == n && b.attention_mask[i] && b.type_ids[i] != 0;
  const bool prompts = !b.prompt_tokens.empty();
  std::vector<std::uint32_t> lengths(b.batch, 0);
  std::int64_t pad = 0;
  for (std::uint32_t r = 0; r < b.batch; ++r) {
    std::uint32_t len = 0;
    while (len < b.seq_len && b.attention_mask[std::size_t{r} * b.seq_len + len]) ++len;
    lengths[r] = len;
    if (len < b.seq_len) pad = b.ids[std::size_t{r} * b.seq_len + len];
  }
  out.reserve(batch_bytes_bound(b.batch, b.seq_len));
  out += "SLW1";
  put_u32(out, b.batch);
  put_u32(out, b.seq_len);
  put_u32(out, (types ? 1u : 0u) | (prompts ? 2u : 0u));
  put_u64(out, static_cast<std::uint64_t>(pad));
  for (std::uint32_t len : lengths) put_u32(out, len);
  for (std::uint32_t r = 0; r < b.batch; ++r) {
    for (std::uint32_t c = 0; c < lengths[r]; ++c) {
      put_u32(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(b.ids[std::size_t{r} * b.seq_len + c])));
    }
  }
  if (types) {
    for (std::uint32_t r = 0; r < b.batch; ++r) {
      for (std::uint32_t c = 0; c < lengths[r]; ++c) {
        put_u32(out, static_cast<std::uint32_t>(b.type_ids[std::size_t{r} * b.seq_len + c]));
      }
    }
  }
  if (prompts) {
    for (std::uint32_t r = 0; r < b.batch; ++r) put_u32(out, b.prompt_tokens[r]);
  }
  return out;
}

TokenBatch decode_batch(std::string_view data) {
  Reader in{data};
  in.magic("SLW1");
  TokenBatch b;
  b.batch = in.u32();
  b.seq_len = in.u32();
  const std::uint32_t flags = in.u32();
  const auto pad = static_cast<std::int64_t>(in.u64());
  if (b.batch == 0 || b.seq_len == 0 || std::uint64_t{b.batch} * b.seq_len > (std::uint64_t{1} << 28)) {
    Reader::bad("the batch's shape is out of range");
  }
  const std::size_t n = std::size_t{b.batch} * b.seq_len;
  if (data.size() < 24 + std::size_t{b.batch} * 4) Reader::bad("it ends early");
  std::vector<std::uint32_t> lengths(b.batch);
  std::size_t total = 0;
  for (auto& len : lengths) {
    len = in.u32();
    if (len == 0 || len > b.seq_len) Reader::bad("a row's length is out of range");
    total += len;
  }
  if (data.size() - in.at < total * 4) Reader::bad("it ends early");
  b.ids.assign(n, pad);
  b.attention_mask.assign(n, 0);
  b.type_ids.assign(n, 0);
  for (std::uint32_t r = 0; r < b.batch; ++r) {
    for (std::uint32_t c = 0; c < lengths[r]; ++c) {
      b.ids[std::size_t{r} * b.seq_len + c] = static_cast<std::int32_t>(in.u32());
      b.attention_mask[std::size_t{r} * b.seq_len + c] = 1;
    }
  }
  if (flags & 1u) {
    for (std::uint32_t r = 0; r < b.batch; ++r) {
      for (std::uint32_t c = 0; c < lengths[r]; ++c) {
        b.type_ids[std::size_t{r} * b.seq_len + c] = static_cast<std::int32_t>(in.u32());
      }
    }
  }
  if (flags & 2u) {
    b.prompt_tokens.resize(b.batch);
    for (auto& p : b.prompt_tokens) p = in.u32();
  }
  if (in.at != data.size()) Reader::bad("it has bytes past its end");
  return b;
}

std::string encode_vectors(std::uint32_t rows, std::uint32_t dims, const float* values) {
  std::string out;
  out.reserve(16 + std::size_t{rows} * dims * 4);
  out += "SLR1";
  put_u32(out, 0);
  put_u32(out, rows);
  put_u32(out, dims);
  static_assert(sizeof(float) == 4);
  for (std::size_t i = 0; i < std::size_t{rows} * dims; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, values + i, 4);
    put_u32(out, bits);
  }
  return out;
}

std::string encode_error(const ErrorInfo& error) {
  std::string out = "SLR1";
  put_u32(out, 1);
  const std::string_view code = error_name(error.code);
  put_u32(out, static_cast<std::uint32_t>(code.size()));
  out += code;
  put_u32(out, static_cast<std::uint32_t>(error.message.size()));
  out += error.message;
  return out;
}

Answer decode_answer(std::string_view data) {
  Reader in{data};
  in.magic("SLR1");
  Answer a;
  const std::uint32_t status = in.u32();
  if (status == 0) {
    a.rows = in.u32();
    a.dims = in.u32();
    const std::uint64_t n = std::uint64_t{a.rows} * a.dims;
    if (n * 4 != data.size() - in.at) Reader::bad("its vectors do not have the size it says");
    a.values.resize(n);
    for (auto& v : a.values) {
      const std::uint32_t bits = in.u32();
      std::memcpy(&v, &bits, 4);
    }
    return a;
  }
  if (status != 1) Reader::bad("unknown answer status");
  ErrorInfo e;
  const std::string_view code = in.bytes(in.u32());
  if (!error_from_name(code, e.code)) e.code = ErrorCode::model_error;
  e.message = std::string(in.bytes(in.u32()));
  a.error = std::move(e);
  return a;
}

jsConsumerConfig pull_consumer_config(const std::string& durable, const std::string& filter, double ack_wait_s) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = durable.c_str();
  cc.FilterSubject = filter.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = static_cast<std::int64_t>(ack_wait_s * 1e9);
  cc.MaxDeliver = -1;
  cc.MaxAckPending = 100000;
  return cc;
}

std::string_view message_data(natsMsg* msg) {
  return {natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))};
}

std::string status_text(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last && *last && text.find(last) == std::string::npos) {
    text += fmt::format(" ({})", last);
  }
  return text;
}

bool Connection::transient(natsStatus s) {
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_NO_RESPONDERS:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
    case NATS_SLOW_CONSUMER:
    case NATS_INSUFFICIENT_BUFFER:
      return true;
    default:
      return false;
  }
}

double Connection::now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The callbacks' closure is a heap copy of the connection's shared_ptr<State>; the closed
// callback, the library's last, releases it.
void Connection::on_disconnected(natsConnection*, void* state) {
  State& st = **static_cast<std::shared_ptr<State>*>(state);
  double expected = 0;
  st.down_since.compare_exchange_strong(expected, now_s());
}

void Connection::on_reconnected(natsConnection*, void* state) {
  State& st = **static_cast<std::shared_ptr<State>*>(state);
  st.reconnected_at.store(now_s());
  st.down_since.store(0);
}

void Connection::on_closed(natsConnection*, void* state) {
  auto* held = static_cast<std::shared_ptr<State>*>(state);
  const std::shared_ptr<State> st = *held;
  delete held;
  std::lock_guard lock(st->mu);
  st->closed = true;
  st->cv.notify_all();
}

bool Connection::connected() const { return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED; }

double Connection::down_s() const {
  const double since = state_->down_since.load();
  return since == 0 ? 0 : now_s() - since;
}

void close_subscription(natsSubscription* sub) {
  if (!sub) return;
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto done = std::make_shared<Done>();
  auto* held = new std::shared_ptr<Done>(done);
  const bool waiting = natsSubscription_SetOnCompleteCB(
                           sub,
                           [](void* p) {
                             auto* h = static_cast<std::shared_ptr<Done>*>(p);
                             const std::shared_ptr<Done> d = *h;
                             delete h;
                             std::lock_guard lock(d->mu);
                             d->done = true;
                             d->cv.notify_all();
                           },
                           held) == NATS_OK;
  if (!waiting) delete held;
  natsSubscription_Unsubscribe(sub);
  if (waiting) {
    std::unique_lock lock(done->mu);
    done->cv.wait_for(lock, std::chrono::seconds(5), [&] { return done->done; });
  }
  natsSubscription_Destroy(sub);
}

Connection::Connection(const NatsOptions& options, const std::string& client_name) : options_(options) {
  natsOptions* opts = nullptr;
  auto fail = [&](natsStatus s, const std::string& what) {
    if (opts) natsOptions_Destroy(opts);
    throw Error(ErrorCode::backend_unavailable, fmt::format("NATS {}: {}", what, status_text(s)));
  };
  natsStatus s = natsOptions_Create(&opts);
  if (s != NATS_OK) fail(s, "options");
  if ((s = natsOptions_SetURL(opts, options.url.c_str())) != NATS_OK) {
    fail(s, fmt::format("server URL {}", redact_nats_url(options.url)));
  }
  natsOptions_SetName(opts, client_name.c_str());
  // Reconnect for ever, every 250 ms: the run gives up by its own timeout instead.
  natsOptions_SetMaxReconnect(opts, -1);
  natsOptions_SetReconnectWait(opts, 250);
  natsOptions_SetReconnectJitter(opts, 100, 1000);
  natsOptions_SetTimeout(opts, 5000);
  if (!options.creds_file.empty() &&
      (s = natsOptions_SetUserCredentialsFromFiles(opts, options.creds_file.c_str(), nullptr)) != NATS_OK) {
    fail(s, fmt::format("credentials file {}", options.creds_file));
  }
  if (!options.tls_key.empty() && options.tls_cert.empty()) {
    natsOptions_Destroy(opts);
    throw Error(ErrorCode::invalid_argument, "a TLS key (--nats-tls-key) needs its certificate (--nats-tls-cert)");
  }
  if (!options.tls_ca.empty() || !options.tls_cert.empty()) {
    if ((s = natsOptions_SetSecure(opts, true)) != NATS_OK) fail(s, "TLS");
    if (!options.tls_ca.empty() && (s = natsOptions_LoadCATrustedCertificates(opts, options.tls_ca.c_str())) != NATS_OK) {
      fail(s, fmt::format("TLS CA file {}", options.tls_ca));
    }
    if (!options.tls_cert.empty() &&
        (s = natsOptions_LoadCertificatesChain(opts, options.tls_cert.c_str(), options.tls_key.c_str())) != NATS_OK) {
      fail(s, fmt::format("TLS certificate {} and key {}", options.tls_cert, options.tls_key));
    }
  }
  const char* user = std::getenv("SLUICE_NATS_USER");
  const char* password = std::getenv("SLUICE_NATS_PASSWORD");
  const char* token = std::getenv("SLUICE_NATS_TOKEN");
  if (user && *user) natsOptions_SetUserInfo(opts, user, password ? password : "");
  if (token && *token) natsOptions_SetToken(opts, token);

  auto* closure = new std::shared_ptr<State>(state_);  // released by on_closed
  natsOptions_SetDisconnectedCB(opts, &Connection::on_disconnected, closure);
  natsOptions_SetReconnectedCB(opts, &Connection::on_reconnected, closure);
  natsOptions_SetClosedCB(opts, &Connection::on_closed, closure);
  s = natsConnection_Connect(&nc_, opts);
  natsOptions_Destroy(opts);
  opts = nullptr;
  if (s != NATS_OK) {
    delete closure;  // no connection: no callback will run
    throw Error(ErrorCode::backend_unavailable,
                fmt::format("cannot connect to the NATS server at {}: {}", redact_nats_url(options.url), status_text(s)));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  if ((s = natsConnection_JetStream(&js_, nc_, &jo)) != NATS_OK) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
    throw Error(ErrorCode::backend_unavailable, fmt::format("NATS JetStream: {}", status_text(s)));
  }
}

Connection::~Connection() {
  if (js_) jsCtx_Destroy(js_);
  if (nc_) {
    if (connected()) natsConnection_FlushTimeout(nc_, 2000);
    natsConnection_Close(nc_);
    // The callbacks run on the library's thread after Close returns; the closed one comes last.
    {
      std::unique_lock lock(state_->mu);
      state_->cv.wait_for(lock, std::chrono::seconds(5), [&] { return state_->closed; });
    }
    natsConnection_Destroy(nc_);
  }
}

void Connection::ensure_streams() const {
  for (const char* name : {kWorkStream, kResultStream}) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // A server without JetStream answers nothing ("no responders"): said after a few seconds,
    // not after the whole --nats-timeout.
    natsStatus s = NATS_OK;
    for (int attempt = 0; attempt < 25; ++attempt) {
      s = js_GetStreamInfo(&si, js_, name, nullptr, &jerr);
      if (s == NATS_OK || !transient(s)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
      continue;
    }
    if (s != NATS_NOT_FOUND) {
      throw Error(ErrorCode::backend_unavailable,
                  fmt::format("NATS JetStream at {} (is the server run with -js?): {}", url(), status_text(s)));
    }
    const std::string subjects = std::string(name == kWorkStream ? "sluice.work.>" : "sluice.result.>");
    const char* list[] = {subjects.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = list;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_WorkQueuePolicy;
    cfg.Storage = js_FileStorage;
    cfg.MaxAge = std::int64_t{24} * 3600 * 1000 * 1000 * 1000;  // what a vanished run left
    s = retry([&] { return js_AddStream(&si, js_, &cfg, nullptr, &jerr); });
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(si);
    } else if (jerr != JSStreamNameExistErr) {
      throw Error(ErrorCode::backend_unavailable,
                  fmt::format("cannot create the JetStream stream {} at {}: {}", name, url(), status_text(s)));
    }
  }
}

kvStore* Connection::attempts_bucket(std::string& why) const {
  kvStore* kv = nullptr;
  natsStatus s = retry([&] { return js_KeyValue(&kv, js_, kAttemptsBucket); });
  if (s == NATS_NOT_FOUND) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = kAttemptsBucket;
    cfg.History = 1;
    cfg.StorageType = js_FileStorage;
    cfg.TTL = std::int64_t{24} * 3600 * 1000 * 1000 * 1000;  // as the work stream keeps batches
    s = retry([&] { return js_CreateKeyValue(&kv, js_, &cfg); });
    // Another worker made it meanwhile.
    if (s != NATS_OK) s = retry([&] { return js_KeyValue(&kv, js_, kAttemptsBucket); });
  }
  if (s != NATS_OK) {
    why = status_text(s);
    return nullptr;
  }
  return kv;
}

}  // namespace nats_wire
}  // namespace sluice
