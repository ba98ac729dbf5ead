// Stores: the sink that writes into them, and search. The database work is the backends'
// (sqlite_store.cpp, postgres_store.cpp); the order, the transactions, the retries and the
// bad records are here, the same for both.

#include <sluice/store.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <queue>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>

#include "io/output_format.hpp"
#include "store_backend.hpp"

namespace sluice {

bool is_store_uri(std::string_view output) noexcept {
  return output.starts_with("sqlite:") || output.starts_with("postgresql://") || output.starts_with("postgres://");
}

std::string redact_uri(std::string_view uri) {
  std::string out(uri);
  // scheme://user:password@host: the password is what lies between the first ':' after the
  // scheme's "//" and the last '@' of the authority.
  const std::size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const std::size_t start = scheme + 3;
    const std::size_t end = out.find_first_of("/?#", start);
    const std::string_view authority = std::string_view(out).substr(start, end == std::string::npos ? std::string::npos
                                                                                                    : end - start);
    const std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const std::size_t colon = authority.substr(0, at).find(':');
      if (colon != std::string_view::npos) out.replace(start + colon + 1, at - colon - 1, "***");
    }
  }
  // ...?password=secret (a libpq parameter), anywhere in the query.
  for (std::size_t at = out.find("password="); at != std::string::npos; at = out.find("password=", at + 1)) {
    if (at > 0 && out[at - 1] != '?' && out[at - 1] != '&') continue;
    const std::size_t value = at + 9;
    const std::size_t end = out.find('&', value);
    out.replace(value, (end == std::string::npos ? out.size() : end) - value, "***");
  }
  return out;
}

namespace store {

void check_table_name(const std::string& table) {
  auto word = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  bool ok = !table.empty() && table.size() <= 63 && word(table[0]);
  for (char c : table) ok = ok && (word(c) || (c >= '0' && c <= '9'));
  if (!ok) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("table name \"{}\": use lowercase letters, digits and _ (not a digit first), at most 63",
                            table));
  }
  if (table == "sluice_tables" || table == "sluice_runs") {
    throw Error(ErrorCode::invalid_argument, fmt::format("table name \"{}\" is sluice's own catalog", table));
  }
}

std::unique_ptr<Backend> connect(const StoreOptions& options) {
  check_table_name(options.table);
  if (auto file = sqlite_store_path(options.uri)) {
    const std::string& path = *file;
    if (path.empty()) throw Error(ErrorCode::invalid_argument, "sqlite: needs a path, e.g. sqlite:embeddings.db");
    return connect_sqlite(path, fmt::format("{} table {}", options.uri, options.table), options.read_only);
  }
  if (options.uri.starts_with("postgresql://") || options.uri.starts_with("postgres://")) {
    return connect_postgres(options.uri, fmt::format("{} table {}", redact_uri(options.uri), options.table),
                            options.read_only);
  }
  throw Error(ErrorCode::invalid_argument,
              fmt::format("{}: not a store URI (sqlite:PATH, postgresql://..., postgres://...)", redact_uri(options.uri)));
}

}  // namespace store

std::optional<std::string> sqlite_store_path(std::string_view uri) {
  if (!uri.starts_with("sqlite:")) return std::nullopt;
  std::string path(uri.substr(7));
  // sqlite:///abs/path and sqlite://rel are spelled as URLs by some tools: both mean a path.
  if (path.starts_with("//")) path = path.substr(2);
  return path;
}

namespace store {

std::size_t vector_bytes(VectorType type, std::uint32_t dimensions) {
  switch (type) {
    case VectorType::float32: return std::size_t{dimensions} * 4;
    case VectorType::float16: return std::size_t{dimensions} * 2;
    case VectorType::int8: return dimensions;
    case VectorType::binary: return (std::size_t{dimensions} + 7) / 8;
  }
  return 0;
}

void encode_vector(std::span<const float> embedding, VectorType type, std::string& bytes, std::vector<float>& values) {
  bytes.assign(vector_bytes(type, static_cast<std::uint32_t>(embedding.size())), '\0');
  values.clear();
  switch (type) {
    case VectorType::float32:
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        const std::uint32_t b = std::bit_cast<std::uint32_t>(embedding[i]);
        for (int k = 0; k < 4; ++k) bytes[i * 4 + k] = static_cast<char>((b >> (8 * k)) & 0xFF);
      }
      values.assign(embedding.begin(), embedding.end());
      break;
    case VectorType::float16:
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        const std::uint16_t b = float_to_half(embedding[i]);
        bytes[i * 2] = static_cast<char>(b & 0xFF);
        bytes[i * 2 + 1] = static_cast<char>(b >> 8);
        values.push_back(half_to_float(b));
      }
      break;
    case VectorType::int8:
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        const float v = embedding[i];
        const float c = !(v == v) ? 0.0f : std::clamp(v, -1.0f, 1.0f);
        const auto q = static_cast<std::int8_t>(std::lround(c * 127.0f));
        bytes[i] = static_cast<char>(q);
        values.push_back(q);
      }
      break;
    case VectorType::binary:
      for (std::size_t i = 0; i < embedding.size(); ++i) {
        if (embedding[i] > 0) bytes[i / 8] = static_cast<char>(static_cast<unsigned char>(bytes[i / 8]) | (0x80u >> (i % 8)));
      }
      for (char b : bytes) values.push_back(static_cast<unsigned char>(b));
      break;
  }
}

void decode_vector(std::string_view bytes, VectorType type, std::uint32_t dimensions, std::vector<float>& out) {
  out.resize(dimensions);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  switch (type) {
    case VectorType::float32:
      for (std::uint32_t i = 0; i < dimensions; ++i) {
        const std::uint32_t b = std::uint32_t{p[i * 4]} | std::uint32_t{p[i * 4 + 1]} << 8 |
                                std::uint32_t{p[i * 4 + 2]} << 16 | std::uint32_t{p[i * 4 + 3]} << 24;
        out[i] = std::bit_cast<float>(b);
      }
      break;
    case VectorType::float16:
      for (std::uint32_t i = 0; i < dimensions; ++i) {
        out[i] = half_to_float(static_cast<std::uint16_t>(p[i * 2] | p[i * 2 + 1] << 8));
      }
      break;
    case VectorType::int8:
      for (std::uint32_t i = 0; i < dimensions; ++i) out[i] = static_cast<float>(static_cast<std::int8_t>(p[i])) / 127.0f;
      break;
    case VectorType::binary:
      for (std::uint32_t i = 0; i < dimensions; ++i) out[i] = (p[i / 8] & (0x80u >> (i % 8))) ? 1.0f : -1.0f;
      break;
  }
}

// The dot products of search, built for each instruction set and chosen once, at the first
// call, from what the CPU has (__builtin_cpu_supports, not an ifunc: a resolver runs before
// ThreadSanitizer's runtime is up). Sixteen partial sums, so the compiler vectorises without
// reordering one sum (no -ffast-math): the same scores, up to float rounding, on every machine.
namespace {

__attribute__((always_inline)) inline float dot_body(const float* a, const float* b, std::size_t n) {
  float s[16] = {};
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (std::size_t j = 0; j < 16; ++j) s[j] += a[i + j] * b[i + j];
  }
  float total = 0;
  for (std::size_t j = 0; j < 16; ++j) total += s[j];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// Eight queries against one row at once: each element of the row is loaded once for the
// eight, and the row's 16-wide slices stay in registers (the queries, 8 x dims floats, stay in
// L1).
constexpr std::size_t kQueriesAtOnce = 8;
__attribute__((always_inline)) inline void dot8_body(const float* const* q, const float* row, std::size_t n,
                                                     float* out) {
  float s[kQueriesAtOnce][16] = {};
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (std::size_t j = 0; j < kQueriesAtOnce; ++j) {
      for (std::size_t l = 0; l < 16; ++l) s[j][l] += q[j][i + l] * row[i + l];
    }
  }
  for (std::size_t j = 0; j < kQueriesAtOnce; ++j) {
    float total = 0;
    for (std::size_t l = 0; l < 16; ++l) total += s[j][l];
    for (std::size_t t = i; t < n; ++t) total += q[j][t] * row[t];
    out[j] = total;
  }
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, std::size_t n) {
  return dot_body(a, b, n);
}
__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, std::size_t n) {
  return dot_body(a, b, n);
}
float dot_base(const float* a, const float* b, std::size_t n) { return dot_body(a, b, n); }

__attribute__((target("avx512f"))) void dot8_avx512(const float* const* q, const float* row, std::size_t n,
                                                    float* out) {
  dot8_body(q, row, n, out);
}
__attribute__((target("avx2,fma"))) void dot8_avx2(const float* const* q, const float* row, std::size_t n,
                                                   float* out) {
  dot8_body(q, row, n, out);
}
void dot8_base(const float* const* q, const float* row, std::size_t n, float* out) { dot8_body(q, row, n, out); }

enum class Isa : int { avx512, avx2, base };
Isa best_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::base;
}
std::atomic<int> forced_isa{-1};  // limit_search_isa(): at most this one
Isa machine_isa() {
  static const Isa best = best_isa();
  const int forced = forced_isa.load(std::memory_order_relaxed);
  return forced > static_cast<int>(best) ? static_cast<Isa>(forced) : best;
}

void dot8(const float* const* q, const float* row, std::size_t n, float* out) {
  switch (machine_isa()) {
    case Isa::avx512: return dot8_avx512(q, row, n, out);
    case Isa::avx2: return dot8_avx2(q, row, n, out);
    case Isa::base: return dot8_base(q, row, n, out);
  }
}

}  // namespace

void normalise(std::vector<float>& v) {
  double n = 0;
  for (float x : v) n += double{x} * x;
  const float inv = n > 0 ? static_cast<float>(1.0 / std::sqrt(n)) : 0.0f;
  for (float& x : v) x *= inv;
}

std::vector<float> query_as_stored(std::span<const float> query, VectorType type, std::uint32_t dimensions) {
  if (query.size() != dimensions) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("a query has {} dimensions and the table {}", query.size(), dimensions));
  }
  std::string bytes;
  std::vector<float> values, v;
  encode_vector(query, type, bytes, values);
  decode_vector(bytes, type, dimensions, v);
  normalise(v);
  return v;
}

bool limit_search_isa(std::string_view name) {
  const int isa = name == "avx512" ? 0 : name == "avx2" ? 1 : name == "base" ? 2 : -2;
  if (isa == -2) return false;
  forced_isa.store(isa);
  return static_cast<Isa>(isa) >= best_isa();  // what was asked is what runs
}

float dot(const float* a, const float* b, std::size_t n) {
  switch (machine_isa()) {
    case Isa::avx512: return dot_avx512(a, b, n);
    case Isa::avx2: return dot_avx2(a, b, n);
    case Isa::base: return dot_base(a, b, n);
  }
  return dot_base(a, b, n);
}

namespace {

std::string meta_line(const TableMeta& m) {
  // The identity says the pooling and the normalisation.
  return fmt::format("{}, {} dimensions, {}", m.model_identity, m.dimensions, to_string(m.type));
}

// The id of a record: its id field's string or integer, or its line number when it has none.
std::variant<std::string, ErrorInfo> record_id(simdjson::dom::parser& parser, const EmbeddedRecord& r,
                                               const std::string& field) {
  simdjson::dom::element doc;
  if (parser.parse(r.json).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    // The engine parsed it already; a record a program's source supplied may be anything.
    return ErrorInfo{ErrorCode::invalid_json, "the record is not a JSON object", {}, {}};
  }
  simdjson::dom::element value;
  if (doc.get_object().at_key(field).get(value) != simdjson::SUCCESS) return std::to_string(r.line);
  switch (value.type()) {
    case simdjson::dom::element_type::STRING: return std::string(value.get_string().value());
    case simdjson::dom::element_type::INT64: return std::to_string(value.get_int64().value());
    case simdjson::dom::element_type::UINT64: return std::to_string(value.get_uint64().value());
    default:
      return ErrorInfo{ErrorCode::invalid_id,
                       fmt::format("the id field \"{}\" is {}: a row's id is a string or an integer (choose another "
                                   "field with --id-field)",
                                   field, simdjson::minify(value).substr(0, 40)),
                       field,
                       {}};
  }
}

// Writes on a thread of its own: write() queues rows, commit() queues the transaction that
// makes them durable, with the checkpoint. The rows of a commit are kept until it succeeds,
// so a lost connection is retried by writing them again on a new one.
class StoreSink final : public Sink {
 public:
  explicit StoreSink(const StoreOptions& options) : options_(options), backend_(store::connect(options)) {
    name_ = backend_->name();
    backend_->set_id_field(options.id_field);
  }
  ~StoreSink() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  std::string name() const override { return name_; }

  void open(const SinkRun& run) override {
    backend_->ensure_catalog();
    backend_->lock_for_writing(options_.table);
    meta_ = TableMeta{run.model,      run.model_identity,          run.pooling,   run.precision,
                      run.dimensions, run.vector_format.type, run.normalized};
    if (auto have = backend_->read_meta(options_.table)) {
      if (have->model_identity != meta_.model_identity || have->dimensions != meta_.dimensions ||
          have->type != meta_.type || have->normalized != meta_.normalized) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{} holds vectors of another model or format, and vectors of two are never mixed:\n"
                                "  table: {}\n  run:   {}\nWrite into another table (--table NAME) or another store.",
                                name_, meta_line(*have), meta_line(meta_)));
      }
    } else {
      backend_->create_table(options_.table, meta_);
    }
    std::optional<Backend::RunRow> last;
    if (run.resume) last = backend_->last_run(options_.table);
    // A run with no checkpoint committed (killed before its first commit, or --no-checkpoint)
    // has nothing to resume from: this run is a new one, not a continuation of that one.
    if (last && last->checkpoint.empty()) last.reset();
    if (last && last->id_field != options_.id_field) {
      // The ids of the rows before the checkpoint come from that field: one run, one field.
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: cannot resume: the run took ids from the field \"{}\", and this one from \"{}\"; "
                              "run without --resume to start again",
                              name_, last->id_field, options_.id_field));
    }
    if (last) {
      run_ = last->run;
      checkpoint_ = last->checkpoint;
    } else {
      run_ = backend_->start_run(options_.table, run.pipeline_id, run.input, options_.id_field);
    }
    thread_ = std::thread([this] { main(); });
  }

  void write(std::span<const EmbeddedRecord> records) override {
    std::vector<Row> rows;
    rows.reserve(records.size());
    std::vector<SinkRejection> rejected;
    for (const EmbeddedRecord& r : records) {
      auto id = record_id(parser_, r, options_.id_field);
      if (auto* e = std::get_if<ErrorInfo>(&id)) {
        rejected.push_back({r.index, std::move(*e), r.json});
        continue;
      }
      Row row;
      row.index = r.index;
      row.id = std::move(std::get<std::string>(id));
      row.record = r.json;
      row.line = r.line;
      encode_vector(r.embedding, meta_.type, row.embedding, row.values);
      rows.push_back(std::move(row));
    }
    std::lock_guard lock(mutex_);
    for (auto& row : rows) open_rows_.push_back(std::move(row));
    for (auto& r : rejected) open_rejected_.push_back(std::move(r));
  }

  void commit(const std::string& checkpoint, std::function<void(CommitResult)> done) override {
    {
      std::lock_guard lock(mutex_);
      Job job;
      job.rows.swap(open_rows_);
      job.rejected.swap(open_rejected_);
      job.checkpoint = checkpoint;
      job.done = std::move(done);
      jobs_.push_back(std::move(job));
    }
    wake_.notify_all();
  }

  bool keeps_checkpoint() const override { return options_.keep_checkpoint; }

  std::optional<std::string> load_checkpoint() override {
    if (checkpoint_.empty()) return std::nullopt;
    return checkpoint_;
  }

  std::optional<std::uint64_t> verified_count() override {
    // The thread is idle: the engine asks after the last commit came back.
    std::lock_guard lock(backend_mutex_);
    return backend_->count_run_rows(options_.table, run_);
  }

 private:
  struct Job {
    std::vector<Row> rows;
    std::vector<SinkRejection> rejected;
    std::string checkpoint;
    std::function<void(CommitResult)> done;
  };

  void main() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return closing_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // closing
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      CommitResult result = run_job(job);
      job.done(std::move(result));
    }
  }

  CommitResult run_job(Job& job) {
    CommitResult result;
    std::lock_guard lock(backend_mutex_);
    for (int attempt = 0;; ++attempt) {
      try {
        auto outcomes = backend_->commit(options_.table, run_, job.rows,
                                         options_.keep_checkpoint ? job.checkpoint : std::string(), meta_.type);
        for (std::size_t i = 0; i < job.rows.size(); ++i) {
          if (i < outcomes.size() && outcomes[i]) {
            job.rejected.push_back({job.rows[i].index, std::move(*outcomes[i]), std::move(job.rows[i].record)});
          }
        }
        std::sort(job.rejected.begin(), job.rejected.end(),
                  [](const SinkRejection& a, const SinkRejection& b) { return a.index < b.index; });
        result.rejected = std::move(job.rejected);
        return result;
      } catch (const StoreError& e) {
        if (!e.transient || attempt >= options_.max_retries) {
          result.error = attempt > 0 ? fmt::format("{} (after {} retries)", e.what(), attempt) : e.what();
          return result;
        }
      } catch (const std::exception& e) {
        result.error = e.what();
        return result;
      }
      // Exponential backoff with jitter, then a new connection; a failed connection counts as
      // an attempt, and its error is the one reported when the attempts run out.
      for (;; ++attempt) {
        const double wait_s = std::min(5.0, 0.1 * std::pow(2.0, attempt)) * (0.5 + 0.5 * jitter_(rng_));
        std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
        try {
          backend_->reconnect();
          break;
        } catch (const StoreError& e) {
          if (attempt + 1 >= options_.max_retries) {
            result.error = fmt::format("{} (after {} retries)", e.what(), attempt + 1);
            return result;
          }
        }
      }
      {
        std::lock_guard q(mutex_);
        if (closing_) {
          result.error = "closed while retrying";
          return result;
        }
      }
    }
  }

  StoreOptions options_;
  std::unique_ptr<Backend> backend_;
  std::mutex backend_mutex_;  // the thread's commits, verified_count()
  std::string name_;
  TableMeta meta_;
  std::int64_t run_ = 0;
  std::string checkpoint_;
  simdjson::dom::parser parser_;  // the loop thread's (write())

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  std::vector<Row> open_rows_;  // written, not yet in a commit
  std::vector<SinkRejection> open_rejected_;
  bool closing_ = false;
  std::thread thread_;
  std::mt19937 rng_{std::random_device{}()};
  std::uniform_real_distribution<double> jitter_{0.0, 1.0};
};

}  // namespace
}  // namespace store

StoreTableInfo describe_store(const StoreOptions& options) {
  auto backend = store::connect(options);
  if (!options.read_only) backend->ensure_catalog();
  StoreTableInfo info;
  if (auto meta = backend->read_meta(options.table)) {
    info.exists = true;
    info.model = meta->model;
    info.model_identity = meta->model_identity;
    info.pooling = meta->pooling;
    info.precision = meta->precision;
    info.dimensions = meta->dimensions;
    info.type = meta->type;
    info.normalized = meta->normalized;
    info.rows = backend->count_rows(options.table);
  }
  return info;
}

std::unique_ptr<Sink> make_store_sink(const StoreOptions& options) {
  return std::make_unique<store::StoreSink>(options);
}

std::vector<std::vector<SearchHit>> search_store(const StoreOptions& options,
                                                 std::span<const std::vector<float>> queries, std::size_t k) {
  StoreOptions read = options;
  read.read_only = true;
  auto backend = store::connect(read);
  auto meta = backend->read_meta(options.table);
  if (!meta) {
    throw Error(ErrorCode::invalid_argument, fmt::format("{}: no such table of sluice's", backend->name()));
  }
  std::vector<std::vector<float>> q;
  for (const auto& query : queries) q.push_back(store::query_as_stored(query, meta->type, meta->dimensions));
  // A min-heap of the best k per query: the worst kept on top.
  auto worse = [](const SearchHit& a, const SearchHit& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  };
  std::vector<std::vector<SearchHit>> heaps(q.size());
  const std::uint32_t dims = meta->dimensions;
  auto offer = [&](std::size_t qi, double score, std::string_view id, std::string_view record) {
    auto& heap = heaps[qi];
    if (heap.size() < k) {
      heap.push_back({std::string(id), score, std::string(record)});
      std::push_heap(heap.begin(), heap.end(), worse);
    } else if (k > 0 && (score > heap.front().score || (score == heap.front().score && id < heap.front().id))) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = {std::string(id), score, std::string(record)};
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  };
  // Queries in groups of eight (the last padded with the first); the others one by one.
  const std::size_t grouped = q.size() >= store::kQueriesAtOnce / 2 ? q.size() : 0;
  std::vector<const float*> group_ptrs;
  for (std::size_t g = 0; g < grouped; g += store::kQueriesAtOnce) {
    for (std::size_t j = 0; j < store::kQueriesAtOnce; ++j) group_ptrs.push_back(q[g + j < q.size() ? g + j : g].data());
  }
  float scores[store::kQueriesAtOnce];
  backend->scan(options.table, meta->type, dims, [&](std::string_view id, std::string_view record,
                                                    std::span<const float> v) {
    if (v.size() != dims) return;
    const float norm = store::dot(v.data(), v.data(), dims);
    if (norm <= 0) return;
    const float inv = 1.0f / std::sqrt(norm);
    for (std::size_t g = 0; g < grouped; g += store::kQueriesAtOnce) {
      store::dot8(group_ptrs.data() + g, v.data(), dims, scores);
      for (std::size_t j = 0; j < store::kQueriesAtOnce && g + j < q.size(); ++j) {
        offer(g + j, double{scores[j]} * inv, id, record);
      }
    }
    for (std::size_t qi = grouped; qi < q.size(); ++qi) {
      offer(qi, double{store::dot(q[qi].data(), v.data(), dims)} * inv, id, record);
    }
  });
  for (auto& heap : heaps) std::sort_heap(heap.begin(), heap.end(), worse);
  return heaps;
}

}  // namespace sluice
