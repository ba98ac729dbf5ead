// The embedding server (sluice/serve.hpp, docs/serve.md): routes, the OpenAI request and
// answer, the tokenizer thread, and the dynamic batcher that the inference threads share.

#include <sluice/serve.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <array>
#include <map>
#include <unordered_map>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>
#include <uv.h>

#include <sluice/error.hpp>
#include <sluice/pipeline.hpp>

#include "core/json_writer.hpp"
#include "engine/batch_plan.hpp"
#include "http.hpp"
#include "io/output_format.hpp"

namespace sluice {

namespace {

// One /v1/embeddings call, from its parsing on the loop to its answer.
struct Call {
  std::uint64_t connection = 0;  // http::Server::find() it to answer
  double started = 0;
  std::vector<std::string> texts;  // until tokenised
  std::size_t inputs = 0;
  bool base64 = false;
  bool truncate = false;
  std::size_t keep = 0;  // dimensions answered
  std::vector<float> vectors;  // inputs x keep, written by the inference threads (disjoint rows)
  std::atomic<std::size_t> remaining{0};  // rows not yet embedded (or dropped)
  std::atomic<std::uint64_t> tokens{0};
  std::atomic<bool> cancelled{false};  // failed, or its client went away: its queued rows are dropped
  std::mutex mu;
  int status = 0;             // guarded by mu: the failure's status (0: none)
  std::string error_message;  // guarded by mu
  std::string error_type;     // guarded by mu
  http::Response response;    // made by the thread that finishes the call
};

struct Row {
  std::shared_ptr<Call> call;
  std::uint32_t index = 0;
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
};

http::Response error_response(int status, std::string_view message, std::string_view type = "invalid_request_error",
                              std::string_view code = {}) {
  http::Response r;
  r.status = status;
  r.body = http::error_json(message, type, code);
  return r;
}

}  // namespace

class EmbeddingServer::Impl {
 public:
  Impl(std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer, ServeOptions options)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
    if (model_->wants_texts()) {
      throw Error(ErrorCode::invalid_argument, "the server embeds with a model in this process, not a remote API");
    }
    const ModelInfo& info = model_->info();
    dims_ = info.dimensions;
    normalize_ = info.normalize;
    if (options_.model_name.empty()) options_.model_name = info.dir.filename().string();
    if (options_.model_name.empty()) options_.model_name = info.dir.parent_path().filename().string();
    const std::size_t cap = tokenizer_->max_length() ? std::min<std::size_t>(*tokenizer_->max_length(), info.max_tokens)
                                                     : info.max_tokens;
    tokenizer_->set_max_length(cap);
    max_tokens_ = cap;
    pad_ = tokenizer_->pad_id();
    const ThreadLayout layout = model_thread_layout(options_.threads, options_.model_workers, model_->concurrent_embed());
    workers_ = model_->concurrent_embed() ? std::max(1, layout.workers) : 1;
    limits_.batch_size = std::max<std::size_t>(1, options_.batch_size);
    limits_.max_batch_tokens = options_.max_batch_tokens;

    uv_loop_init(&loop_);
    uv_async_init(&loop_, &wake_, &Impl::on_wake);
    wake_.data = this;
    http::Limits hl;
    hl.max_body_bytes = options_.max_request_bytes;
    hl.max_pending_bytes = options_.max_pending_bytes;
    hl.max_connections = options_.max_connections;
    hl.idle_timeout_s = options_.idle_timeout_s;
    hl.request_timeout_s = options_.request_timeout_s;
    http_ = std::make_unique<http::Server>(&loop_, hl, [this](http::Connection& c, http::Request& r) { route(c, r); });
    // A client that leaves while its call waits: the call's rows still queued are dropped.
    http_->on_close = [this](std::uint64_t id) {
      auto it = active_.find(id);
      if (it == active_.end()) return;
      if (auto call = it->second.lock()) call->cancelled.store(true);
    };
    // Requests refused while being read (a limit passed) are answered by http.cpp.
    http_->on_refused = [this](std::string_view path, int status) {
      count(path == "/v1/embeddings" || path == "/embeddings" ? "/v1/embeddings" : "other", status);
      if (status == 429) ++rejected_;
    };
    try {
      port_ = http_->listen(options_.host, options_.port);
    } catch (...) {
      // Every handle closed, and the loop run until they are, before the server that holds
      // them goes.
      http_->drain([] {});
      uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
      uv_run(&loop_, UV_RUN_DEFAULT);
      http_.reset();
      uv_loop_close(&loop_);
      throw;
    }
  }

  ~Impl() {
    if (!ran_) {
      // Never run: close what the constructor opened.
      http_->drain([] {});
      uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
      uv_run(&loop_, UV_RUN_DEFAULT);
    }
    http_.reset();
    uv_loop_close(&loop_);
  }

  int port() const noexcept { return port_; }

  void run() {
    ran_ = true;
    threads_.emplace_back([this] { tokenizer_main(); });
    for (int i = 0; i < workers_; ++i) threads_.emplace_back([this] { inference_main(); });
    if (stop_requested_.load()) uv_async_send(&wake_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    {
      std::lock_guard lock(mu_);
      threads_stop_ = true;
    }
    tok_cv_.notify_all();
    rows_cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void stop() noexcept {
    stop_requested_.store(true);
    uv_async_send(&wake_);
  }

  ServeCounts counts() const {
    ServeCounts c;
    c.requests = requests_.load();
    c.ok = ok_.load();
    c.rejected = rejected_.load();
    c.inputs = inputs_.load();
    c.tokens = tokens_.load();
    c.batches = batches_.load();
    return c;
  }

 private:
  // ---- the loop thread ----

  static void on_wake(uv_async_t* h) {
    auto* self = static_cast<Impl*>(h->data);
    std::vector<std::shared_ptr<Call>> done;
    {
      std::lock_guard lock(self->mu_);
      done.swap(self->done_);
    }
    for (auto& call : done) self->answer(*call);
    if (self->stop_requested_.load() && !self->http_->draining()) self->begin_drain();
    self->maybe_end();
  }

  void begin_drain() {
    http_->drain([this] { maybe_end(); });
  }

  void maybe_end() {
    if (!http_->draining() || http_->connections() > 0 || in_flight_ > 0 || ended_) return;
    ended_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
  }

  void count(std::string_view path, int status) {
    ++requests_;
    ++by_status_[{std::string(path), status}];
  }

  void send(http::Connection& c, std::string_view path, http::Response r) {
    count(path, r.status);
    if (r.status == 429) ++rejected_;
    c.respond(std::move(r));
  }

  void route(http::Connection& c, http::Request& r) {
    // Answers to a refused request (a limit passed while reading) come from http.cpp; counted here.
    const bool embeddings = r.path == "/v1/embeddings" || r.path == "/embeddings";
    if (embeddings) {
      if (r.method != HTTP_POST) {
        http::Response res = error_response(405, "use POST for /v1/embeddings");
        res.headers.emplace_back("Allow", "POST");
        return send(c, "/v1/embeddings", std::move(res));
      }
      return embed(c, r);
    }
    const bool known = r.path == "/health" || r.path == "/metrics" || r.path == "/v1/models" || r.path == "/models";
    if (known && r.method != HTTP_GET && r.method != HTTP_HEAD) {
      http::Response res = error_response(405, fmt::format("use GET for {}", r.path));
      res.headers.emplace_back("Allow", "GET, HEAD");
      return send(c, r.path, std::move(res));
    }
    http::Response res;
    if (r.path == "/health") {
      res.body = fmt::format("{{\"status\":\"ok\",\"model\":{},\"dimensions\":{},\"max_tokens\":{}}}",
                             quoted(options_.model_name), dims_, max_tokens_);
    } else if (r.path == "/metrics") {
      res.content_type = "text/plain; version=0.0.4; charset=utf-8";
      res.body = metrics();
    } else if (r.path == "/v1/models" || r.path == "/models") {
      res.body = fmt::format("{{\"object\":\"list\",\"data\":[{{\"id\":{},\"object\":\"model\",\"created\":0,"
                             "\"owned_by\":\"sluice\"}}]}}",
                             quoted(options_.model_name));
    } else {
      return send(c, "other", error_response(404, fmt::format("no route {}: this server answers POST /v1/embeddings, "
                                                              "GET /health, GET /metrics and GET /v1/models",
                                                              r.path.substr(0, 200))));
    }
    res.head = r.method == HTTP_HEAD;
    send(c, r.path, std::move(res));
  }

  static std::string quoted(std::string_view s) {
    std::string out;
    json::append_string(out, s);
    return out;
  }

  void embed(http::Connection& c, http::Request& r) {
    const std::string_view path = "/v1/embeddings";
    simdjson::dom::element doc;
    if (const auto err = parser_.parse(r.body).get(doc); err) {
      return send(c, path, error_response(400, fmt::format("the body is not valid JSON: {}", simdjson::error_message(err))));
    }
    if (!doc.is_object()) return send(c, path, error_response(400, "the body must be a JSON object"));
    auto call = std::make_shared<Call>();
    call->connection = c.id();
    call->started = http::Server::now_s();
    call->truncate = options_.truncate;
    call->keep = dims_;
    simdjson::dom::element input;
    if (doc["input"].get(input) != simdjson::SUCCESS) {
      return send(c, path, error_response(400, "'input' is missing: give a string or an array of strings"));
    }
    auto bad_input = [&](std::string_view why) { send(c, path, error_response(400, why)); };
    std::string_view one;
    simdjson::dom::array many;
    if (input.get(one) == simdjson::SUCCESS) {
      call->texts.emplace_back(one);
    } else if (input.get(many) == simdjson::SUCCESS) {
      if (many.size() > options_.max_inputs) {
        return bad_input(fmt::format("'input' has {} items; this server takes at most {} (--max-inputs)", many.size(),
                                     options_.max_inputs));
      }
      std::size_t i = 0;
      for (simdjson::dom::element e : many) {
        std::string_view text;
        if (e.get(text) != simdjson::SUCCESS) {
          return bad_input(fmt::format("'input'[{}] is not a string: this server takes text, not token ids", i));
        }
        call->texts.emplace_back(text);
        ++i;
      }
      if (call->texts.empty()) return bad_input("'input' is an empty array");
    } else {
      return bad_input("'input' must be a string or an array of strings");
    }
    for (std::size_t i = 0; i < call->texts.size(); ++i) {
      if (call->texts[i].empty()) {
        return bad_input(call->texts.size() == 1 ? std::string("'input' is an empty string")
                                                 : fmt::format("'input'[{}] is an empty string", i));
      }
    }
    simdjson::dom::element v;
    if (doc["model"].get(v) == simdjson::SUCCESS && !v.is_null()) {
      std::string_view name;
      if (v.get(name) != simdjson::SUCCESS) return bad_input("'model' must be a string");
      if (name != options_.model_name) {
        return send(c, path,
                    error_response(404, fmt::format("the model '{}' is not served here: this server has '{}'",
                                                    std::string(name).substr(0, 200), options_.model_name),
                                   "invalid_request_error", "model_not_found"));
      }
    }
    if (doc["encoding_format"].get(v) == simdjson::SUCCESS && !v.is_null()) {
      std::string_view format;
      if (v.get(format) != simdjson::SUCCESS || (format != "float" && format != "base64")) {
        return bad_input("'encoding_format' must be \"float\" or \"base64\"");
      }
      call->base64 = format == "base64";
    }
    if (doc["dimensions"].get(v) == simdjson::SUCCESS && !v.is_null()) {
      std::int64_t d = 0;
      if (v.get(d) != simdjson::SUCCESS || d < 1 || static_cast<std::uint64_t>(d) > dims_) {
        return bad_input(fmt::format("'dimensions' must be an integer from 1 to {} (the model's)", dims_));
      }
      call->keep = static_cast<std::size_t>(d);
    }
    if (doc["truncate"].get(v) == simdjson::SUCCESS && !v.is_null()) {
      bool t = false;
      if (v.get(t) != simdjson::SUCCESS) return bad_input("'truncate' must be true or false");
      call->truncate = t;
    }
    call->inputs = call->texts.size();
    // The queue bound: inputs accepted and not yet embedded, tokenising included.
    const std::size_t queued = queued_rows_.load();
    if (queued + call->inputs > options_.max_queue_rows) {
      http::Response res =
          error_response(429,
                         fmt::format("the server is busy: {} inputs are waiting for the model and this request adds "
                                     "{} (--max-queue-rows {}); retry after a second",
                                     queued, call->inputs, options_.max_queue_rows),
                         "rate_limit_error");
      res.headers.emplace_back("Retry-After", "1");
      return send(c, path, std::move(res));
    }
    queued_rows_ += call->inputs;
    call->remaining.store(call->inputs);
    ++in_flight_;
    active_[c.id()] = call;
    {
      std::lock_guard lock(mu_);
      to_tokenize_.push_back(std::move(call));
    }
    tok_cv_.notify_one();
  }

  void answer(Call& call) {
    --in_flight_;
    const int status = call.response.status;
    if (status == 200) {
      ++ok_;
      inputs_ += call.inputs;
      tokens_ += call.tokens.load();
    }
    const double seconds = http::Server::now_s() - call.started;
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      if (seconds <= kBuckets[b]) ++latency_[b];
    }
    ++latency_count_;
    latency_sum_ += seconds;
    active_.erase(call.connection);
    http::Connection* c = http_->find(call.connection);
    if (!c || c->closing()) return;  // its client went away
    count("/v1/embeddings", status);
    c->respond(std::move(call.response));
  }

  std::string metrics() const {
    std::string m;
    auto counter = [&](std::string_view name, std::string_view help, auto value) {
      m += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
    };
    auto gauge = [&](std::string_view name, std::string_view help, auto value) {
      m += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
    };
    m += "# HELP sluice_http_requests_total HTTP requests answered, by path and status.\n"
         "# TYPE sluice_http_requests_total counter\n";
    for (const auto& [key, n] : by_status_) {
      m += fmt::format("sluice_http_requests_total{{path=\"{}\",code=\"{}\"}} {}\n", key.first, key.second, n);
    }
    m += "# HELP sluice_embeddings_request_seconds Time from a /v1/embeddings request's arrival to its answer.\n"
         "# TYPE sluice_embeddings_request_seconds histogram\n";
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      m += fmt::format("sluice_embeddings_request_seconds_bucket{{le=\"{}\"}} {}\n", kBuckets[b], latency_[b]);
    }
    m += fmt::format("sluice_embeddings_request_seconds_bucket{{le=\"+Inf\"}} {}\n", latency_count_);
    m += fmt::format("sluice_embeddings_request_seconds_sum {:.6f}\n", latency_sum_);
    m += fmt::format("sluice_embeddings_request_seconds_count {}\n", latency_count_);
    counter("sluice_embeddings_inputs_total", "Inputs embedded and answered.", inputs_.load());
    counter("sluice_embeddings_tokens_total", "Tokens of those inputs (usage.prompt_tokens summed).", tokens_.load());
    counter("sluice_rejected_total", "Requests answered 429 (queue or pending bytes full).", rejected_.load());
    counter("sluice_model_calls_total", "Model calls (batches).", batches_.load());
    counter("sluice_model_rows_total", "Rows given to the model.", rows_done_.load());
    counter("sluice_model_padded_tokens_total", "Rows x padded length given to the model.", padded_.load());
    m += fmt::format("# HELP sluice_model_busy_seconds_total Seconds spent in model calls, all threads together.\n"
                     "# TYPE sluice_model_busy_seconds_total counter\nsluice_model_busy_seconds_total {:.6f}\n",
                     busy_us_.load() / 1e6);
    gauge("sluice_queue_rows", "Inputs accepted and not yet embedded.", queued_rows_.load());
    gauge("sluice_pending_bytes", "Body bytes of requests received and not yet answered.", http_->pending_bytes());
    gauge("sluice_connections", "Open connections.", http_->connections());
    gauge("sluice_model_workers", "Model calls that can run at once.", workers_);
    return m;
  }

  // ---- the tokenizer thread ----

  void tokenizer_main() {
    for (;;) {
      std::shared_ptr<Call> call;
      {
        std::unique_lock lock(mu_);
        tok_cv_.wait(lock, [&] { return threads_stop_ || !to_tokenize_.empty(); });
        if (to_tokenize_.empty()) return;
        call = std::move(to_tokenize_.front());
        to_tokenize_.pop_front();
      }
      std::vector<Row> rows;
      rows.reserve(call->inputs);
      bool ok = true;
      for (std::size_t i = 0; i < call->texts.size() && ok; ++i) {
        Encoding e = tokenizer_->encode(call->texts[i]);
        if (e.truncated() && !call->truncate) {
          fail(*call, 400,
               fmt::format("{} has {}{} tokens; the model takes at most {}. Send \"truncate\": true to embed its first "
                           "{} tokens, or shorten it",
                           call->inputs == 1 ? std::string("'input'") : fmt::format("'input'[{}]", i),
                           e.length_is_lower_bound ? "at least " : "", e.untruncated_length, max_tokens_, max_tokens_),
               "invalid_request_error");
          ok = false;
          break;
        }
        call->tokens += e.ids.size();
        rows.push_back(Row{call, static_cast<std::uint32_t>(i), std::move(e.ids), std::move(e.type_ids)});
      }
      call->texts.clear();
      call->texts.shrink_to_fit();
      if (!ok) {
        queued_rows_ -= call->inputs;
        finish(std::move(call));
        continue;
      }
      call->vectors.assign(call->inputs * call->keep, 0.0f);
      {
        std::lock_guard lock(mu_);
        for (Row& r : rows) rows_.push_back(std::move(r));
      }
      rows_cv_.notify_all();
    }
  }

  // ---- the inference threads ----

  // Takes the next batch: the rows queued now are planned as the pipeline plans a window
  // (sorted by length under the token budget); the batch holding the oldest row goes.
  // Calls whose last rows were dropped go to `ended`, for the caller to finish once it has let
  // go of mu_.
  std::vector<Row> take_batch(std::vector<std::shared_ptr<Call>>& ended) {
    // Rows of a call that failed or whose client left are dropped first.
    std::erase_if(rows_, [&](Row& r) {
      if (!r.call->cancelled.load()) return false;
      --queued_rows_;
      if (r.call->remaining.fetch_sub(1) == 1) ended.push_back(r.call);
      return true;
    });
    if (rows_.empty()) return {};
    const std::size_t window = std::min<std::size_t>(rows_.size(), std::max<std::size_t>(limits_.batch_size * 8, 256));
    std::vector<std::uint32_t> lengths(window);
    for (std::size_t i = 0; i < window; ++i) lengths[i] = static_cast<std::uint32_t>(rows_[i].ids.size());
    // Fewer rows than the model threads free could take in full batches: shared among them, so
    // that one small request does not leave cores idle.
    BatchLimits limits = limits_;
    const std::size_t free_threads = idle_threads_ + 1;
    if (window < limits.batch_size * free_threads) {
      limits.batch_size = std::max<std::size_t>(1, (window + free_threads - 1) / free_threads);
    }
    const WindowPlan plan = plan_window(lengths, limits);
    const PlannedBatch* pick = &plan.batches.front();
    for (const PlannedBatch& b : plan.batches) {
      for (std::size_t k = b.first; k < b.first + b.rows; ++k) {
        if (plan.order[k] == 0) pick = &b;
      }
    }
    std::vector<std::size_t> take(plan.order.begin() + static_cast<std::ptrdiff_t>(pick->first),
                                  plan.order.begin() + static_cast<std::ptrdiff_t>(pick->first + pick->rows));
    std::sort(take.begin(), take.end());
    std::vector<Row> batch;
    batch.reserve(take.size());
    for (std::size_t k : take) batch.push_back(std::move(rows_[k]));
    std::size_t t = 0, w = 0;
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      if (t < take.size() && take[t] == i) {
        ++t;
        continue;
      }
      if (w != i) rows_[w] = std::move(rows_[i]);
      ++w;
    }
    rows_.resize(w);
    return batch;
  }

  void inference_main() {
    std::vector<float> out;
    for (;;) {
      std::vector<Row> batch;
      std::vector<std::shared_ptr<Call>> ended;
      {
        std::unique_lock lock(mu_);
        ++idle_threads_;
        rows_cv_.wait(lock, [&] { return threads_stop_ || !rows_.empty(); });
        --idle_threads_;
        if (rows_.empty()) return;
        batch = take_batch(ended);
        if (!rows_.empty() && idle_threads_ > 0) rows_cv_.notify_one();
      }
      for (auto& call : ended) finish(std::move(call));
      if (batch.empty()) continue;
      if (run(batch, out)) {
        for (Row& r : batch) done_row(r);
        continue;
      }
      // One bad row must not fail the calls that shared its batch: each row alone.
      for (Row& r : batch) {
        std::vector<Row> one;
        one.push_back(std::move(r));
        if (batch.size() == 1 || !run(one, out)) fail(*one[0].call, 500, last_error_(), "server_error");
        done_row(one[0]);
      }
    }
  }

  // The last model failure of this thread.
  static std::string& last_error_() {
    thread_local std::string e;
    return e;
  }

  bool run(std::vector<Row>& batch, std::vector<float>& out) {
    std::size_t seq = 1;
    for (const Row& r : batch) seq = std::max(seq, padded_length(r.ids.size()));
    TokenBatch tb;
    tb.batch = static_cast<std::uint32_t>(batch.size());
    tb.seq_len = static_cast<std::uint32_t>(seq);
    const std::size_t n = std::size_t{tb.batch} * seq;
    tb.ids.assign(n, pad_);
    tb.attention_mask.assign(n, 0);
    tb.type_ids.assign(n, 0);
    for (std::size_t r = 0; r < batch.size(); ++r) {
      const Row& row = batch[r];
      for (std::size_t k = 0; k < row.ids.size(); ++k) {
        tb.ids[r * seq + k] = row.ids[k];
        tb.attention_mask[r * seq + k] = 1;
        tb.type_ids[r * seq + k] = k < row.type_ids.size() ? row.type_ids[k] : 0;
      }
    }
    out.resize(batch.size() * dims_);
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    try {
      model_->embed(tb, out);
    } catch (const std::exception& e) {
      last_error_() = fmt::format("the model failed: {}", e.what());
      ok = false;
    }
    busy_us_ += static_cast<std::uint64_t>(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    ++batches_;
    rows_done_ += batch.size();
    padded_ += n;
    if (!ok) return false;
    for (std::size_t r = 0; r < batch.size(); ++r) {
      Call& call = *batch[r].call;
      const float* v = out.data() + r * dims_;
      float* dst = call.vectors.data() + std::size_t{batch[r].index} * call.keep;
      double scale = 1;
      if (call.keep < dims_ && normalize_) {
        // Matryoshka: the first `keep` values, back to unit length (as the pipeline's --dimensions).
        double norm = 0;
        for (std::size_t k = 0; k < call.keep; ++k) norm += double(v[k]) * v[k];
        scale = norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
      }
      for (std::size_t k = 0; k < call.keep; ++k) dst[k] = call.keep < dims_ && normalize_ ? static_cast<float>(v[k] * scale) : v[k];
    }
    return true;
  }

  void done_row(Row& r) {
    --queued_rows_;
    if (r.call->remaining.fetch_sub(1) == 1) finish(std::move(r.call));
  }

  void fail(Call& call, int status, std::string message, std::string type) {
    std::lock_guard lock(call.mu);
    if (call.status == 0) {
      call.status = status;
      call.error_message = std::move(message);
      call.error_type = std::move(type);
    }
    call.cancelled.store(true);
  }

  // Makes the answer (on this thread: formatting a large answer takes time) and hands the
  // call to the loop.
  void finish(std::shared_ptr<Call> call) {
    format(*call);
    {
      std::lock_guard lock(mu_);
      done_.push_back(std::move(call));
    }
    uv_async_send(&wake_);
  }

  void format(Call& call) {
    {
      std::lock_guard lock(call.mu);
      if (call.status != 0) {
        call.response = error_response(call.status, call.error_message, call.error_type);
        return;
      }
    }
    if (call.cancelled.load()) {
      call.response = error_response(499, "the client closed the connection", "invalid_request_error");
      return;
    }
    std::string& out = call.response.body;
    out.reserve(64 + call.inputs * (48 + call.keep * (call.base64 ? 6 : 12)));
    out = "{\"object\":\"list\",\"data\":[";
    const VectorFormat format{VectorType::float32, call.base64 ? VectorEncoding::base64 : VectorEncoding::json};
    for (std::size_t i = 0; i < call.inputs; ++i) {
      if (i) out += ',';
      out += "{\"object\":\"embedding\",\"index\":";
      json::append_uint(out, i);
      out += ",\"embedding\":";
      append_vector(out, std::span<const float>(call.vectors.data() + i * call.keep, call.keep), format);
      out += '}';
    }
    out += "],\"model\":";
    json::append_string(out, options_.model_name);
    out += fmt::format(",\"usage\":{{\"prompt_tokens\":{0},\"total_tokens\":{0}}}}}", call.tokens.load());
    call.vectors.clear();
    call.vectors.shrink_to_fit();
    call.response.status = 200;
  }

  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

  std::shared_ptr<Model> model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  ServeOptions options_;
  std::size_t dims_ = 0;
  bool normalize_ = true;
  std::size_t max_tokens_ = 0;
  std::int32_t pad_ = 0;
  int workers_ = 1;
  BatchLimits limits_;
  int port_ = 0;

  uv_loop_t loop_{};
  uv_async_t wake_{};
  std::unique_ptr<http::Server> http_;
  simdjson::dom::parser parser_;  // the loop's
  bool ran_ = false;
  bool ended_ = false;
  std::size_t in_flight_ = 0;  // calls accepted and not yet answered; the loop's
  std::unordered_map<std::uint64_t, std::weak_ptr<Call>> active_;  // by connection; the loop's
  std::map<std::pair<std::string, int>, std::uint64_t> by_status_;  // the loop's
  std::array<std::uint64_t, kBuckets.size()> latency_{};           // the loop's
  std::uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
  std::atomic<bool> stop_requested_{false};

  std::mutex mu_;
  std::condition_variable tok_cv_, rows_cv_;
  bool threads_stop_ = false;                      // guarded by mu_
  std::size_t idle_threads_ = 0;                   // guarded by mu_: inference threads waiting for rows
  std::deque<std::shared_ptr<Call>> to_tokenize_;  // guarded by mu_
  std::vector<Row> rows_;                          // guarded by mu_: in arrival order
  std::vector<std::shared_ptr<Call>> done_;        // guarded by mu_
  std::vector<std::thread> threads_;

  std::atomic<std::size_t> queued_rows_{0};
  std::atomic<std::uint64_t> requests_{0}, ok_{0}, rejected_{0}, inputs_{0}, tokens_{0}, batches_{0}, rows_done_{0},
      padded_{0}, busy_us_{0};
};

EmbeddingServer::EmbeddingServer(std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer,
                                 ServeOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(tokenizer), std::move(options))) {}
EmbeddingServer::~EmbeddingServer() = default;
int EmbeddingServer::port() const noexcept { return impl_->port(); }
void EmbeddingServer::run() { impl_->run(); }
void EmbeddingServer::stop() noexcept { impl_->stop(); }
ServeCounts EmbeddingServer::counts() const { return impl_->counts(); }

}  // namespace sluice
