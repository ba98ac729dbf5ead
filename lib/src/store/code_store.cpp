// The code index's tables in SQLite (code_store.hpp). WAL journal with synchronous=NORMAL: a
// commit survives the process being killed at any moment; a power loss may lose the last
// commits (never half of one), which the next run finds unchanged on disk and redoes.

#include "code_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "sqlite_statement.hpp"

namespace sluice::store {

namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 "
    "TEXT NOT NULL, language TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, chunks INTEGER NOT NULL, "
    "seen_run INTEGER NOT NULL, ctime_ns INTEGER);"
    "CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY, path TEXT NOT NULL, ordinal INTEGER NOT NULL, kind TEXT "
    "NOT NULL, name TEXT NOT NULL, start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, start_byte INTEGER NOT "
    "NULL, end_byte INTEGER NOT NULL, content TEXT NOT NULL, content_hash TEXT NOT NULL, text_hash TEXT NOT NULL, "
    "tokens INTEGER NOT NULL, embedding BLOB NOT NULL, run INTEGER NOT NULL, line INTEGER NOT NULL DEFAULT 0, symbol "
    "TEXT NOT NULL DEFAULT '', record TEXT GENERATED ALWAYS AS (json_object('path', path, 'start_line', start_line, "
    "'end_line', end_line, 'name', name, 'kind', kind, 'text', content)) VIRTUAL);"
    "CREATE INDEX IF NOT EXISTS chunks_path ON chunks (path);"
    "CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks (text_hash);"
    "CREATE INDEX IF NOT EXISTS chunks_symbol ON chunks (symbol);"
    "CREATE TABLE IF NOT EXISTS edges (source_id TEXT NOT NULL, target_id TEXT, target_name TEXT NOT NULL, kind TEXT "
    "NOT NULL, source_path TEXT NOT NULL, target_path TEXT);"
    "CREATE INDEX IF NOT EXISTS edges_source_path ON edges (source_path);"
    "CREATE INDEX IF NOT EXISTS edges_source ON edges (source_id);"
    "CREATE INDEX IF NOT EXISTS edges_target ON edges (target_id);"
    "CREATE INDEX IF NOT EXISTS edges_imports ON edges (source_path, kind, target_path);"
    "CREATE TABLE IF NOT EXISTS chunk_metrics (chunk_id TEXT PRIMARY KEY, fan_in INTEGER NOT NULL, fan_out INTEGER "
    "NOT NULL, pagerank REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sluice_code_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO sluice_code_state VALUES ('graph_stale', '1');";

// The last part of a qualified name ("pkg.mod.Class.method" -> "method", "ns::f" -> "f").
std::string_view symbol_of(std::string_view name) {
  const std::size_t dot = name.find_last_of(".:");
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

// Chunks that are definitions (what a call or a base can name): not code between definitions,
// Markdown sections or lines.
constexpr const char* kDefinitionKinds = "('function', 'method', 'class', 'struct', 'enum', 'interface', 'module', "
                                         "'type', 'impl', 'skeleton', 'part')";

class SqliteCodeStore final : public CodeStore {
 public:
  SqliteCodeStore(const std::string& path, const std::string& uri, bool read_only)
      : path_(path), name_(uri), read_only_(read_only) {
    db_ = sqlite_open(path, name_, read_only);
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
    std::optional<TableMeta> m;
    try {
      m = catalog_->read_meta(kChunksTable);
    } catch (const Error&) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: it has a table \"chunks\" that sluice did not make: index into another store",
                              name_));
    }
    if (m) {
      // A chunks table of `embed --table chunks` is in the catalog too, without the index's columns.
      Statement index(db_, "SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'text_hash'");
      Statement files(db_, "SELECT 1 FROM sqlite_schema WHERE name = 'files'");
      if (index.step() != SQLITE_ROW || files.step() != SQLITE_ROW) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: its table \"chunks\" was made by pipeline-run embed, not by index: index into "
                                "another store",
                                name_));
      }
    }
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

  void upgrade() override {
    // An index made by an earlier version: what it lacks is added (tables, columns, indexes).
    Statement has(db_, "SELECT 1 FROM sqlite_schema WHERE name = 'files'");
    Statement chunks(db_, "SELECT 1 FROM sqlite_schema WHERE name = 'chunks'");
    if (has.step() != SQLITE_ROW || chunks.step() != SQLITE_ROW) return;
    exec_setup("BEGIN IMMEDIATE");
    try {
      for (const auto& [table, column, type] :
           {std::tuple{"chunks", "symbol", "TEXT NOT NULL DEFAULT ''"}, std::tuple{"files", "ctime_ns", "INTEGER"}}) {
        Statement col(db_, fmt::format("SELECT 1 FROM pragma_table_info('{}') WHERE name = '{}'", table, column));
        if (col.step() != SQLITE_ROW) exec_setup(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table, column, type));
      }
      exec_setup(kSchema);
      exec_setup("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  std::string state(const std::string& key) override {
    Statement table(db_, "SELECT 1 FROM sqlite_schema WHERE name = 'sluice_code_state'");
    if (table.step() != SQLITE_ROW) return {};
    Statement st(db_, "SELECT value FROM sluice_code_state WHERE key = ?1");
    st.text(1, key);
    return st.step() == SQLITE_ROW ? std::string(st.column_text(0)) : std::string();
  }

  void set_state(const std::string& key, const std::string& value) override {
    Statement st(db_, "INSERT INTO sluice_code_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET "
                      "value = excluded.value");
    st.text(1, key).text(2, value);
    check_setup(st.step(), "cannot write the index's state");
  }

  std::int64_t start_run(const std::string& pipeline_id, const std::string& root) override {
    return catalog_->start_run(kChunksTable, pipeline_id, root, "path");
  }

  std::optional<StoredFile> file(const std::string& path) override {
    Statement& st = statement(kFile, "SELECT size, mtime_ns, inode, status, coalesce(ctime_ns, 0) FROM files WHERE "
                                     "path = ?1");
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
      f.ctime_ns = st.column_int(4);
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
          if (w.kind == CodeFileWrite::Kind::replace) mark_graph_stale();
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
      Statement edges(db_, "DELETE FROM edges WHERE source_path IN (SELECT path FROM files WHERE seen_run < ?1)");
      edges.integer(1, run);
      step_done(edges, "cannot remove the edges of files that are gone");
      Statement st(db_, "DELETE FROM files WHERE seen_run < ?1");
      st.integer(1, run);
      step_done(st, "cannot remove files that are gone");
      removed = static_cast<std::uint64_t>(sqlite3_changes(db_));
      if (removed > 0) mark_graph_stale();
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return removed;
  }

  GraphStats resolve_graph(const ImportCandidates& candidates) override {
    GraphStats g;
    exec("BEGIN IMMEDIATE");
    try {
      // Imports: to the first candidate file the store holds, by blocks of rows.
      {
        Statement next(db_, "SELECT rowid, source_path, target_name FROM edges WHERE kind = 'imports' AND rowid > ?1 "
                            "ORDER BY rowid LIMIT 1000");
        Statement file(db_, "SELECT id FROM chunks WHERE path = ?1 ORDER BY ordinal LIMIT 1");
        Statement set(db_, "UPDATE edges SET target_path = ?2, target_id = ?3 WHERE rowid = ?1");
        std::int64_t after = 0;
        for (;;) {
          std::vector<std::tuple<std::int64_t, std::string, std::string>> block;
          next.integer(1, after);
          int rc;
          while ((rc = next.step()) == SQLITE_ROW) {
            block.emplace_back(next.column_int(0), std::string(next.column_text(1)), std::string(next.column_text(2)));
          }
          next.reset();
          check(rc, "cannot read the edges");
          if (block.empty()) break;
          after = std::get<0>(block.back());
          for (const auto& [rowid, source, name] : block) {
            ++g.imports;
            std::optional<std::pair<std::string, std::string>> target;
            for (const std::string& path : candidates(source, name)) {
              file.text(1, path);
              if (file.step() == SQLITE_ROW) target.emplace(path, std::string(file.column_text(0)));
              file.reset();
              if (target) break;
            }
            set.integer(1, rowid);
            if (target) {
              ++g.imports_resolved;
              set.text(2, target->first).text(3, target->second);
            }
            step_done(set, "cannot resolve an import");
          }
        }
      }
      // Calls and bases: the same file, then the files it imports, then the only definition
      // of that name in the store.
      exec(fmt::format(
          "UPDATE edges SET target_id = coalesce("
          "(SELECT c.id FROM chunks c WHERE c.path = edges.source_path AND c.symbol = edges.target_name AND c.kind IN "
          "{0} ORDER BY c.ordinal LIMIT 1), "
          "(SELECT c.id FROM edges i JOIN chunks c ON c.path = i.target_path WHERE i.source_path = edges.source_path "
          "AND i.kind = 'imports' AND c.symbol = edges.target_name AND c.kind IN {0} ORDER BY c.path, c.ordinal LIMIT "
          "1), "
          "(SELECT min(c.id) FROM chunks c WHERE c.symbol = edges.target_name AND c.kind IN {0} HAVING count(DISTINCT "
          "c.path || '/' || c.name) = 1)) WHERE kind != 'imports'",
          kDefinitionKinds));
      {
        Statement st(db_, "SELECT count(*), count(target_id) FROM edges");
        check(st.step(), "cannot count the edges");
        g.edges = static_cast<std::uint64_t>(st.column_int(0));
        g.resolved = static_cast<std::uint64_t>(st.column_int(1));
      }
      // Fan-in and fan-out: resolved edges between two chunks (a chunk naming itself not counted).
      exec("DELETE FROM chunk_metrics");
      exec("INSERT INTO chunk_metrics (chunk_id, fan_in, fan_out, pagerank) SELECT c.id, (SELECT count(*) FROM edges "
           "e WHERE e.target_id = c.id AND e.source_id != c.id), (SELECT count(*) FROM edges e WHERE e.source_id = "
           "c.id AND e.target_id IS NOT NULL AND e.target_id != c.id), 0 FROM chunks c");
      pagerank(g);
      exec("UPDATE sluice_code_state SET value = '0' WHERE key = 'graph_stale'");
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return g;
  }

  std::vector<RankedChunk> top_chunks(std::size_t n) override {
    std::vector<RankedChunk> out;
    read_nodes(fmt::format("ORDER BY m.pagerank DESC, c.id LIMIT {}", n),
               [&](const RankedChunk& r) { out.push_back(r); });
    return out;
  }

  void each_node(const std::function<void(const RankedChunk&)>& fn) override { read_nodes("ORDER BY c.id", fn); }

  void each_edge(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) override {
    Statement st(db_, "SELECT source_id, target_id, kind FROM edges WHERE target_id IS NOT NULL ORDER BY source_id, "
                      "target_id, kind");
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) fn(st.column_text(0), st.column_text(1), st.column_text(2));
    if (rc != SQLITE_DONE) check_setup(rc, "cannot read the edges");
  }

  bool graph_stale() override {
    Statement st(db_, "SELECT value FROM sluice_code_state WHERE key = 'graph_stale'");
    const int rc = st.step();
    if (rc != SQLITE_ROW) check(rc, "cannot read the index's state");
    return rc != SQLITE_ROW || st.column_text(0) != "0";
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
  enum StatementId {
    kFile,
    kEmbedding,
    kSeen,
    kDeleteChunks,
    kInsertChunk,
    kUpsertFile,
    kUpsertFailed,
    kDeleteEdges,
    kInsertEdge,
    kStale,
    kCount
  };

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
          "INSERT INTO files (path, size, mtime_ns, inode, ctime_ns, sha256, language, status, reason, chunks, "
          "seen_run) VALUES (?1, NULL, NULL, NULL, NULL, '', ?2, 'failed', ?3, (SELECT count(*) FROM chunks WHERE path "
          "= ?1), ?4) ON CONFLICT (path) DO UPDATE SET size = NULL, mtime_ns = NULL, inode = NULL, ctime_ns = NULL, "
          "sha256 = '', status = 'failed', reason = excluded.reason, chunks = excluded.chunks, seen_run = "
          "excluded.seen_run");
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
        "content_hash, text_hash, tokens, embedding, run, line, symbol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
        "?11, ?12, ?13, ?14, ?15, ?16, ?17)");
    for (const CodeChunkRow& c : w.chunks) {
      ins.text(1, c.id).text(2, f.path).integer(3, c.ordinal).text(4, c.kind).text(5, c.name);
      ins.integer(6, c.start_line).integer(7, c.end_line);
      ins.integer(8, static_cast<std::int64_t>(c.start_byte)).integer(9, static_cast<std::int64_t>(c.end_byte));
      ins.text(10, c.content).text(11, c.content_hash).text(12, c.text_hash).integer(13, c.tokens);
      ins.blob(14, c.embedding).integer(15, run).integer(16, c.start_line).text(17, symbol_of(c.name));
      step_done(ins, "cannot insert a chunk");
    }
    Statement& del_edges = statement(kDeleteEdges, "DELETE FROM edges WHERE source_path = ?1");
    del_edges.text(1, f.path);
    step_done(del_edges, "cannot delete the file's old edges");
    Statement& edge = statement(kInsertEdge,
                                "INSERT INTO edges (source_id, target_id, target_name, kind, source_path, target_path) "
                                "VALUES (?1, NULL, ?2, ?3, ?4, NULL)");
    for (const CodeEdgeRow& e : w.edges) {
      edge.text(1, e.source_id).text(2, e.target_name).text(3, e.kind).text(4, f.path);
      step_done(edge, "cannot insert an edge");
    }
    Statement& up = statement(
        kUpsertFile,
        "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run, ctime_ns) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
        "mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, language = excluded.language, "
        "status = excluded.status, reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run, "
        "ctime_ns = excluded.ctime_ns");
    up.text(1, f.path).integer(2, static_cast<std::int64_t>(f.size)).integer(3, f.mtime_ns);
    up.integer(4, static_cast<std::int64_t>(f.inode)).text(5, f.sha256).text(6, f.language).text(7, f.status);
    up.text(8, f.reason).integer(9, static_cast<std::int64_t>(w.chunks.size())).integer(10, run);
    up.integer(11, f.ctime_ns);
    step_done(up, "cannot write the file's row");
  }

  void read_nodes(const std::string& order, const std::function<void(const RankedChunk&)>& fn) {
    Statement st(db_, "SELECT c.id, c.path, c.kind, c.name, c.start_line, c.end_line, coalesce(m.fan_in, 0), "
                      "coalesce(m.fan_out, 0), coalesce(m.pagerank, 0) FROM chunks c LEFT JOIN chunk_metrics m ON "
                      "m.chunk_id = c.id " + order);
    RankedChunk r;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      r.id = st.column_text(0);
      r.path = st.column_text(1);
      r.kind = st.column_text(2);
      r.name = st.column_text(3);
      r.start_line = static_cast<std::uint32_t>(st.column_int(4));
      r.end_line = static_cast<std::uint32_t>(st.column_int(5));
      r.fan_in = static_cast<std::uint64_t>(st.column_int(6));
      r.fan_out = static_cast<std::uint64_t>(st.column_int(7));
      r.pagerank = sqlite3_column_double(st.handle(), 8);
      fn(r);
    }
    if (rc != SQLITE_DONE) check_setup(rc, "cannot read the chunks");
  }

  void mark_graph_stale() {
    Statement& st = statement(kStale, "UPDATE sluice_code_state SET value = '1' WHERE key = 'graph_stale'");
    step_done(st, "cannot mark the graph stale");
  }

  // PageRank over the resolved edges (damping 0.85; the rank of chunks without edges out
  // spread evenly), the edges read from the store at each iteration: memory holds the ranks.
  void pagerank(GraphStats& g) {
    std::vector<std::int64_t> ids;
    {
      Statement st(db_, "SELECT rowid FROM chunks ORDER BY rowid");
      int rc;
      while ((rc = st.step()) == SQLITE_ROW) ids.push_back(st.column_int(0));
      check(rc, "cannot read the chunks");
    }
    const std::size_t n = ids.size();
    g.chunks = n;
    if (n == 0) return;
    auto index_of = [&](std::int64_t rowid) {
      return static_cast<std::size_t>(std::lower_bound(ids.begin(), ids.end(), rowid) - ids.begin());
    };
    Statement edges(db_, "SELECT s.rowid, t.rowid FROM edges e JOIN chunks s ON s.id = e.source_id JOIN chunks t ON "
                         "t.id = e.target_id WHERE e.target_id IS NOT NULL AND e.source_id != e.target_id");
    auto each_edge = [&](auto&& fn) {
      int rc;
      while ((rc = edges.step()) == SQLITE_ROW) fn(index_of(edges.column_int(0)), index_of(edges.column_int(1)));
      edges.reset();
      check(rc, "cannot read the edges");
    };
    std::vector<std::uint32_t> out_degree(n, 0);
    each_edge([&](std::size_t s, std::size_t) { ++out_degree[s]; });
    constexpr double kDamping = 0.85;
    std::vector<double> rank(n, 1.0 / static_cast<double>(n)), next(n);
    for (int it = 0; it < 100; ++it) {
      double dangling = 0;
      for (std::size_t i = 0; i < n; ++i) dangling += out_degree[i] == 0 ? rank[i] : 0.0;
      const double base = (1.0 - kDamping + kDamping * dangling) / static_cast<double>(n);
      std::fill(next.begin(), next.end(), base);
      each_edge([&](std::size_t s, std::size_t t) { next[t] += kDamping * rank[s] / out_degree[s]; });
      double change = 0;
      for (std::size_t i = 0; i < n; ++i) change += std::abs(next[i] - rank[i]);
      rank.swap(next);
      g.pagerank_iterations = it + 1;
      if (change < 1e-9) break;
    }
    Statement set(db_, "UPDATE chunk_metrics SET pagerank = ?2 WHERE chunk_id = (SELECT id FROM chunks WHERE rowid = "
                       "?1)");
    for (std::size_t i = 0; i < n; ++i) {
      set.integer(1, ids[i]);
      sqlite3_bind_double(set.handle(), 2, rank[i]);
      step_done(set, "cannot store the ranks");
    }
  }

  void step_done(Statement& st, const char* what) {
    const int rc = st.step();
    st.reset();
    check(rc, what);
  }

  void check(int rc, const char* what) { sqlite_check(db_, name_, rc, what); }

  void check_setup(int rc, const char* what) {
    try {
      check(rc, what);
    } catch (const StoreError& e) {
      throw Error(ErrorCode::io_error, e.what());
    }
  }

  void exec(const std::string& sql) { sqlite_exec(db_, name_, sql); }

  void exec_setup(const std::string& sql) { sqlite_exec_setup(db_, name_, sql); }

  std::string path_;
  std::string name_;
  bool read_only_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Backend> catalog_;
  std::array<std::unique_ptr<Statement>, kCount> statements_;
};

}  // namespace

std::vector<CodeStore::RankedChunk> CodeStore::top_chunks(std::size_t) {
  throw Error(ErrorCode::invalid_argument, fmt::format("{}: this store keeps no graph of the code", name()));
}
void CodeStore::each_node(const std::function<void(const RankedChunk&)>&) { top_chunks(0); }
void CodeStore::each_edge(const std::function<void(std::string_view, std::string_view, std::string_view)>&) {
  top_chunks(0);
}

GraphStats CodeStore::resolve_graph(const ImportCandidates&) {
  throw Error(ErrorCode::invalid_argument, fmt::format("{}: this store keeps no graph of the code", name()));
}

std::unique_ptr<CodeStore> CodeStore::open(const std::string& uri, bool read_only) {
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) return open_postgres_code_store(uri, read_only);
  if (!uri.starts_with("sqlite:")) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: not a store URI (sqlite:PATH, postgresql://..., postgres://...)", redact_uri(uri)));
  }
  const std::string path = *sqlite_store_path(uri);
  if (path.empty()) throw Error(ErrorCode::invalid_argument, "sqlite: needs a path, e.g. sqlite:index.db");
  return std::make_unique<SqliteCodeStore>(path, uri, read_only);
}

}  // namespace sluice::store
