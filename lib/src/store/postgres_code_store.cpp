// The code index's tables in PostgreSQL (code_store.hpp), through libpq: the same tables and
// semantics as the SQLite store (code_store.cpp), with PostgreSQL's types. `chunks` is also
// readable as an embed table by postgres_store.cpp (search --table chunks): `embedding real[]`
// and `record jsonb`. The record is written by each INSERT from the row's own columns
// (jsonb_build_object is only STABLE, so it cannot be a generated column).
//
// Every value is a parameter of a prepared statement (text format). PostgreSQL's text holds
// no NUL byte (libpq would cut the value there): a chunk holding one fails its file alone.
// A lost connection (SQLSTATE class 08, a server shut down) is a transient StoreError.

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <initializer_list>

#include <fmt/format.h>

#include "code_store.hpp"

namespace sluice::store {

namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

constexpr const char* kCreateFiles =
    "CREATE TABLE files (path text PRIMARY KEY, size bigint, mtime_ns bigint, inode bigint, sha256 text NOT NULL, "
    "language text NOT NULL, status text NOT NULL, reason text NOT NULL, chunks integer NOT NULL, seen_run bigint NOT "
    "NULL)";
constexpr const char* kCreateChunks =
    "CREATE TABLE chunks (id text PRIMARY KEY, path text NOT NULL, ordinal integer NOT NULL, kind text NOT NULL, name "
    "text NOT NULL, start_line integer NOT NULL, end_line integer NOT NULL, start_byte bigint NOT NULL, end_byte "
    "bigint NOT NULL, content text NOT NULL, content_hash text NOT NULL, text_hash text NOT NULL, tokens integer NOT "
    "NULL, embedding real[] NOT NULL, run bigint NOT NULL, line bigint NOT NULL DEFAULT 0, record jsonb NOT NULL)";

// The key postgres_store.cpp's writers lock a table by (PostgresBackend::take_lock()): an
// index run and an embed run writing the table "chunks" of one database exclude each other.
constexpr const char* kLockSql = "SELECT pg_try_advisory_lock(hashtext('sluice table ' || $1))";

enum StatementId { kFile, kEmbedding, kSeen, kDeleteChunks, kInsertChunk, kUpsertFile, kUpsertFailed, kCount };

struct StatementSql {
  const char* name;
  const char* sql;
};

constexpr std::array<StatementSql, kCount> kStatements = {{
    {"sluice_code_file", "SELECT size, mtime_ns, inode, status FROM files WHERE path = $1"},
    {"sluice_code_embedding", "SELECT embedding::text FROM chunks WHERE text_hash = $1 LIMIT 1"},
    {"sluice_code_seen", "UPDATE files SET seen_run = $2 WHERE path = $1"},
    {"sluice_code_delete_chunks", "DELETE FROM chunks WHERE path = $1"},
    {"sluice_code_insert_chunk",
     "INSERT INTO chunks (id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, content, "
     "content_hash, text_hash, tokens, embedding, run, line, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
     "$11, $12, $13, $14::real[], $15, $16, jsonb_build_object('path', $2::text, 'start_line', $6::integer, "
     "'end_line', $7::integer, 'name', $5::text, 'kind', $4::text, 'text', $10::text))"},
    {"sluice_code_upsert_file",
     "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run) VALUES ($1, "
     "$2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = "
     "excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, language = excluded.language, status = "
     "excluded.status, reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run"},
    // The old chunks stay; the row says why, without a stat, so the next run reads it again.
    {"sluice_code_upsert_failed",
     "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run) VALUES ($1, "
     "NULL, NULL, NULL, '', $2, 'failed', $3, (SELECT count(*) FROM chunks WHERE path = $1), $4) ON CONFLICT (path) "
     "DO UPDATE SET size = NULL, mtime_ns = NULL, inode = NULL, sha256 = '', status = 'failed', reason = "
     "excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run"},
}};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A value for a text parameter: integers in decimal.
std::string num(std::int64_t v) { return std::to_string(v); }

// The float32 little-endian bytes as a real[] literal, each value in its shortest form that
// reads back to the same float.
std::string real_array(const std::string& bytes) {
  std::string out = "{";
  for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
    std::uint32_t u = 0;
    for (int k = 0; k < 4; ++k) u |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + k])) << (8 * k);
    if (i) out.push_back(',');
    fmt::format_to(std::back_inserter(out), "{}", std::bit_cast<float>(u));
  }
  out.push_back('}');
  return out;
}

// A real[]'s text ("{0.1,-2e-05,NaN}") as float32 little-endian bytes; false when it is not
// a flat array of numbers.
bool parse_real_array(std::string_view text, std::string& bytes) {
  bytes.clear();
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return false;
  text = text.substr(1, text.size() - 2);
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    float v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc() || end != item.data() + item.size()) return false;
    const auto u = std::bit_cast<std::uint32_t>(v);
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((u >> (8 * k)) & 0xFF));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return true;
}

class PostgresCodeStore final : public CodeStore {
 public:
  PostgresCodeStore(const std::string& uri, bool read_only) : uri_(uri), name_(redact_uri(uri)), read_only_(read_only) {
    conn_ = PQconnectdb(uri.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string message = trimmed(PQerrorMessage(conn_));
      PQfinish(conn_);
      conn_ = nullptr;
      throw Error(ErrorCode::io_error, fmt::format("{}: cannot connect: {}", name_, message));
    }
    // Notices (an index's implicit name, say) are not the user's business.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    setup([&] {
      // Text in UTF-8 whatever the client's locale says; vectors read back exactly (servers
      // before 12 print 6 digits of a real unless asked for more).
      exec("SET client_encoding = 'UTF8'");
      exec("SET extra_float_digits = 3");
      if (read_only) exec("SET default_transaction_read_only = on");
    });
  }
  ~PostgresCodeStore() override {
    catalog_.reset();
    if (conn_) PQfinish(conn_);
  }

  const std::string& name() const override { return name_; }

  std::optional<TableMeta> meta() override {
    auto m = catalog().read_meta(kChunksTable);
    if (!m) {
      setup([&] {
        // Index names share the tables' namespace in PostgreSQL: any of them would stop create().
        ResultPtr r = query(
            "SELECT to_regclass('files') IS NOT NULL OR to_regclass('chunks') IS NOT NULL OR "
            "to_regclass('chunks_path') IS NOT NULL OR to_regclass('chunks_text_hash') IS NOT NULL",
            {}, "cannot read the schema");
        if (std::string_view(PQgetvalue(r.get(), 0, 0)) == "t") {
          throw Error(ErrorCode::invalid_argument,
                      fmt::format("{}: it has a table \"files\" that is not a code index of sluice's: index into "
                                  "another store",
                                  name_));
        }
      });
    }
    return m;
  }

  void create(const TableMeta& meta) override {
    catalog().ensure_catalog();
    setup([&] {
      exec("BEGIN");
      try {
        exec(kCreateFiles);
        exec(kCreateChunks);
        exec("CREATE INDEX chunks_path ON chunks (path)");
        exec("CREATE INDEX chunks_text_hash ON chunks (text_hash)");
        query(
            "INSERT INTO sluice_tables (name, model, model_identity, pooling, precision, dimensions, output_type, "
            "normalized) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            {kChunksTable, meta.model, meta.model_identity, meta.pooling, meta.precision, num(meta.dimensions),
             std::string(to_string(meta.type)), meta.normalized ? "true" : "false"},
            "cannot record the chunks table");
        commit_now();
      } catch (...) {
        rollback_quietly();
        throw;
      }
    });
  }

  void lock() override {
    catalog().ensure_catalog();
    // On this connection, the one that writes: the lock lasts as long as the writes can.
    setup([&] {
      ResultPtr r = query(kLockSql, {kChunksTable}, "cannot lock the store");
      if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: another run is writing this store's code index now; wait for it to end", name_));
      }
    });
  }

  std::int64_t start_run(const std::string& pipeline_id, const std::string& root) override {
    return catalog().start_run(kChunksTable, pipeline_id, root, "path");
  }

  std::optional<StoredFile> file(const std::string& path) override {
    ResultPtr r;
    try {
      r = prepared(kFile, {path}, "cannot read the files table");
    } catch (const StoreError& e) {
      // A path the database cannot hold (not UTF-8, or not in its encoding) has no row: the
      // file is read, and fails alone when it is written.
      if (!e.transient && (sqlstate_ == "22021" || sqlstate_ == "22P05")) return std::nullopt;
      throw;
    }
    if (PQntuples(r.get()) == 0) return std::nullopt;
    StoredFile f;
    f.stat_known = !PQgetisnull(r.get(), 0, 0);
    if (f.stat_known) {
      f.size = static_cast<std::uint64_t>(std::stoll(PQgetvalue(r.get(), 0, 0)));
      f.mtime_ns = PQgetisnull(r.get(), 0, 1) ? 0 : std::stoll(PQgetvalue(r.get(), 0, 1));
      f.inode = PQgetisnull(r.get(), 0, 2) ? 0 : static_cast<std::uint64_t>(std::stoll(PQgetvalue(r.get(), 0, 2)));
    }
    f.status = PQgetvalue(r.get(), 0, 3);
    return f;
  }

  bool embedding_of(const std::string& text_hash, std::string& bytes) override {
    ResultPtr r = prepared(kEmbedding, {text_hash}, "cannot read the chunks table");
    if (PQntuples(r.get()) == 0 || PQgetisnull(r.get(), 0, 0)) return false;
    return parse_real_array(PQgetvalue(r.get(), 0, 0), bytes);
  }

  std::vector<std::string> commit(std::span<const CodeFileWrite> files, std::int64_t run) override {
    std::vector<std::string> errors(files.size());
    exec("BEGIN");
    try {
      for (std::size_t i = 0; i < files.size(); ++i) {
        const CodeFileWrite& w = files[i];
        if (w.kind == CodeFileWrite::Kind::unchanged) {
          prepared(kSeen, {w.file.path, num(run)}, "cannot mark a file as seen");
          continue;
        }
        exec("SAVEPOINT file");
        try {
          write_file(w, run);
          exec("RELEASE SAVEPOINT file");
          continue;
        } catch (const StoreError& e) {
          if (e.transient) throw;
          exec("ROLLBACK TO SAVEPOINT file");
          errors[i] = e.what();
        }
        CodeFileWrite failed = w;
        failed.kind = CodeFileWrite::Kind::fail;
        failed.file.status = "failed";
        failed.file.reason = errors[i];
        try {
          write_file(failed, run);
        } catch (const StoreError& e) {
          // Its path itself is refused (over an index entry's size, say): no row, so the next
          // run reads the file again; the error is this file's, not the run's.
          if (e.transient) throw;
          exec("ROLLBACK TO SAVEPOINT file");
          errors[i] += " (nor can its row be written)";
        }
        exec("RELEASE SAVEPOINT file");
      }
      commit_now();
    } catch (...) {
      rollback_quietly();
      throw;
    }
    return errors;
  }

  std::uint64_t remove_unseen(std::int64_t run) override {
    exec("BEGIN");
    std::uint64_t removed = 0;
    try {
      query("DELETE FROM chunks WHERE path IN (SELECT path FROM files WHERE seen_run < $1)", {num(run)},
            "cannot remove the chunks of files that are gone");
      ResultPtr r = query("DELETE FROM files WHERE seen_run < $1", {num(run)}, "cannot remove files that are gone");
      removed = std::stoull(PQcmdTuples(r.get()));
      commit_now();
    } catch (...) {
      rollback_quietly();
      throw;
    }
    return removed;
  }

  Counts counts() override {
    ResultPtr r = query("SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM chunks)", {}, "cannot count rows");
    Counts c;
    c.files = std::stoull(PQgetvalue(r.get(), 0, 0));
    c.chunks = std::stoull(PQgetvalue(r.get(), 0, 1));
    return c;
  }

 private:
  // The catalog (sluice_tables, sluice_runs) through postgres_store.cpp, on a connection of
  // its own, made when first needed (the source's read-only store never needs it).
  Backend& catalog() {
    if (!catalog_) {
      StoreOptions so;
      so.uri = uri_;
      so.table = kChunksTable;
      so.read_only = read_only_;
      catalog_ = connect(so);
    }
    return *catalog_;
  }

  void write_file(const CodeFileWrite& w, std::int64_t run) {
    const CodeFileRow& f = w.file;
    if (w.kind == CodeFileWrite::Kind::fail) {
      prepared(kUpsertFailed, {f.path, f.language, without_nul(f.reason), num(run)}, "cannot write the file's row");
      return;
    }
    for (const CodeChunkRow& c : w.chunks) {
      if (const std::size_t nul = c.content.find('\0'); nul != std::string::npos) {
        const auto line = c.start_line + std::count(c.content.begin(), c.content.begin() + nul, '\n');
        throw StoreError(
            fmt::format("{}: line {} holds a NUL byte (\\0), which PostgreSQL cannot store in text", name_, line),
            false);
      }
    }
    prepared(kDeleteChunks, {f.path}, "cannot delete the file's old chunks");
    const std::string run_text = num(run);
    for (const CodeChunkRow& c : w.chunks) {
      prepared(kInsertChunk,
               {c.id, f.path, num(c.ordinal), c.kind, c.name, num(c.start_line), num(c.end_line),
                num(static_cast<std::int64_t>(c.start_byte)), num(static_cast<std::int64_t>(c.end_byte)), c.content,
                c.content_hash, c.text_hash, num(c.tokens), real_array(c.embedding), run_text, num(c.start_line)},
               "cannot insert a chunk");
    }
    prepared(kUpsertFile,
             {f.path, num(static_cast<std::int64_t>(f.size)), num(f.mtime_ns), num(static_cast<std::int64_t>(f.inode)),
              f.sha256, f.language, f.status, f.reason, num(static_cast<std::int64_t>(w.chunks.size())), run_text},
             "cannot write the file's row");
  }

  static std::string without_nul(std::string s) {
    for (char& c : s) {
      if (c == '\0') c = ' ';
    }
    return s;
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

  [[noreturn]] void fail(PGresult* r, std::string_view what) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    std::string message = trimmed(primary ? primary : r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    sqlstate_ = state ? state : "";
    const bool lost = PQstatus(conn_) != CONNECTION_OK || sqlstate_.starts_with("08") || sqlstate_ == "57P01" ||
                      sqlstate_ == "57P02" || sqlstate_ == "57P03";
    throw StoreError(fmt::format("{}: {}: {}", name_, what, message.empty() ? "connection lost" : message), lost);
  }

  void check(const ResultPtr& r, std::string_view what) {
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r.get(), what);
  }

  void exec(const char* sql) {
    ResultPtr r(PQexec(conn_, sql));
    check(r, std::string_view(sql).substr(0, 40));
  }

  // libpq passes text parameters as C strings: a NUL would cut the value short.
  void check_params(std::initializer_list<std::string> params, std::string_view what,
                    std::vector<const char*>& values) {
    values.clear();
    for (const std::string& p : params) {
      if (p.find('\0') != std::string::npos) {
        sqlstate_.clear();
        throw StoreError(
            fmt::format("{}: {}: a value holds a NUL byte (\\0), which PostgreSQL cannot store in text", name_, what),
            false);
      }
      values.push_back(p.c_str());
    }
  }

  ResultPtr query(const char* sql, std::initializer_list<std::string> params, std::string_view what) {
    std::vector<const char*> values;
    check_params(params, what, values);
    ResultPtr r(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
    check(r, what);
    return r;
  }

  ResultPtr prepared(StatementId id, std::initializer_list<std::string> params, std::string_view what) {
    std::vector<const char*> values;
    check_params(params, what, values);
    const StatementSql& s = kStatements[id];
    if (!prepared_[id]) {
      ResultPtr p(PQprepare(conn_, s.name, s.sql, static_cast<int>(values.size()), nullptr));
      check(p, what);
      prepared_[id] = true;
    }
    ResultPtr r(PQexecPrepared(conn_, s.name, static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0));
    check(r, what);
    return r;
  }

  // COMMIT of a transaction that an error ended is a ROLLBACK: never taken for a commit.
  void commit_now() {
    if (PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
      throw StoreError(fmt::format("{}: the transaction was ended by an error", name_),
                       PQstatus(conn_) != CONNECTION_OK);
    }
    ResultPtr r(PQexec(conn_, "COMMIT"));
    check(r, "COMMIT");
    if (std::string_view(PQcmdStatus(r.get())) != "COMMIT") {
      throw StoreError(fmt::format("{}: the transaction was rolled back", name_), false);
    }
  }

  void rollback_quietly() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      PQclear(PQexec(conn_, "ROLLBACK"));
    }
  }

  std::string uri_;
  std::string name_;
  bool read_only_;
  PGconn* conn_ = nullptr;
  std::unique_ptr<Backend> catalog_;
  std::array<bool, kCount> prepared_{};
  std::string sqlstate_;  // of the last error
};

}  // namespace

std::unique_ptr<CodeStore> open_postgres_code_store(const std::string& uri, bool read_only) {
  return std::make_unique<PostgresCodeStore>(uri, read_only);
}

}  // namespace sluice::store
