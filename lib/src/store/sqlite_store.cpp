// The SQLite store: one file, WAL journal, synchronous=FULL (a commit is on disk when it
// returns), rows upserted with prepared statements.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include "sqlite_statement.hpp"
#include "store_backend.hpp"

namespace sluice::store {

namespace {

// Errors of one row (the record's fault) rather than of the database.
bool row_error(int rc) {
  const int primary = rc & 0xFF;
  return primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG || primary == SQLITE_MISMATCH;
}

class SqliteBackend final : public Backend {
 public:
  SqliteBackend(std::string path, std::string name, bool read_only)
      : path_(std::move(path)), name_(std::move(name)), read_only_(read_only) {
    open();
  }
  ~SqliteBackend() override {
    sqlite3_close_v2(db_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  void lock_for_writing(const std::string&) override {
    // A lock file beside the database (SQLite's own locks last one transaction, and closing
    // any descriptor of the database file would drop them): one writing run per file.
    const std::string path = path_ + ".sluice-lock";
    lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) throw Error(ErrorCode::io_error, fmt::format("{}: cannot open {}", name_, path));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: another run is writing this store now ({} is locked); wait for it to end", name_,
                              path));
    }
  }

  const std::string& name() const override { return name_; }

  void ensure_catalog() override {
    exec_setup(
        "CREATE TABLE IF NOT EXISTS sluice_tables (name TEXT PRIMARY KEY, model TEXT NOT NULL, model_identity TEXT "
        "NOT NULL, pooling TEXT NOT NULL, precision TEXT NOT NULL, dimensions INTEGER NOT NULL, output_type TEXT NOT "
        "NULL, normalized INTEGER NOT NULL, created_at TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS sluice_runs (table_name TEXT NOT NULL, run INTEGER NOT NULL, pipeline_id TEXT NOT "
        "NULL, input TEXT NOT NULL, id_field TEXT NOT NULL, started_at TEXT NOT NULL, checkpoint TEXT, PRIMARY KEY "
        "(table_name, run));");
    // Writable: a write lock taken and let go (a read-only file or folder fails here, before
    // any model is loaded).
    exec_setup("BEGIN IMMEDIATE; ROLLBACK;");
  }

  std::optional<TableMeta> read_meta(const std::string& table) override {
    Statement catalog(db_, "SELECT 1 FROM sqlite_schema WHERE name = 'sluice_tables'");
    if (catalog.step() != SQLITE_ROW) return std::nullopt;  // read only, and nothing written yet
    Statement st(db_,
                 "SELECT model, model_identity, dimensions, output_type, normalized, pooling, precision FROM "
                 "sluice_tables WHERE name = ?1");
    st.text(1, table);
    if (st.step() == SQLITE_ROW) {
      TableMeta m;
      m.model = std::string(st.column_text(0));
      m.model_identity = std::string(st.column_text(1));
      m.dimensions = static_cast<std::uint32_t>(st.column_int(2));
      m.type = parse_vector_type(st.column_text(3)).value_or(VectorType::float32);
      m.normalized = st.column_int(4) != 0;
      m.pooling = std::string(st.column_text(5));
      m.precision = std::string(st.column_text(6));
      return m;
    }
    Statement other(db_, "SELECT 1 FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE");
    other.text(1, table);
    if (other.step() == SQLITE_ROW) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: a table or index of that name exists and was not made by sluice (it is not in "
                              "sluice_tables): choose another name with --table",
                              name_));
    }
    return std::nullopt;
  }

  void create_table(const std::string& table, const TableMeta& meta) override {
    exec_setup("BEGIN IMMEDIATE");
    try {
      exec_setup(fmt::format("CREATE TABLE \"{}\" (id TEXT PRIMARY KEY, record TEXT NOT NULL, embedding BLOB NOT "
                             "NULL, run INTEGER NOT NULL, line INTEGER NOT NULL)",
                             table));
      Statement st(db_,
                   "INSERT INTO sluice_tables (name, model, model_identity, pooling, precision, dimensions, output_type, "
                   "normalized, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%SZ', "
                   "'now'))");
      st.text(1, table).text(2, meta.model).text(3, meta.model_identity).text(4, meta.pooling).text(5, meta.precision);
      st.integer(6, meta.dimensions).text(7, to_string(meta.type)).integer(8, meta.normalized ? 1 : 0);
      check(st.step(), "cannot record the table");
      exec_setup("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  std::uint64_t count_rows(const std::string& table) override {
    Statement st(db_, fmt::format("SELECT count(*) FROM \"{}\"", table));
    check(st.step(), "cannot count rows");
    return static_cast<std::uint64_t>(st.column_int(0));
  }

  std::optional<RunRow> last_run(const std::string& table) override {
    Statement st(db_,
                 "SELECT run, id_field, checkpoint FROM sluice_runs WHERE table_name = ?1 ORDER BY run DESC LIMIT 1");
    st.text(1, table);
    if (st.step() != SQLITE_ROW) return std::nullopt;
    return RunRow{st.column_int(0), std::string(st.column_text(1)),
                  st.column_null(2) ? std::string() : std::string(st.column_text(2))};
  }

  std::int64_t start_run(const std::string& table, const std::string& pipeline_id, const std::string& input,
                         const std::string& id_field) override {
    Statement st(db_,
                 "INSERT INTO sluice_runs (table_name, run, pipeline_id, input, id_field, started_at) VALUES (?1, "
                 "(SELECT coalesce(max(run), 0) + 1 FROM sluice_runs WHERE table_name = ?1), ?2, ?3, ?4, "
                 "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')) RETURNING run");
    st.text(1, table).text(2, pipeline_id).text(3, input).text(4, id_field);
    const int rc = st.step();
    if (rc != SQLITE_ROW) check(rc, "cannot record the run");
    return st.column_int(0);
  }

  std::vector<std::optional<ErrorInfo>> commit(const std::string& table, std::int64_t run, std::span<const Row> rows,
                                               const std::string& checkpoint, VectorType) override {
    std::vector<std::optional<ErrorInfo>> outcomes(rows.size());
    exec("BEGIN IMMEDIATE");
    try {
      if (!rows.empty()) {
        if (!upsert_ || upsert_table_ != table) {
          upsert_ = std::make_unique<Statement>(
              db_, fmt::format("INSERT INTO \"{0}\" (id, record, embedding, run, line) VALUES (?1, ?2, ?3, ?4, ?5) "
                               "ON CONFLICT (id) DO UPDATE SET record = excluded.record, embedding = "
                               "excluded.embedding, run = excluded.run, line = excluded.line "
                               "WHERE NOT (\"{0}\".run = excluded.run AND \"{0}\".line <> excluded.line)",
                               table));
          line_of_ = std::make_unique<Statement>(db_, fmt::format("SELECT line FROM \"{}\" WHERE id = ?1", table));
          upsert_table_ = table;
        }
        for (std::size_t i = 0; i < rows.size(); ++i) {
          const Row& r = rows[i];
          upsert_->text(1, r.id).text(2, r.record).blob(3, r.embedding);
          upsert_->integer(4, run).integer(5, static_cast<std::int64_t>(r.line));
          const int rc = upsert_->step();
          upsert_->reset();
          if (rc == SQLITE_DONE) {
            if (sqlite3_changes(db_) == 0) outcomes[i] = duplicate(r);
          } else if (row_error(rc)) {
            outcomes[i] = ErrorInfo{ErrorCode::store_rejected,
                                    fmt::format("{} refused the record: {}", name_, sqlite3_errmsg(db_)), {}, {}};
          } else {
            check(rc, "cannot write a row");
          }
        }
      }
      if (!checkpoint.empty()) {
        Statement st(db_, "UPDATE sluice_runs SET checkpoint = ?1 WHERE table_name = ?2 AND run = ?3");
        st.text(1, checkpoint).text(2, table).integer(3, run);
        check(st.step(), "cannot store the checkpoint");
      }
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return outcomes;
  }

  void reconnect() override {
    upsert_.reset();
    line_of_.reset();
    sqlite3_close_v2(db_);
    db_ = nullptr;
    open();
  }

  std::uint64_t count_run_rows(const std::string& table, std::int64_t run) override {
    Statement st(db_, fmt::format("SELECT count(*) FROM \"{}\" WHERE run = ?1", table));
    st.integer(1, run);
    check(st.step(), "cannot count rows");
    return static_cast<std::uint64_t>(st.column_int(0));
  }

  std::string table_version(const std::string& table) override {
    Statement st(db_,
                 "SELECT run, coalesce(checkpoint, '') FROM sluice_runs WHERE table_name = ?1 ORDER BY run DESC LIMIT 1");
    st.text(1, table);
    std::string last = "none";
    if (st.step() == SQLITE_ROW) last = fmt::format("{} {}", st.column_int(0), std::hash<std::string_view>{}(st.column_text(1)));
    return fmt::format("rows {}, last run {}", count_rows(table), last);
  }

  std::vector<std::pair<std::string, std::string>> fetch_records(const std::string& table,
                                                                 std::span<const std::string> ids) override {
    std::vector<std::pair<std::string, std::string>> out;
    Statement st(db_, fmt::format("SELECT record FROM \"{}\" WHERE id = ?1", table));
    for (const std::string& id : ids) {
      st.text(1, id);
      if (st.step() == SQLITE_ROW) out.emplace_back(id, std::string(st.column_text(0)));
      st.reset();
    }
    return out;
  }

  void scan(const std::string& table, VectorType type, std::uint32_t dimensions, const ScanFn& fn) override {
    Statement st(db_, fmt::format("SELECT id, record, embedding FROM \"{}\"", table));
    const std::size_t want = vector_bytes(type, dimensions);
    std::vector<float> v;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      const std::string_view bytes = st.column_blob(2);
      if (bytes.size() != want) continue;  // not written by sluice: skipped
      decode_vector(bytes, type, dimensions, v);
      fn(st.column_text(0), st.column_text(1), v);
    }
    if (rc != SQLITE_DONE) check(rc, "cannot read rows");
  }

 private:
  void open() {
    db_ = sqlite_open(path_, name_, read_only_);
    // WAL: readers (search) do not block the writer; FULL: each commit is synced.
    if (!read_only_) exec_setup("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
  }

  ErrorInfo duplicate(const Row& r) {
    line_of_->text(1, r.id);
    std::int64_t line = 0;
    if (line_of_->step() == SQLITE_ROW) line = line_of_->column_int(0);
    line_of_->reset();
    return ErrorInfo{ErrorCode::duplicate_id,
                     fmt::format("id \"{}\" was already written by line {} of this run; ids must be unique in a run",
                                 r.id.substr(0, 200), line),
                     id_field_,
                     {}};
  }

  void check(int rc, const char* what) { sqlite_check(db_, name_, rc, what); }

  void exec(const std::string& sql) { sqlite_exec(db_, name_, sql); }

  // Setup statements report as sluice::Error (before the run: exit 2 or 1).
  void exec_setup(const std::string& sql) { sqlite_exec_setup(db_, name_, sql); }

  std::string path_;
  std::string name_;
  bool read_only_;
  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;
  std::unique_ptr<Statement> upsert_, line_of_;
  std::string upsert_table_;
};

}  // namespace

std::unique_ptr<Backend> connect_sqlite(const std::string& path, const std::string& name, bool read_only) {
  return std::make_unique<SqliteBackend>(path, name, read_only);
}

}  // namespace sluice::store
