// The remote backend (sluice/remote.hpp, docs/remote.md): Model::embed as one request to an
// OpenAI-compatible /embeddings, with rate limits and retries.

#include <sluice/remote.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <random>

#include <fmt/format.h>
#include <simdjson.h>

#include <sluice/error.hpp>

#include "core/json_writer.hpp"
#include "http_client.hpp"
#include "io/content_hash.hpp"
#include "remote_parse.hpp"

namespace sluice {

std::string redact_url(const std::string& url) {
  const auto scheme = url.find("://");
  const std::size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  const auto slash = url.find('/', host);
  const auto at = url.rfind('@', slash == std::string::npos ? url.size() : slash);
  if (at == std::string::npos || at < host) return url;
  return url.substr(0, host) + "***" + url.substr(at);
}

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

namespace remote_parse {

std::optional<double> duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total = 0;
  bool any = false;  // a component read before this one
  while (!text.empty()) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value < 0) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    double unit = 1;
    if (text.starts_with("ms")) {
      unit = 1e-3;
      text.remove_prefix(2);
    } else if (text.starts_with("s")) {
      text.remove_prefix(1);
    } else if (text.starts_with("m")) {
      unit = 60;
      text.remove_prefix(1);
    } else if (text.starts_with("h")) {
      unit = 3600;
      text.remove_prefix(1);
    } else if (!text.empty() || total > 0 || any) {
      return std::nullopt;  // a bare number is only valid alone ("2.5")
    }
    total += value * unit;
    any = true;
  }
  return total;
}

std::optional<double> retry_after(const std::string& value, double now) {
  if (value.empty()) return std::nullopt;
  double s = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), s);
  if (ec == std::errc() && end == value.data() + value.size()) {
    return s >= 0 ? std::optional<double>(s) : std::nullopt;
  }
  std::tm tm{};
  const char* rest = strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!rest || *rest != '\0') return std::nullopt;
  return std::max(0.0, static_cast<double>(timegm(&tm)) - now);
}

}  // namespace remote_parse

namespace {

// Requests and tokens a minute: two token buckets that hold a second's worth (so a minute's
// allowance is spread over the minute, as APIs enforce it, and any span of t seconds sees at
// most rate x (t + 1)), plus a pause the server asked for.
class RateLimiter {
 public:
  RateLimiter(double rpm, double tpm)
      : rpm_(rpm), tpm_(tpm), request_cap_(std::max(1.0, rpm / 60)), token_cap_(std::max(1.0, tpm / 60)),
        requests_(request_cap_), tokens_(token_cap_), at_(now_s()) {}

  // Waits until a request of `tokens` may go; returns the seconds waited, or nothing when
  // `cancelled` ended the wait.
  std::optional<double> acquire(double tokens, const std::atomic<bool>& cancelled) {
    std::unique_lock lock(mu_);
    const double start = now_s();
    double release = 0;  // this call's end of a pause
    for (;;) {
      if (cancelled.load()) return std::nullopt;
      refill();
      const double now = now_s();
      // Calls paused together do not all go at the same instant: each adds up to 10 % of the
      // pause it saw, once.
      if (pause_until_ > now && release < pause_until_) release = pause_until_ + 0.1 * jitter_(rng_) * (pause_until_ - now);
      double wait = std::max(0.0, release - now);
      // A request larger than the bucket goes when the bucket is full, and leaves it in debt.
      const double need = tpm_ > 0 ? std::min(tokens, token_cap_) : 0;
      if (rpm_ > 0 && requests_ < 1) wait = std::max(wait, (1 - requests_) * 60 / rpm_);
      if (tpm_ > 0 && tokens_ < need) wait = std::max(wait, (need - tokens_) * 60 / tpm_);
      if (wait <= 0) {
        if (rpm_ > 0) requests_ -= 1;
        if (tpm_ > 0) tokens_ -= tokens;
        return now_s() - start;
      }
      cv_.wait_for(lock, std::chrono::duration<double>(std::min(wait, 0.5)));
    }
  }
  // The answer's usage differed from the estimate.
  void settle(double difference) {
    std::lock_guard lock(mu_);
    if (tpm_ > 0) tokens_ -= difference;
  }
  void pause_for(double seconds) {
    std::lock_guard lock(mu_);
    pause_until_ = std::max(pause_until_, now_s() + seconds);
  }
  void wake() { cv_.notify_all(); }

 private:
  void refill() {
    const double now = now_s();
    const double dt = now - at_;
    at_ = now;
    if (rpm_ > 0) requests_ = std::min(request_cap_, requests_ + dt * rpm_ / 60);
    if (tpm_ > 0) tokens_ = std::min(token_cap_, tokens_ + dt * tpm_ / 60);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  double rpm_, tpm_;
  double request_cap_, token_cap_;
  double requests_, tokens_;  // guarded by mu_
  double at_;                 // guarded by mu_
  double pause_until_ = 0;    // guarded by mu_
  std::mt19937_64 rng_{std::random_device{}()};             // guarded by mu_
  std::uniform_real_distribution<double> jitter_{0.0, 1.0};  // guarded by mu_
};

class EstimatingTokenizer final : public Tokenizer {
 public:
  explicit EstimatingTokenizer(double bytes_per_token) : per_(std::max(1.0, bytes_per_token)) {}
  Encoding encode(std::string_view text, bool) const override {
    Encoding e;
    const std::size_t n = count(text);
    e.ids.assign(n, 0);
    e.type_ids.assign(n, 0);
    // One range per estimated token, over the whole text (the text is never cut).
    e.offsets.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      e.offsets[i] = {static_cast<std::uint32_t>(std::min<double>(text.size(), i * per_)),
                      static_cast<std::uint32_t>(std::min<double>(text.size(), (i + 1) * per_))};
    }
    e.untruncated_length = n;
    return e;
  }
  std::vector<Encoding> encode_windows(std::string_view text, std::size_t, std::size_t) const override {
    return {encode(text, true)};
  }
  std::size_t count_tokens(std::string_view text, bool) const override { return count(text); }
  void set_max_length(std::size_t) override {}
  std::optional<std::size_t> max_length() const override { return std::nullopt; }
  std::size_t vocab_size() const override { return 1; }
  std::optional<std::int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::optional<std::string> id_to_token(std::int32_t) const override { return std::nullopt; }
  std::int32_t pad_id() const override { return 0; }

 private:
  std::size_t count(std::string_view text) const {
    return static_cast<std::size_t>(std::ceil(static_cast<double>(text.size()) / per_));
  }
  double per_;
};

// The longest wait the backend takes from a server (Retry-After, a rate-limit reset) or its
// own backoff.
constexpr double kMaxWait_s = 60;

class RemoteModel final : public Model {
 public:
  explicit RemoteModel(RemoteOptions options) : options_(std::move(options)), limiter_(options_.requests_per_minute, options_.tokens_per_minute) {
    std::string base = options_.url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    endpoint_ = base + "/embeddings";
    headers_.push_back("Content-Type: application/json");
    headers_.push_back("Accept: application/json");
    if (!options_.api_key.empty()) headers_.push_back("Authorization: Bearer " + options_.api_key);
    std::string tokens = fmt::format("estimated at {} bytes a token", options_.bytes_per_token);
    if (!options_.tokenizer_file.empty()) {
      ContentHash hash;
      std::error_code ec;
      const auto size = std::filesystem::file_size(options_.tokenizer_file, ec);
      const std::string err = ec ? "cannot read its size" : hash_file_to(options_.tokenizer_file.string(), size, hash);
      if (!err.empty()) {
        throw Error(ErrorCode::invalid_model, fmt::format("{}: {}", options_.tokenizer_file.string(), err));
      }
      tokens = fmt::format("counted by tokenizer.json {}", hash.hex());
    }
    info_.family = fmt::format("remote {} model \"{}\", tokens {}", redact_url(endpoint_), options_.model, tokens);
    info_.backend = fmt::format("the remote API {} (model \"{}\")", redact_url(endpoint_), options_.model);
    info_.max_tokens = options_.max_input_tokens;
    info_.pooling = Pooling::mean;
    info_.dimensions = options_.dimensions;
    if (info_.dimensions == 0) probe();
  }

  const ModelInfo& info() const override { return info_; }
  bool concurrent_embed() const noexcept override { return true; }
  int calls_in_flight() const noexcept override { return std::max(1, options_.concurrency); }
  bool wants_texts() const noexcept override { return true; }

  void interrupt() noexcept override {
    interrupted_.store(true);
    limiter_.wake();
    client_.cancel_waits();
    std::lock_guard lock(sleep_mu_);
    sleep_cv_.notify_all();
  }

  void set_event_sink(std::function<void(EventPayload)> post) override {
    std::lock_guard lock(events_mu_);
    if (!post && post_) post_(usage());  // the run's last word on what it cost
    post_ = std::move(post);
    if (post_) {
      // A new run: its own counts, and not interrupted.
      interrupted_.store(false);
      requests_ = retries_ = inputs_ = billed_ = 0;
      throttled_us_ = 0;
      last_usage_ = now_s();
    }
  }

  void embed(const TokenBatch& batch, std::span<float> out) override {
    if (batch.texts.size() != batch.batch) {
      throw Error(ErrorCode::internal, "the remote backend needs the texts of a batch (TokenBatch::texts)");
    }
    std::uint64_t estimate = 0;
    for (auto m : batch.attention_mask) estimate += m != 0;
    const std::uint64_t billed = call(request_body(batch.texts), batch.batch, estimate, out.data());
    inputs_ += batch.batch;
    billed_ += billed;
    maybe_post_usage();
  }

 private:
  RemoteUsage usage() const {
    return RemoteUsage{requests_.load(), retries_.load(), inputs_.load(), billed_.load(), throttled_us_.load() / 1e6};
  }

  void maybe_post_usage() {
    std::lock_guard lock(events_mu_);
    if (!post_ || now_s() - last_usage_ < 2) return;
    last_usage_ = now_s();
    post_(usage());
  }

  void post(EventPayload e) {
    std::lock_guard lock(events_mu_);
    if (post_) post_(std::move(e));
  }

  // {"model":...,"input":[texts...],"encoding_format":"float"}
  std::string request_body(std::span<const std::string_view> texts) const {
    std::string body = "{\"model\":";
    json::append_string(body, options_.model);
    body += ",\"input\":[";
    for (std::size_t i = 0; i < texts.size(); ++i) {
      if (i) body += ',';
      json::append_string(body, texts[i]);
    }
    body += "],\"encoding_format\":\"float\"}";
    return body;
  }

  void probe() {
    const std::string_view text = "dimension probe";
    std::vector<float> v;
    call(request_body({&text, 1}), 1, 4, nullptr, &v);
    info_.dimensions = static_cast<std::uint32_t>(v.size());
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    info_.normalize = std::abs(std::sqrt(norm) - 1) < 1e-3;
    requests_ = retries_ = inputs_ = billed_ = 0;
  }

  // Sleeps `seconds` unless interrupted; returns false when interrupted.
  bool sleep(double seconds) {
    std::unique_lock lock(sleep_mu_);
    return !sleep_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return interrupted_.load(); });
  }

  [[noreturn]] void cancelled() { throw Error(ErrorCode::cancelled, "the run was stopped"); }

  // One call, with its retries. Writes `rows` vectors to `out` (or the single probe vector to
  // `probe_out`). Returns the tokens billed.
  std::uint64_t call(const std::string& body, std::uint32_t rows, std::uint64_t estimate, float* out,
                     std::vector<float>* probe_out = nullptr) {
    const double first = now_s();
    double backoff = options_.backoff_s;
    thread_local std::mt19937_64 rng{std::random_device{}()};
    for (std::uint32_t attempt = 1;; ++attempt) {
      if (interrupted_.load()) cancelled();
      const auto waited = limiter_.acquire(static_cast<double>(estimate), interrupted_);
      if (!waited) cancelled();
      throttled_us_ += static_cast<std::uint64_t>(*waited * 1e6);
      remote_http::Request req{endpoint_, body, headers_, options_.timeout_s};
      remote_http::Response res;
      ++requests_;
      if (!client_.perform(req, res, interrupted_)) cancelled();
      note_rate_headers(res);
      std::string why;
      std::optional<double> server_wait;
      if (res.status == 200) {
        std::uint64_t billed = 0;
        if (read_answer(res.body, rows, out, probe_out, billed, why)) {
          if (billed == 0) billed = estimate;
          limiter_.settle(static_cast<double>(billed) - static_cast<double>(estimate));
          return billed;
        }
      } else if (res.status == 0) {
        why = res.timed_out ? fmt::format("no answer in {} s", options_.timeout_s) : fmt::format("no answer: {}", res.error);
      } else if (res.status == 429 || res.status == 408 || res.status == 409 || res.status >= 500) {
        why = fmt::format("HTTP {}{}", res.status, api_message(res.body));
        if (auto it = res.headers.find("retry-after"); it != res.headers.end()) {
          server_wait = remote_parse::retry_after(it->second, static_cast<double>(std::time(nullptr)));
        }
        if (server_wait) server_wait = std::min(*server_wait, kMaxWait_s);
        if (res.status == 429) {
          // Every call waits, not only this one: the server said the client goes too fast.
          limiter_.pause_for(server_wait.value_or(std::clamp(backoff, 1.0, kMaxWait_s)));
        }
      } else if (res.status == 401 || res.status == 403 || res.status == 404 || res.status == 405) {
        throw Error(ErrorCode::backend_unavailable,
                    fmt::format("the API at {} refused the request with HTTP {}{} ({})", redact_url(endpoint_),
                                res.status, api_message(res.body),
                                res.status == 404 || res.status == 405 ? "is the URL right, with its /v1, and the model name?"
                                                                       : "is the API key right, and allowed this model?"));
      } else {
        // 400, 413, 422...: this batch will never pass; the pipeline tries its records alone.
        throw Error(ErrorCode::model_error, fmt::format("the API refused the input with HTTP {}{}", res.status,
                                                        api_message(res.body)));
      }
      const double elapsed = now_s() - first;
      if (attempt > static_cast<std::uint32_t>(options_.max_retries) || elapsed > options_.max_retry_s) {
        throw Error(ErrorCode::backend_unavailable,
                    fmt::format("the API at {} failed {} time(s) in {:.0f} s; the last: {}", redact_url(endpoint_),
                                attempt, elapsed, why));
      }
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      double wait = server_wait.value_or(std::min(kMaxWait_s, backoff) * jitter(rng));
      wait = std::min(wait, std::max(0.0, options_.max_retry_s - elapsed));
      backoff *= 2;
      ++retries_;
      if (res.status == 429) throttled_us_ += static_cast<std::uint64_t>(wait * 1e6);  // the server's limit
      post(RemoteRetry{attempt, static_cast<std::uint32_t>(res.status), why, wait});
      if (!sleep(wait)) cancelled();
    }
  }

  // The x-ratelimit-* headers: at none left, calls wait for the reset.
  void note_rate_headers(const remote_http::Response& res) {
    auto header = [&](const char* name) -> std::string {
      auto it = res.headers.find(name);
      return it == res.headers.end() ? std::string() : it->second;
    };
    for (const auto& [remaining, reset] : {std::pair{"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"},
                                           std::pair{"x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}}) {
      const std::string left = header(remaining);
      if (left.empty() || std::strtod(left.c_str(), nullptr) > 0) continue;
      if (auto s = remote_parse::duration(header(reset))) limiter_.pause_for(std::min(*s, kMaxWait_s));
    }
  }

  static std::string api_message(const std::string& body) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::string_view message;
    if (parser.parse(body).get(doc) == simdjson::SUCCESS) {
      if (doc["error"]["message"].get(message) == simdjson::SUCCESS ||
          doc["error"].get(message) == simdjson::SUCCESS || doc["message"].get(message) == simdjson::SUCCESS) {
        return fmt::format(": {}", message.substr(0, 500));
      }
    }
    if (body.empty()) return {};
    return fmt::format(": {}", body.substr(0, 200));
  }

  bool read_answer(const std::string& body, std::uint32_t rows, float* out, std::vector<float>* probe_out,
                   std::uint64_t& billed, std::string& why) {
    if (probe_out) probe_out->clear();  // nothing kept from an answer read before
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (auto err = parser.parse(body).get(doc); err) {
      why = fmt::format("the answer is not JSON ({})", simdjson::error_message(err));
      return false;
    }
    simdjson::dom::array data;
    if (doc["data"].get(data) != simdjson::SUCCESS) {
      why = "the answer has no \"data\" array";
      return false;
    }
    if (data.size() != rows) {
      why = fmt::format("the answer has {} vectors for {} inputs", data.size(), rows);
      return false;
    }
    std::vector<bool> seen(rows, false);
    std::size_t position = 0;
    const std::size_t dims = info_.dimensions;
    for (simdjson::dom::element item : data) {
      std::uint64_t index = position;
      std::int64_t given = 0;
      if (item["index"].get(given) == simdjson::SUCCESS) index = static_cast<std::uint64_t>(given);
      ++position;
      if (given < 0 || index >= rows || seen[index]) {
        why = fmt::format("the answer's \"index\" {} is out of range or repeated", given);
        return false;
      }
      seen[index] = true;
      simdjson::dom::array values;
      if (item["embedding"].get(values) != simdjson::SUCCESS) {
        why = "an answer's \"embedding\" is not an array of numbers";
        return false;
      }
      if (probe_out) {
        // The probe learns the size from its one vector.
        probe_out->resize(values.size());
      } else if (values.size() != dims) {
        // Not a glitch that a retry mends: the API gives vectors of another size.
        throw Error(ErrorCode::backend_unavailable,
                    fmt::format("the API at {} answered vectors of {} values, and this run has {} (its first answer, "
                                "or --remote-dimensions): is it the same model?",
                                redact_url(endpoint_), values.size(), dims));
      }
      float* dst = probe_out ? probe_out->data() : out + index * dims;
      std::size_t k = 0;
      for (simdjson::dom::element v : values) {
        double x = 0;
        if (v.get(x) != simdjson::SUCCESS || !std::isfinite(x)) {
          why = "an answer's \"embedding\" holds something other than finite numbers";
          return false;
        }
        dst[k++] = static_cast<float>(x);
      }
    }
    if (probe_out && probe_out->empty()) {
      why = "the answer's vector is empty";
      return false;
    }
    std::uint64_t total = 0;
    if (doc["usage"]["total_tokens"].get(total) == simdjson::SUCCESS ||
        doc["usage"]["prompt_tokens"].get(total) == simdjson::SUCCESS) {
      billed = total;
    }
    return true;
  }

  RemoteOptions options_;
  std::string endpoint_;
  std::vector<std::string> headers_;
  ModelInfo info_;
  RateLimiter limiter_;
  remote_http::Client client_;
  std::atomic<bool> interrupted_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::mutex events_mu_;
  std::function<void(EventPayload)> post_;  // guarded by events_mu_
  double last_usage_ = 0;                   // guarded by events_mu_
  std::atomic<std::uint64_t> requests_{0}, retries_{0}, inputs_{0}, billed_{0}, throttled_us_{0};
};

}  // namespace

std::shared_ptr<Model> connect_remote_model(const RemoteOptions& options) {
  if (options.url.empty()) throw Error(ErrorCode::invalid_argument, "the remote API needs a URL");
  if (options.url.rfind("http://", 0) != 0 && options.url.rfind("https://", 0) != 0) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("the remote URL {} must start with http:// or https://", redact_url(options.url)));
  }
  if (options.model.empty()) throw Error(ErrorCode::invalid_argument, "the remote API needs a model name");
  if (options.concurrency < 1) throw Error(ErrorCode::invalid_argument, "remote concurrency must be at least 1");
  return std::make_shared<RemoteModel>(options);
}

std::unique_ptr<Tokenizer> make_estimating_tokenizer(double bytes_per_token) {
  return std::make_unique<EstimatingTokenizer>(bytes_per_token);
}

}  // namespace sluice
