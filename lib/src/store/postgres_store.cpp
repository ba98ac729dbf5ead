// The PostgreSQL store, through libpq: rows upserted by multi-row INSERT ... ON CONFLICT with
// text parameters, record as jsonb, embedding as real[]. A lost connection (SQLSTATE class 08,
// a server shut down) is a transient StoreError: the sink connects again and retries the
// whole transaction.

#include <libpq-fe.h>

#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>

#include "store_backend.hpp"

namespace sluice::store {

namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Rows per INSERT statement: 5 parameters each, under libpq's 65535.
constexpr std::size_t kRowsPerStatement = 1000;

class PostgresBackend final : public Backend {
 public:
  PostgresBackend(std::string uri, std::string name, bool read_only)
      : uri_(std::move(uri)), name_(std::move(name)), read_only_(read_only) {
    try {
      connect_now();
    } catch (const StoreError& e) {
      throw Error(ErrorCode::io_error, e.what());
    }
  }
  ~PostgresBackend() override {
    if (conn_) PQfinish(conn_);
  }

  const std::string& name() const override { return name_; }

  void lock_for_writing(const std::string& table) override {
    locked_table_ = table;
    setup([&] { take_lock(); });
  }

  void ensure_catalog() override {
    setup([&] {
      exec("CREATE TABLE IF NOT EXISTS sluice_tables (name text PRIMARY KEY, model text NOT NULL, model_identity text "
           "NOT NULL, pooling text NOT NULL, precision text NOT NULL, dimensions integer NOT NULL, output_type text NOT "
           "NULL, normalized boolean NOT NULL, created_at timestamptz NOT NULL DEFAULT now())");
      exec("CREATE TABLE IF NOT EXISTS sluice_runs (table_name text NOT NULL, run bigint NOT NULL, pipeline_id text "
           "NOT NULL, input text NOT NULL, id_field text NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), "
           "checkpoint text, PRIMARY KEY (table_name, run))");
      for (const char* t : {"sluice_tables", "sluice_runs"}) {
        ResultPtr r = query("SELECT has_table_privilege($1, 'SELECT, INSERT, UPDATE')", {t});
        if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
          throw Error(ErrorCode::io_error, fmt::format("{}: this user may not write {}", name_, t));
        }
      }
    });
  }

  std::optional<TableMeta> read_meta(const std::string& table) override {
    return setup([&]() -> std::optional<TableMeta> {
      ResultPtr exists = query("SELECT to_regclass('sluice_tables') IS NOT NULL", {});
      if (std::string_view(PQgetvalue(exists.get(), 0, 0)) != "t") return std::nullopt;  // nothing written yet
      ResultPtr r = query(
          "SELECT model, model_identity, dimensions, output_type, normalized, pooling, precision FROM sluice_tables "
          "WHERE name = $1",
          {table});
      if (PQntuples(r.get()) == 1) {
        TableMeta m;
        m.model = PQgetvalue(r.get(), 0, 0);
        m.model_identity = PQgetvalue(r.get(), 0, 1);
        m.dimensions = static_cast<std::uint32_t>(std::stoul(PQgetvalue(r.get(), 0, 2)));
        m.type = parse_vector_type(PQgetvalue(r.get(), 0, 3)).value_or(VectorType::float32);
        m.normalized = std::string_view(PQgetvalue(r.get(), 0, 4)) == "t";
        m.pooling = PQgetvalue(r.get(), 0, 5);
        m.precision = PQgetvalue(r.get(), 0, 6);
        ResultPtr p = query(read_only_ ? "SELECT has_table_privilege(quote_ident($1), 'SELECT')"
                                       : "SELECT has_table_privilege(quote_ident($1), 'SELECT, INSERT, UPDATE')",
                            {table});
        if (std::string_view(PQgetvalue(p.get(), 0, 0)) != "t") {
          throw Error(ErrorCode::io_error,
                      fmt::format("{}: this user may not {} the table", name_, read_only_ ? "read" : "write"));
        }
        return m;
      }
      ResultPtr other = query("SELECT to_regclass(quote_ident($1)) IS NOT NULL", {table});
      if (std::string_view(PQgetvalue(other.get(), 0, 0)) == "t") {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: a table of that name exists and was not made by sluice (it is not in "
                                "sluice_tables): choose another name with --table",
                                name_));
      }
      return std::nullopt;
    });
  }

  void create_table(const std::string& table, const TableMeta& meta) override {
    setup([&] {
      exec("BEGIN");
      try {
        exec(fmt::format("CREATE TABLE \"{}\" (id text PRIMARY KEY, record jsonb NOT NULL, embedding real[] NOT NULL, "
                         "run bigint NOT NULL, line bigint NOT NULL)",
                         table));
        query("INSERT INTO sluice_tables (name, model, model_identity, pooling, precision, dimensions, output_type, "
              "normalized) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
              {table, meta.model, meta.model_identity, meta.pooling, meta.precision, std::to_string(meta.dimensions),
               std::string(to_string(meta.type)), meta.normalized ? "true" : "false"});
        exec("COMMIT");
      } catch (...) {
        rollback_quietly();
        throw;
      }
    });
  }

  std::uint64_t count_rows(const std::string& table) override {
    return setup([&] {
      ResultPtr r = query(fmt::format("SELECT count(*) FROM \"{}\"", table), {});
      return static_cast<std::uint64_t>(std::stoull(PQgetvalue(r.get(), 0, 0)));
    });
  }

  std::optional<RunRow> last_run(const std::string& table) override {
    return setup([&]() -> std::optional<RunRow> {
      ResultPtr r = query(
          "SELECT run, id_field, checkpoint FROM sluice_runs WHERE table_name = $1 ORDER BY run DESC LIMIT 1", {table});
      if (PQntuples(r.get()) == 0) return std::nullopt;
      return RunRow{static_cast<std::int64_t>(std::stoll(PQgetvalue(r.get(), 0, 0))), PQgetvalue(r.get(), 0, 1),
                    PQgetisnull(r.get(), 0, 2) ? std::string() : std::string(PQgetvalue(r.get(), 0, 2))};
    });
  }

  std::int64_t start_run(const std::string& table, const std::string& pipeline_id, const std::string& input,
                         const std::string& id_field) override {
    return setup([&] {
      exec("BEGIN");
      try {
        // Two runs starting at once on one table: the lock orders them.
        exec("LOCK TABLE sluice_runs IN SHARE ROW EXCLUSIVE MODE");
        ResultPtr r = query(
            "INSERT INTO sluice_runs (table_name, run, pipeline_id, input, id_field) VALUES ($1, (SELECT "
            "coalesce(max(run), 0) + 1 FROM sluice_runs WHERE table_name = $1), $2, $3, $4) RETURNING run",
            {table, pipeline_id, input, id_field});
        const std::int64_t run = std::stoll(PQgetvalue(r.get(), 0, 0));
        exec("COMMIT");
        return run;
      } catch (...) {
        rollback_quietly();
        throw;
      }
    });
  }

  std::vector<std::optional<ErrorInfo>> commit(const std::string& table, std::int64_t run, std::span<const Row> rows,
                                               const std::string& checkpoint, VectorType) override {
    std::vector<std::optional<ErrorInfo>> outcomes(rows.size());
    // An id twice in one group: the later one is a duplicate (one INSERT may not touch a row
    // twice); the first is written.
    std::map<std::string_view, std::size_t> first;
    std::vector<std::size_t> keep;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      auto [it, fresh] = first.emplace(rows[i].id, i);
      if (fresh) {
        keep.push_back(i);
      } else {
        outcomes[i] = duplicate(rows[i], rows[it->second].line);
      }
    }
    bool one_by_one = false;
    for (;;) {
      try {
        exec("BEGIN");
        if (one_by_one) {
          upsert_one_by_one(table, run, rows, keep, outcomes);
        } else {
          for (std::size_t at = 0; at < keep.size(); at += kRowsPerStatement) {
            upsert(table, run, rows, std::span(keep).subspan(at, std::min(kRowsPerStatement, keep.size() - at)),
                   outcomes);
          }
        }
        if (!checkpoint.empty()) {
          query("UPDATE sluice_runs SET checkpoint = $1 WHERE table_name = $2 AND run = $3",
                {checkpoint, table, std::to_string(run)});
        }
        exec("COMMIT");
        return outcomes;
      } catch (const RowDataError&) {
        // A row the server refused (invalid JSON for jsonb, say) aborted the transaction:
        // again, row by row, to find which.
        rollback_quietly();
        if (one_by_one) throw StoreError(fmt::format("{}: a row was refused twice", name_), false);
        one_by_one = true;
      } catch (...) {
        rollback_quietly();
        throw;
      }
    }
  }

  void reconnect() override {
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    connect_now();
    // The lock belonged to the lost session; another run may have taken the table since.
    if (!locked_table_.empty()) {
      try {
        take_lock();
      } catch (const Error& e) {
        throw StoreError(e.what(), false);
      }
    }
  }

  std::uint64_t count_run_rows(const std::string& table, std::int64_t run) override {
    ResultPtr r = query(fmt::format("SELECT count(*) FROM \"{}\" WHERE run = $1", table), {std::to_string(run)});
    return static_cast<std::uint64_t>(std::stoull(PQgetvalue(r.get(), 0, 0)));
  }

  std::string table_version(const std::string& table) override {
    return setup([&] {
      ResultPtr r = query(
          "SELECT run, coalesce(md5(checkpoint), '') FROM sluice_runs WHERE table_name = $1 ORDER BY run DESC LIMIT 1",
          {table});
      std::string last = PQntuples(r.get()) ? fmt::format("{} {}", PQgetvalue(r.get(), 0, 0), PQgetvalue(r.get(), 0, 1))
                                             : std::string("none");
      return fmt::format("rows {}, last run {}", count_rows(table), last);
    });
  }

  std::vector<std::pair<std::string, std::string>> fetch_records(const std::string& table,
                                                                 std::span<const std::string> ids) override {
    return setup([&] {
      std::vector<std::pair<std::string, std::string>> out;
      for (const std::string& id : ids) {
        ResultPtr r = query(fmt::format("SELECT record::text FROM \"{}\" WHERE id = $1", table), {id});
        if (PQntuples(r.get())) out.emplace_back(id, PQgetvalue(r.get(), 0, 0));
      }
      return out;
    });
  }

  void scan(const std::string& table, VectorType type, std::uint32_t dimensions, const ScanFn& fn) override {
    setup([&] {
      exec("BEGIN READ ONLY");
      try {
        exec(fmt::format("DECLARE sluice_scan NO SCROLL CURSOR FOR SELECT id, record::text, embedding FROM \"{}\"",
                         table));
        std::vector<float> values, v;
        std::string bytes;
        for (;;) {
          ResultPtr r = query("FETCH 2000 FROM sluice_scan", {});
          const int n = PQntuples(r.get());
          if (n == 0) break;
          for (int i = 0; i < n; ++i) {
            parse_real_array(PQgetvalue(r.get(), i, 2), values);
            if (type == VectorType::binary) {
              // Bytes 0..255, one value each: unpacked to +1/-1 per bit.
              bytes.assign(values.size(), '\0');
              for (std::size_t b = 0; b < values.size(); ++b) bytes[b] = static_cast<char>(static_cast<int>(values[b]));
              if (bytes.size() != vector_bytes(type, dimensions)) continue;
              decode_vector(bytes, type, dimensions, v);
              fn(PQgetvalue(r.get(), i, 0), PQgetvalue(r.get(), i, 1), v);
            } else {
              fn(PQgetvalue(r.get(), i, 0), PQgetvalue(r.get(), i, 1), values);
            }
          }
        }
        exec("COMMIT");
      } catch (...) {
        rollback_quietly();
        throw;
      }
    });
  }

 private:
  struct RowDataError : StoreError {
    using StoreError::StoreError;
  };

  // A session-level advisory lock on the table's name, held while the connection lives.
  void take_lock() {
    ResultPtr r = query("SELECT pg_try_advisory_lock(hashtext('sluice table ' || $1))", {locked_table_});
    if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: another run is writing this table now; wait for it to end", name_));
    }
  }

  void connect_now() {
    conn_ = PQconnectdb(uri_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string message = PQerrorMessage(conn_);
      while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
      PQfinish(conn_);
      conn_ = nullptr;
      throw StoreError(fmt::format("{}: cannot connect: {}", name_, message), true);
    }
    // Notices (CREATE TABLE IF NOT EXISTS ... skipping) are not the user's business.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }

  // Setup work reports as sluice::Error (before the run starts: the command exits 1 or 2).
  template <typename F>
  auto setup(F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const StoreError& e) {
      throw Error(ErrorCode::io_error, e.what());
    }
  }

  [[noreturn]] void fail(PGresult* r, const std::string& what) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string message = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    const std::string sqlstate = state ? state : "";
    const bool lost = PQstatus(conn_) != CONNECTION_OK || sqlstate.starts_with("08") || sqlstate == "57P01" ||
                      sqlstate == "57P02" || sqlstate == "57P03";
    const std::string text = fmt::format("{}: {}: {}", name_, what, message.empty() ? "connection lost" : message);
    if (!lost && (sqlstate.starts_with("22") || sqlstate.starts_with("23"))) throw RowDataError(text, false);
    throw StoreError(text, lost);
  }

  void exec(const std::string& sql) {
    ResultPtr r(PQexec(conn_, sql.c_str()));
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r.get(), sql.substr(0, 40));
  }

  ResultPtr query(const std::string& sql, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    ResultPtr r(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                             nullptr, 0));
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r.get(), sql.substr(0, 40));
    return r;
  }

  void rollback_quietly() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) PQclear(PQexec(conn_, "ROLLBACK"));
  }

  static std::string real_array(std::span<const float> values) {
    std::string out = "{";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i) out.push_back(',');
      fmt::format_to(std::back_inserter(out), "{}", values[i]);
    }
    out.push_back('}');
    return out;
  }

  static void parse_real_array(std::string_view text, std::vector<float>& out) {
    out.clear();
    if (text.size() < 2) return;
    text = text.substr(1, text.size() - 2);
    while (!text.empty()) {
      const std::size_t comma = text.find(',');
      const std::string_view item = text.substr(0, comma);
      float v = 0;
      std::from_chars(item.data(), item.data() + item.size(), v);
      out.push_back(v);
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
  }

  std::string upsert_sql(const std::string& table, std::size_t n) {
    std::string sql = fmt::format("INSERT INTO \"{}\" (id, record, embedding, run, line) VALUES ", table);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t b = i * 5;
      fmt::format_to(std::back_inserter(sql), "{}(${}, ${}::jsonb, ${}::real[], ${}, ${})", i ? ", " : "", b + 1,
                     b + 2, b + 3, b + 4, b + 5);
    }
    fmt::format_to(std::back_inserter(sql),
                   " ON CONFLICT (id) DO UPDATE SET record = excluded.record, embedding = excluded.embedding, run = "
                   "excluded.run, line = excluded.line WHERE NOT (\"{0}\".run = excluded.run AND \"{0}\".line <> "
                   "excluded.line) RETURNING id",
                   table);
    return sql;
  }

  void upsert(const std::string& table, std::int64_t run, std::span<const Row> rows, std::span<const std::size_t> which,
              std::vector<std::optional<ErrorInfo>>& outcomes) {
    std::vector<std::string> params;
    params.reserve(which.size() * 5);
    const std::string run_text = std::to_string(run);
    for (std::size_t i : which) {
      params.push_back(rows[i].id);
      params.push_back(rows[i].record);
      params.push_back(real_array(rows[i].values));
      params.push_back(run_text);
      params.push_back(std::to_string(rows[i].line));
    }
    ResultPtr r = query(upsert_sql(table, which.size()), params);
    // Rows not returned: the WHERE kept an earlier line's row of this run.
    std::set<std::string_view> written;
    for (int t = 0; t < PQntuples(r.get()); ++t) written.insert(PQgetvalue(r.get(), t, 0));
    if (written.size() == which.size()) return;
    for (std::size_t i : which) {
      if (written.count(rows[i].id)) continue;
      ResultPtr l = query(fmt::format("SELECT line FROM \"{}\" WHERE id = $1", table), {rows[i].id});
      outcomes[i] = duplicate(rows[i], PQntuples(l.get()) ? std::stoull(PQgetvalue(l.get(), 0, 0)) : 0);
    }
  }

  void upsert_one_by_one(const std::string& table, std::int64_t run, std::span<const Row> rows,
                         std::span<const std::size_t> which, std::vector<std::optional<ErrorInfo>>& outcomes) {
    for (std::size_t i : which) {
      exec("SAVEPOINT sluice_row");
      try {
        const std::size_t one[] = {i};
        upsert(table, run, rows, one, outcomes);
        exec("RELEASE SAVEPOINT sluice_row");
      } catch (const RowDataError& e) {
        exec("ROLLBACK TO SAVEPOINT sluice_row");
        outcomes[i] = ErrorInfo{ErrorCode::store_rejected, e.what(), {}, {}};
      }
    }
  }

  ErrorInfo duplicate(const Row& r, std::uint64_t line) {
    return ErrorInfo{ErrorCode::duplicate_id,
                     fmt::format("id \"{}\" was already written by line {} of this run; ids must be unique in a run",
                                 r.id.substr(0, 200), line),
                     id_field_,
                     {}};
  }

  std::string uri_;
  std::string name_;
  bool read_only_;
  std::string locked_table_;
  PGconn* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> connect_postgres(const std::string& uri, const std::string& name, bool read_only) {
  return std::make_unique<PostgresBackend>(uri, name, read_only);
}

}  // namespace sluice::store
