// The code index's tables in SQLite (code_store.hpp). WAL journal with synchronous=NORMAL: a
// commit survives the process being killed at any moment; a power loss may lose the last
// commits (never half of one), which the next run finds unchanged on disk and redoes.

#include "code_store.hpp"

#include <sqlite3.h>

#include <array>

#include <fmt/format.h>

#include "sqlite_statement.hpp"

namespace sluice::store {

namespace {

bool busy(int rc) {
  const int primary = rc & 0xFF;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

constexpr const char* kSchema =
    "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT NOT "
    "NULL, language TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, chunks INTEGER NOT NULL, seen_run "
    "INTEGER NOT NULL);"
    "CREATE TABLE chunks (id TEXT PRIMARY KEY, path TEXT NOT NULL, ordinal INTEGER NOT NULL, kind TEXT NOT NULL, "
    "name TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, start_byte INTEGER NOT NULL, "
    "end_byte INTEGER NOT NULL, content TEXT NOT NULL, content_hash TEXT NOT NULL, text_hash TEXT NOT NULL, tokens "
    "INTEGER NOT NULL, embedding BLOB NOT NULL, run INTEGER NOT NULL, line INTEGER NOT NULL DEFAULT 0, "
    "record TEXT GENERATED ALWAYS AS (json_object('path', path, 'start_line', start_line, 'end_line', end_line, "
    "'name', name, 'kind', kind, 'text', content)) VIRTUAL);"
    "CREATE INDEX chunks_path ON chunks (path);"
    "CREATE INDEX chunks_text_hash ON chunks (text_hash);";

class SqliteCodeStore final : public CodeStore {
 public:
  SqliteCodeStore(const std::string& path, const std::string& uri, bool read_only)
      : path_(path), name_(uri), read_only_(read_only) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_,
                                   read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw Error(ErrorCode::io_error, fmt::format("{}: cannot open: {}", name_, message));
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 10000);
    if (!read_only) exec_setup("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
    StoreOptions so;
    so.uri = uri;
    so.table = kChunksTable;
    so.read_only = read_only;
    catalog_ = connect(so);
  }
  ~SqliteCodeStore() override {
    statements_ = {};
    sqlite3_close_v2(db_);
  }

  const std::string& name() const override { return name_; }

  std::optional<TableMeta> meta() override {
    auto m = catalog_->read_meta(kChunksTable);
    if (!m) {
      Statement other(db_, "SELECT 1 FROM sqlite_schema WHERE name IN ('files', 'chunks_path', 'chunks_text_hash') "
                           "COLLATE NOCASE");
      if (other.step() == SQLITE_ROW) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: it has a table \"files\" that is not a code index of sluice's: index into "
                                "another store",
                                name_));
      }
    }
    return m;
  }

  void create(const TableMeta& meta) override {
    catalog_->ensure_catalog();
    exec_setup("BEGIN IMMEDIATE");
    try {
      exec_setup(kSchema);
      Statement st(db_,
                   "INSERT INTO sluice_tables (name, model, model_identity, pooling, precision, dimensions, output_type, "
                   "normalized, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%SZ', "
                   "'now'))");
      st.text(1, kChunksTable).text(2, meta.model).text(3, meta.model_identity).text(4, meta.pooling);
      st.text(5, meta.precision).integer(6, meta.dimensions).text(7, to_string(meta.type));
      st.integer(8, meta.normalized ? 1 : 0);
      check_setup(st.step(), "cannot record the chunks table");
      exec_setup("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  void lock() override {
    catalog_->ensure_catalog();
    catalog_->lock_for_writing(kChunksTable);
  }

  std::int64_t start_run(const std::string& pipeline_id, const std::string& root) override {
    return catalog_->start_run(kChunksTable, pipeline_id, root, "path");
  }

  std::optional<StoredFile> file(const std::string& path) override {
    Statement& st = statement(kFile, "SELECT size, mtime_ns, inode, status FROM files WHERE path = ?1");
    st.text(1, path);
    std::optional<StoredFile> out;
    const int rc = st.step();
    if (rc == SQLITE_ROW) {
      StoredFile f;
      f.stat_known = !st.column_null(0);
      f.size = static_cast<std::uint64_t>(st.column_int(0));
      f.mtime_ns = st.column_int(1);
      f.inode = static_cast<std::uint64_t>(st.column_int(2));
      f.status = std::string(st.column_text(3));
      out = std::move(f);
    } else if (rc != SQLITE_DONE) {
      st.reset();
      check(rc, "cannot read the files table");
    }
    st.reset();
    return out;
  }

  bool embedding_of(const std::string& text_hash, std::string& bytes) override {
    Statement& st = statement(kEmbedding, "SELECT embedding FROM chunks WHERE text_hash = ?1 LIMIT 1");
    st.text(1, text_hash);
    const int rc = st.step();
    const bool found = rc == SQLITE_ROW;
    if (found) bytes.assign(st.column_blob(0));
    st.reset();
    if (!found && rc != SQLITE_DONE) check(rc, "cannot read the chunks table");
    return found;
  }

  std::vector<std::string> commit(std::span<const CodeFileWrite> files, std::int64_t run) override {
    std::vector<std::string> errors(files.size());
    exec("BEGIN IMMEDIATE");
    try {
      for (std::size_t i = 0; i < files.size(); ++i) {
        const CodeFileWrite& w = files[i];
        if (w.kind == CodeFileWrite::Kind::unchanged) {
          Statement& st = statement(kSeen, "UPDATE files SET seen_run = ?2 WHERE path = ?1");
          st.text(1, w.file.path).integer(2, run);
          step_done(st, "cannot mark a file as seen");
          continue;
        }
        exec("SAVEPOINT file");
        try {
          write_file(w, run);
          exec("RELEASE file");
        } catch (const StoreError& e) {
          if (e.transient) throw;
          exec("ROLLBACK TO file");
          exec("RELEASE file");
          errors[i] = e.what();
          CodeFileWrite failed = w;
          failed.kind = CodeFileWrite::Kind::fail;
          failed.file.status = "failed";
          failed.file.reason = e.what();
          write_file(failed, run);
        }
      }
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return errors;
  }

  std::uint64_t remove_unseen(std::int64_t run) override {
    exec("BEGIN IMMEDIATE");
    std::uint64_t removed = 0;
    try {
      Statement chunks(db_, "DELETE FROM chunks WHERE path IN (SELECT path FROM files WHERE seen_run < ?1)");
      chunks.integer(1, run);
      step_done(chunks, "cannot remove the chunks of files that are gone");
      Statement st(db_, "DELETE FROM files WHERE seen_run < ?1");
      st.integer(1, run);
      step_done(st, "cannot remove files that are gone");
      removed = static_cast<std::uint64_t>(sqlite3_changes(db_));
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return removed;
  }

  Counts counts() override {
    Counts c;
    Statement f(db_, "SELECT count(*) FROM files");
    check(f.step(), "cannot count files");
    c.files = static_cast<std::uint64_t>(f.column_int(0));
    Statement ch(db_, "SELECT count(*) FROM chunks");
    check(ch.step(), "cannot count chunks");
    c.chunks = static_cast<std::uint64_t>(ch.column_int(0));
    return c;
  }

 private:
  enum StatementId { kFile, kEmbedding, kSeen, kDeleteChunks, kInsertChunk, kUpsertFile, kUpsertFailed, kCount };

  Statement& statement(StatementId id, const char* sql) {
    auto& s = statements_[id];
    if (!s) s = std::make_unique<Statement>(db_, sql);
    return *s;
  }

  void write_file(const CodeFileWrite& w, std::int64_t run) {
    const CodeFileRow& f = w.file;
    if (w.kind == CodeFileWrite::Kind::fail) {
      // The old chunks stay; the row says why, without a stat, so the next run reads it again.
      Statement& st = statement(
          kUpsertFailed,
          "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run) "
          "VALUES (?1, NULL, NULL, NULL, '', ?2, 'failed', ?3, (SELECT count(*) FROM chunks WHERE path = ?1), ?4) "
          "ON CONFLICT (path) DO UPDATE SET size = NULL, mtime_ns = NULL, inode = NULL, sha256 = '', status = "
          "'failed', reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run");
      st.text(1, f.path).text(2, f.language).text(3, f.reason).integer(4, run);
      step_done(st, "cannot write the file's row");
      return;
    }
    Statement& del = statement(kDeleteChunks, "DELETE FROM chunks WHERE path = ?1");
    del.text(1, f.path);
    step_done(del, "cannot delete the file's old chunks");
    Statement& ins = statement(
        kInsertChunk,
        "INSERT INTO chunks (id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, content, "
        "content_hash, text_hash, tokens, embedding, run, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
        "?12, ?13, ?14, ?15, ?16)");
    for (const CodeChunkRow& c : w.chunks) {
      ins.text(1, c.id).text(2, f.path).integer(3, c.ordinal).text(4, c.kind).text(5, c.name);
      ins.integer(6, c.start_line).integer(7, c.end_line);
      ins.integer(8, static_cast<std::int64_t>(c.start_byte)).integer(9, static_cast<std::int64_t>(c.end_byte));
      ins.text(10, c.content).text(11, c.content_hash).text(12, c.text_hash).integer(13, c.tokens);
      ins.blob(14, c.embedding).integer(15, run).integer(16, c.start_line);
      step_done(ins, "cannot insert a chunk");
    }
    Statement& up = statement(
        kUpsertFile,
        "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run) VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = "
        "excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, language = excluded.language, status = "
        "excluded.status, reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run");
    up.text(1, f.path).integer(2, static_cast<std::int64_t>(f.size)).integer(3, f.mtime_ns);
    up.integer(4, static_cast<std::int64_t>(f.inode)).text(5, f.sha256).text(6, f.language).text(7, f.status);
    up.text(8, f.reason).integer(9, static_cast<std::int64_t>(w.chunks.size())).integer(10, run);
    step_done(up, "cannot write the file's row");
  }

  void step_done(Statement& st, const char* what) {
    const int rc = st.step();
    st.reset();
    check(rc, what);
  }

  void check(int rc, const char* what) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
    throw StoreError(fmt::format("{}: {}: {}", name_, what, sqlite3_errmsg(db_)), busy(rc));
  }

  void check_setup(int rc, const char* what) {
    try {
      check(rc, what);
    } catch (const StoreError& e) {
      throw Error(ErrorCode::io_error, e.what());
    }
  }

  void exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string message = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      throw StoreError(fmt::format("{}: {}", name_, message), busy(rc));
    }
  }

  void exec_setup(const std::string& sql) {
    try {
      exec(sql);
    } catch (const StoreError& e) {
      throw Error(ErrorCode::io_error, e.what());
    }
  }

  std::string path_;
  std::string name_;
  bool read_only_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Backend> catalog_;
  std::array<std::unique_ptr<Statement>, kCount> statements_;
};

}  // namespace

std::unique_ptr<CodeStore> CodeStore::open(const std::string& uri, bool read_only) {
  if (!uri.starts_with("sqlite:")) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: the code index is kept in SQLite stores (sqlite:PATH); PostgreSQL is not supported "
                            "by index yet",
                            redact_uri(uri)));
  }
  std::string path = uri.substr(7);
  if (path.starts_with("//")) path = path.substr(2);
  if (path.empty()) throw Error(ErrorCode::invalid_argument, "sqlite: needs a path, e.g. sqlite:index.db");
  return std::make_unique<SqliteCodeStore>(path, uri, read_only);
}

}  // namespace sluice::store
