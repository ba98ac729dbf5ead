// The code index's tables in PostgreSQL (code_store.hpp), through libpq: the same tables and
// semantics as the SQLite store (code_store.cpp), with PostgreSQL's types. `chunks` is also
// readable as an embed table by postgres_store.cpp (search --table chunks): `embedding real[]`
// and `record jsonb`. The record is written by each INSERT from the row's own columns
// (jsonb_build_object is only STABLE, so it cannot be a generated column).
//
// Every value is a parameter of a prepared statement (text format). PostgreSQL's text holds
// no NUL byte (libpq would cut the value there): a chunk holding one fails its file alone.
// A lost connection (SQLSTATE class 08, a server shut down) is a transient StoreError.
//
// The graph (docs/code-index.md, "The graph") is the SQLite store's, statement for statement,
// with text compared bytewise where order matters (COLLATE "C": SQLite compares TEXT by its
// bytes, a PostgreSQL database by its locale), so that both stores resolve the same edges and
// list chunks and edges in the same order. PageRank numbers its nodes by id (bytewise) in a
// temporary table, and reads the edges at each iteration by COPY: memory holds the ranks.

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <string_view>

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
    "NULL, ctime_ns bigint)";
constexpr const char* kCreateChunks =
    "CREATE TABLE chunks (id text PRIMARY KEY, path text NOT NULL, ordinal integer NOT NULL, kind text NOT NULL, name "
    "text NOT NULL, start_line integer NOT NULL, end_line integer NOT NULL, start_byte bigint NOT NULL, end_byte "
    "bigint NOT NULL, content text NOT NULL, content_hash text NOT NULL, text_hash text NOT NULL, tokens integer NOT "
    "NULL, embedding real[] NOT NULL, run bigint NOT NULL, line bigint NOT NULL DEFAULT 0, symbol text NOT NULL "
    "DEFAULT '', record jsonb NOT NULL)";
// What the graph adds, beside files and chunks: create() runs it, and upgrade() on an index
// made before the graph (chunks.symbol and files.ctime_ns added first). A new index's graph
// is stale until resolved, as code_store.cpp's.
constexpr const char* kGraphSchema[] = {
    "CREATE INDEX IF NOT EXISTS chunks_symbol ON chunks (symbol)",
    "CREATE TABLE IF NOT EXISTS edges (source_id text NOT NULL, target_id text, target_name text NOT NULL, kind text "
    "NOT NULL, source_path text NOT NULL, target_path text)",
    "CREATE INDEX IF NOT EXISTS edges_source_path ON edges (source_path)",
    "CREATE INDEX IF NOT EXISTS edges_source ON edges (source_id)",
    "CREATE INDEX IF NOT EXISTS edges_target ON edges (target_id)",
    "CREATE INDEX IF NOT EXISTS edges_imports ON edges (source_path, kind, target_path)",
    "CREATE TABLE IF NOT EXISTS chunk_metrics (chunk_id text PRIMARY KEY, fan_in bigint NOT NULL, fan_out bigint NOT "
    "NULL, pagerank double precision NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sluice_code_state (key text PRIMARY KEY, value text NOT NULL)",
    "INSERT INTO sluice_code_state VALUES ('graph_stale', '1') ON CONFLICT (key) DO NOTHING",
};

// What create() makes: any of these names taken (tables and indexes share a namespace in
// PostgreSQL) would stop it.
constexpr const char* kRelations =
    "{files,chunks,chunks_path,chunks_text_hash,chunks_symbol,edges,edges_source_path,edges_source,edges_target,"
    "edges_imports,chunk_metrics,sluice_code_state}";

// Whether an index lacks anything kGraphSchema or a column added since would add.
constexpr const char* kNeedsUpgrade =
    "SELECT EXISTS (SELECT FROM unnest(ARRAY['chunks_symbol', 'edges', 'edges_source_path', 'edges_source', "
    "'edges_target', 'edges_imports', 'chunk_metrics', 'sluice_code_state']) AS u(name) WHERE to_regclass(u.name) IS "
    "NULL) OR NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('chunks') AND attname = 'symbol' AND "
    "NOT attisdropped) OR NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('files') AND attname = "
    "'ctime_ns' AND NOT attisdropped) OR NOT EXISTS (SELECT FROM sluice_code_state WHERE key = 'graph_stale')";

// The last part of a qualified name ("pkg.mod.Class.method" -> "method", "ns::f" -> "f"), as
// code_store.cpp keeps it.
std::string_view symbol_of(std::string_view name) {
  const std::size_t dot = name.find_last_of(".:");
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

// Chunks that are definitions (what a call or a base can name), as code_store.cpp has them.
constexpr const char* kDefinitionKinds = "('function', 'method', 'class', 'struct', 'enum', 'interface', 'module', "
                                         "'type', 'impl', 'skeleton', 'part')";

// Calls and bases: the same file, then the files it imports, then the only definition of that
// name in the store (code_store.cpp's statement; ties broken bytewise as SQLite does).
constexpr const char* kResolveCalls =
    "UPDATE edges SET target_id = coalesce("
    "(SELECT c.id FROM chunks c WHERE c.path = edges.source_path AND c.symbol = edges.target_name AND c.kind IN "
    "{0} ORDER BY c.ordinal LIMIT 1), "
    "(SELECT c.id FROM edges i JOIN chunks c ON c.path = i.target_path WHERE i.source_path = edges.source_path AND "
    "i.kind = 'imports' AND c.symbol = edges.target_name AND c.kind IN {0} ORDER BY c.path COLLATE \"C\", c.ordinal "
    "LIMIT 1), "
    "(SELECT min(c.id COLLATE \"C\") FROM chunks c WHERE c.symbol = edges.target_name AND c.kind IN {0} HAVING "
    "count(DISTINCT c.path || '/' || c.name) = 1)) WHERE kind <> 'imports'";

// A chunk with its metrics, for top_chunks() and each_node() (code_store.cpp's read_nodes()).
constexpr const char* kNodes =
    "SELECT c.id, c.path, c.kind, c.name, c.start_line, c.end_line, coalesce(m.fan_in, 0), coalesce(m.fan_out, 0), "
    "coalesce(m.pagerank, 0) FROM chunks c LEFT JOIN chunk_metrics m ON m.chunk_id = c.id ";

// The key postgres_store.cpp's writers lock a table by (PostgresBackend::take_lock()): an
// index run and an embed run writing the table "chunks" of one database exclude each other.
constexpr const char* kLockSql = "SELECT pg_try_advisory_lock(hashtext('sluice table ' || $1))";

enum StatementId {
  kFile,
  kEmbedding,
  kSeen,
  kDeleteChunks,
  kInsertChunk,
  kUpsertFile,
  kUpsertFailed,
  kDeleteEdges,
  kInsertEdges,
  kStale,
  kResolveImport,
  kCount
};

struct StatementSql {
  const char* name;
  const char* sql;
};

constexpr std::array<StatementSql, kCount> kStatements = {{
    {"sluice_code_file", "SELECT size, mtime_ns, inode, status, coalesce(ctime_ns, 0) FROM files WHERE path = $1"},
    {"sluice_code_embedding", "SELECT embedding::text FROM chunks WHERE text_hash = $1 LIMIT 1"},
    {"sluice_code_seen", "UPDATE files SET seen_run = $2 WHERE path = $1"},
    {"sluice_code_delete_chunks", "DELETE FROM chunks WHERE path = $1"},
    {"sluice_code_insert_chunk",
     "INSERT INTO chunks (id, path, ordinal, kind, name, start_line, end_line, start_byte, end_byte, content, "
     "content_hash, text_hash, tokens, embedding, run, line, symbol, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
     "$9, $10, $11, $12, $13, $14::real[], $15, $16, $17, jsonb_build_object('path', $2::text, 'start_line', "
     "$6::integer, 'end_line', $7::integer, 'name', $5::text, 'kind', $4::text, 'text', $10::text))"},
    {"sluice_code_upsert_file",
     "INSERT INTO files (path, size, mtime_ns, inode, sha256, language, status, reason, chunks, seen_run, ctime_ns) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
     "mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256, language = excluded.language, "
     "status = excluded.status, reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run, "
     "ctime_ns = excluded.ctime_ns"},
    // The old chunks stay; the row says why, without a stat, so the next run reads it again.
    {"sluice_code_upsert_failed",
     "INSERT INTO files (path, size, mtime_ns, inode, ctime_ns, sha256, language, status, reason, chunks, seen_run) "
     "VALUES ($1, NULL, NULL, NULL, NULL, '', $2, 'failed', $3, (SELECT count(*) FROM chunks WHERE path = $1), $4) ON "
     "CONFLICT (path) DO UPDATE SET size = NULL, mtime_ns = NULL, inode = NULL, ctime_ns = NULL, sha256 = '', status "
     "= 'failed', reason = excluded.reason, chunks = excluded.chunks, seen_run = excluded.seen_run"},
    {"sluice_code_delete_edges", "DELETE FROM edges WHERE source_path = $1"},
    // A file's edges in one statement: three arrays of one length (source ids, names, kinds).
    {"sluice_code_insert_edges",
     "INSERT INTO edges (source_id, target_id, target_name, kind, source_path, target_path) SELECT u.s, NULL, u.n, "
     "u.k, $4, NULL FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, n, k)"},
    {"sluice_code_stale", "UPDATE sluice_code_state SET value = '1' WHERE key = 'graph_stale'"},
    // The edges importing `name` from `source_path`: to the first chunk (by ordinal) of the first
    // candidate file ($3, most likely first) that has chunks, else to none. Says how many edges,
    // and how many resolved.
    {"sluice_code_resolve_import",
     "WITH u AS (UPDATE edges SET (target_path, target_id) = (SELECT f.path, f.id FROM unnest($3::text[]) WITH "
     "ORDINALITY AS p(path, k) CROSS JOIN LATERAL (SELECT c.path, c.id FROM chunks c WHERE c.path = p.path ORDER BY "
     "c.ordinal LIMIT 1) AS f ORDER BY p.k LIMIT 1) WHERE kind = 'imports' AND source_path = $1 AND target_name = $2 "
     "RETURNING target_id) SELECT count(*), count(target_id) FROM u"},
}};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A value for a text parameter: integers in decimal.
std::string num(std::int64_t v) { return std::to_string(v); }

// A text[] literal of these values: each quoted, with its quotes and backslashes escaped.
template <typename Range, typename Get>
std::string text_array(const Range& items, Get get) {
  std::string out = "{";
  bool first = true;
  for (const auto& item : items) {
    if (!first) out.push_back(',');
    first = false;
    out.push_back('"');
    for (const char c : std::string_view(get(item))) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::uint64_t to_u64(const char* text) { return static_cast<std::uint64_t>(std::stoull(text)); }

// A double precision's text (shortest exact form: extra_float_digits = 3).
double to_double(std::string_view text) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nan("");
  return v;
}

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
    std::optional<TableMeta> m;
    try {
      m = catalog().read_meta(kChunksTable);
    } catch (const Error& e) {
      // A table "chunks" that sluice_tables does not name (read_meta()'s advice, another
      // --table, is embed's).
      if (e.code() != ErrorCode::invalid_argument) throw;
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{}: it has a table \"chunks\" that sluice did not make: index into another store",
                              name_));
    }
    setup([&] {
      if (m) {
        // `pipeline-run embed --table chunks` writes the same catalog entry, for a table of its
        // own (id, record, embedding): not a code index.
        ResultPtr r = query(
            "SELECT to_regclass('files') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
            "to_regclass('chunks') AND attname = 'text_hash' AND NOT attisdropped)",
            {}, "cannot read the schema");
        if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") {
          throw Error(ErrorCode::invalid_argument,
                      fmt::format("{}: its table \"chunks\" was made by pipeline-run embed, not by index: index into "
                                  "another store",
                                  name_));
        }
        return;
      }
      ResultPtr r = query(
          "SELECT u.name, c.relkind = 'i' FROM unnest($1::text[]) WITH ORDINALITY AS u(name, k) JOIN pg_class c ON "
          "c.oid = to_regclass(u.name) ORDER BY u.k LIMIT 1",
          {kRelations}, "cannot read the schema");
      if (PQntuples(r.get()) > 0) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: it has {} \"{}\" that is not a code index of sluice's: index into another store",
                                name_, std::string_view(PQgetvalue(r.get(), 0, 1)) == "t" ? "an index" : "a table",
                                PQgetvalue(r.get(), 0, 0)));
      }
    });
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
        for (const char* sql : kGraphSchema) exec(sql);
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

  void upgrade() override {
    // An index made by an earlier version: what it lacks is added (columns, tables, indexes).
    // Only then, as ALTER TABLE locks the table against its readers.
    setup([&] {
      ResultPtr r = query("SELECT to_regclass('files') IS NOT NULL AND to_regclass('chunks') IS NOT NULL", {},
                          "cannot read the schema");
      if (std::string_view(PQgetvalue(r.get(), 0, 0)) != "t") return;
      if (to_regclass_exists("sluice_code_state")) {
        ResultPtr need = query(kNeedsUpgrade, {}, "cannot read the schema");
        if (std::string_view(PQgetvalue(need.get(), 0, 0)) != "t") return;
      }
      exec("BEGIN");
      try {
        exec("ALTER TABLE chunks ADD COLUMN IF NOT EXISTS symbol text NOT NULL DEFAULT ''");
        exec("ALTER TABLE files ADD COLUMN IF NOT EXISTS ctime_ns bigint");
        for (const char* sql : kGraphSchema) exec(sql);
        commit_now();
      } catch (...) {
        rollback_quietly();
        throw;
      }
    });
  }

  std::string state(const std::string& key) override {
    return setup([&]() -> std::string {
      if (!to_regclass_exists("sluice_code_state")) return {};
      ResultPtr r = query("SELECT value FROM sluice_code_state WHERE key = $1", {key}, "cannot read the index's state");
      return PQntuples(r.get()) ? std::string(PQgetvalue(r.get(), 0, 0)) : std::string();
    });
  }

  void set_state(const std::string& key, const std::string& value) override {
    setup([&] {
      query("INSERT INTO sluice_code_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = "
            "excluded.value",
            {key, value}, "cannot write the index's state");
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
    f.ctime_ns = std::stoll(PQgetvalue(r.get(), 0, 4));
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
      bool replaced = false;  // a file's chunks and edges: the graph is stale
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
          replaced = replaced || w.kind == CodeFileWrite::Kind::replace;
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
      // Once per transaction (code_store.cpp marks it in each replaced file's savepoint: the
      // same flag at the commit).
      if (replaced) prepared(kStale, {}, "cannot mark the graph stale");
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
      query("DELETE FROM edges WHERE source_path IN (SELECT path FROM files WHERE seen_run < $1)", {num(run)},
            "cannot remove the edges of files that are gone");
      ResultPtr r = query("DELETE FROM files WHERE seen_run < $1", {num(run)}, "cannot remove files that are gone");
      removed = std::stoull(PQcmdTuples(r.get()));
      if (removed > 0) prepared(kStale, {}, "cannot mark the graph stale");
      commit_now();
    } catch (...) {
      rollback_quietly();
      throw;
    }
    return removed;
  }

  GraphStats resolve_graph(const ImportCandidates& candidates) override {
    GraphStats g;
    exec("BEGIN");
    try {
      // Imports: to the first candidate file the store holds. The candidates depend on the
      // importing file and the name only: each pair once, for all its edges.
      exec("DECLARE sluice_imports NO SCROLL CURSOR FOR SELECT DISTINCT source_path COLLATE \"C\", target_name "
           "COLLATE \"C\" FROM edges WHERE kind = 'imports' ORDER BY 1, 2");
      for (;;) {
        ResultPtr block(PQexec(conn_, "FETCH FORWARD 1000 FROM sluice_imports"));
        check(block, "cannot read the edges");
        const int rows = PQntuples(block.get());
        if (rows == 0) break;
        for (int row = 0; row < rows; ++row) {
          const std::string source = PQgetvalue(block.get(), row, 0);
          const std::string name = PQgetvalue(block.get(), row, 1);
          const std::vector<std::string> paths = candidates(source, name);
          ResultPtr r = prepared(kResolveImport,
                                 {source, name, text_array(paths, [](const std::string& p) -> const std::string& {
                                    return p;
                                  })},
                                 "cannot resolve an import");
          g.imports += to_u64(PQgetvalue(r.get(), 0, 0));
          g.imports_resolved += to_u64(PQgetvalue(r.get(), 0, 1));
        }
      }
      exec("CLOSE sluice_imports");
      // Calls and bases.
      exec(fmt::format(kResolveCalls, kDefinitionKinds).c_str());
      {
        ResultPtr r = query("SELECT count(*), count(target_id) FROM edges", {}, "cannot count the edges");
        g.edges = to_u64(PQgetvalue(r.get(), 0, 0));
        g.resolved = to_u64(PQgetvalue(r.get(), 0, 1));
      }
      // Fan-in and fan-out: resolved edges between two chunks (a chunk naming itself not counted).
      exec("DELETE FROM chunk_metrics");
      exec("INSERT INTO chunk_metrics (chunk_id, fan_in, fan_out, pagerank) SELECT c.id, (SELECT count(*) FROM edges "
           "e WHERE e.target_id = c.id AND e.source_id <> c.id), (SELECT count(*) FROM edges e WHERE e.source_id = "
           "c.id AND e.target_id IS NOT NULL AND e.target_id <> c.id), 0 FROM chunks c");
      pagerank(g);
      exec("UPDATE sluice_code_state SET value = '0' WHERE key = 'graph_stale'");
      commit_now();
    } catch (...) {
      rollback_quietly();
      throw;
    }
    return g;
  }

  bool graph_stale() override {
    ResultPtr r = query("SELECT value FROM sluice_code_state WHERE key = 'graph_stale'", {},
                        "cannot read the index's state");
    return PQntuples(r.get()) == 0 || std::string_view(PQgetvalue(r.get(), 0, 0)) != "0";
  }

  std::vector<RankedChunk> top_chunks(std::size_t n) override {
    std::vector<RankedChunk> out;
    // NULLS LAST: a chunk written since the graph was resolved has no metrics, and SQLite sorts
    // NULL below every number.
    read_nodes(fmt::format("ORDER BY m.pagerank DESC NULLS LAST, c.id COLLATE \"C\" LIMIT {}", n),
               [&](const RankedChunk& r) { out.push_back(r); });
    return out;
  }

  void each_node(const std::function<void(const RankedChunk&)>& fn) override {
    read_nodes("ORDER BY c.id COLLATE \"C\"", fn);
  }

  void each_edge(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) override {
    setup([&] {
      each_row("SELECT source_id, target_id, kind FROM edges WHERE target_id IS NOT NULL ORDER BY source_id COLLATE "
               "\"C\", target_id COLLATE \"C\", kind COLLATE \"C\"",
               "cannot read the edges", [&](PGresult* r, int row) {
                 fn(value(r, row, 0), value(r, row, 1), value(r, row, 2));
               });
    });
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
                c.content_hash, c.text_hash, num(c.tokens), real_array(c.embedding), run_text, num(c.start_line),
                std::string(symbol_of(c.name))},
               "cannot insert a chunk");
    }
    prepared(kDeleteEdges, {f.path}, "cannot delete the file's old edges");
    if (!w.edges.empty()) {
      prepared(kInsertEdges,
               {text_array(w.edges, [](const CodeEdgeRow& e) -> const std::string& { return e.source_id; }),
                text_array(w.edges, [](const CodeEdgeRow& e) -> const std::string& { return e.target_name; }),
                text_array(w.edges, [](const CodeEdgeRow& e) -> const std::string& { return e.kind; }), f.path},
               "cannot insert the file's edges");
    }
    prepared(kUpsertFile,
             {f.path, num(static_cast<std::int64_t>(f.size)), num(f.mtime_ns), num(static_cast<std::int64_t>(f.inode)),
              f.sha256, f.language, f.status, f.reason, num(static_cast<std::int64_t>(w.chunks.size())), run_text,
              num(f.ctime_ns)},
             "cannot write the file's row");
  }

  bool to_regclass_exists(const std::string& relation) {
    ResultPtr r = query("SELECT to_regclass($1) IS NOT NULL", {relation}, "cannot read the schema");
    return std::string_view(PQgetvalue(r.get(), 0, 0)) == "t";
  }

  static std::string_view value(PGresult* r, int row, int column) {
    return std::string_view(PQgetvalue(r, row, column), static_cast<std::size_t>(PQgetlength(r, row, column)));
  }

  // The rows of `sql`, one at a time (libpq's single-row mode: memory holds one row), each to
  // `fn` (the result, the row's number in it). An exception from `fn` cancels the query, then
  // goes on.
  void each_row(const char* sql, std::string_view what, const std::function<void(PGresult*, int)>& fn) {
    if (!PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0)) fail(nullptr, what);
    PQsetSingleRowMode(conn_);
    std::exception_ptr thrown;
    ResultPtr failed;
    while (PGresult* raw = PQgetResult(conn_)) {
      ResultPtr r(raw);
      const auto status = PQresultStatus(raw);
      if (status == PGRES_SINGLE_TUPLE || status == PGRES_TUPLES_OK) {
        // TUPLES_OK ends the rows (with none), or holds them all where single-row mode was refused.
        try {
          for (int row = 0; !thrown && row < PQntuples(raw); ++row) fn(raw, row);
        } catch (...) {
          thrown = std::current_exception();
          if (PGcancel* cancel = PQgetCancel(conn_)) {
            char message[256];
            PQcancel(cancel, message, sizeof message);
            PQfreeCancel(cancel);
          }
        }
      } else if (!failed) {
        failed = std::move(r);
      }
    }
    if (thrown) std::rethrow_exception(thrown);
    if (failed) fail(failed.get(), what);
  }

  void read_nodes(const std::string& order, const std::function<void(const RankedChunk&)>& fn) {
    setup([&] {
      RankedChunk c;
      each_row((kNodes + order).c_str(), "cannot read the chunks", [&](PGresult* r, int row) {
        c.id = value(r, row, 0);
        c.path = value(r, row, 1);
        c.kind = value(r, row, 2);
        c.name = value(r, row, 3);
        c.start_line = static_cast<std::uint32_t>(to_u64(PQgetvalue(r, row, 4)));
        c.end_line = static_cast<std::uint32_t>(to_u64(PQgetvalue(r, row, 5)));
        c.fan_in = to_u64(PQgetvalue(r, row, 6));
        c.fan_out = to_u64(PQgetvalue(r, row, 7));
        c.pagerank = to_double(value(r, row, 8));
        fn(c);
      });
    });
  }

  // The lines a COPY ... TO STDOUT sends (text format), each to `fn` without its newline.
  template <typename F>
  void copy_out(const char* sql, std::string_view what, F&& fn) {
    ResultPtr start(PQexec(conn_, sql));
    if (!start || PQresultStatus(start.get()) != PGRES_COPY_OUT) fail(start.get(), what);
    char* line = nullptr;
    int n;
    while ((n = PQgetCopyData(conn_, &line, 0)) > 0) {
      std::string_view row(line, static_cast<std::size_t>(n));
      if (!row.empty() && row.back() == '\n') row.remove_suffix(1);
      fn(row);
      PQfreemem(line);
    }
    if (n == -2) fail(nullptr, what);
    ResultPtr end(PQgetResult(conn_));
    check(end, what);
    while (PGresult* more = PQgetResult(conn_)) PQclear(more);
  }

  // PageRank over the resolved edges (code_store.cpp's pagerank(): damping 0.85, the rank of
  // chunks without edges out spread evenly, until the ranks change by less than 1e-9 in all),
  // the chunks numbered by id (bytewise) in a temporary table, the edges between two of them
  // read by COPY at each iteration: memory holds the ranks.
  void pagerank(GraphStats& g) {
    ResultPtr nodes(PQexec(conn_,
                           "CREATE TEMPORARY TABLE sluice_graph_nodes ON COMMIT DROP AS SELECT id, (row_number() OVER "
                           "(ORDER BY id COLLATE \"C\") - 1)::integer AS i FROM chunks"));
    check(nodes, "cannot number the chunks");
    const std::size_t n = static_cast<std::size_t>(to_u64(PQcmdTuples(nodes.get())));
    g.chunks = n;
    if (n == 0) return;
    exec("CREATE TEMPORARY TABLE sluice_graph_links ON COMMIT DROP AS SELECT s.i AS s, t.i AS t FROM edges e JOIN "
         "sluice_graph_nodes s ON s.id = e.source_id JOIN sluice_graph_nodes t ON t.id = e.target_id WHERE "
         "e.target_id IS NOT NULL AND e.source_id <> e.target_id");
    auto each_link = [&](auto&& fn) {
      copy_out("COPY sluice_graph_links (s, t) TO STDOUT", "cannot read the edges", [&](std::string_view row) {
        std::uint32_t s = 0, t = 0;
        const char* end = row.data() + row.size();
        auto [p, e1] = std::from_chars(row.data(), end, s);
        if (e1 != std::errc() || p == end || *p != '\t' || std::from_chars(p + 1, end, t).ec != std::errc() ||
            s >= n || t >= n) {
          throw StoreError(fmt::format("{}: cannot read the edges: a row \"{}\"", name_, row), false);
        }
        fn(s, t);
      });
    };
    std::vector<std::uint32_t> out_degree(n, 0);
    each_link([&](std::size_t s, std::size_t) { ++out_degree[s]; });
    constexpr double kDamping = 0.85;
    std::vector<double> rank(n, 1.0 / static_cast<double>(n)), next(n);
    for (int it = 0; it < 100; ++it) {
      double dangling = 0;
      for (std::size_t i = 0; i < n; ++i) dangling += out_degree[i] == 0 ? rank[i] : 0.0;
      const double base = (1.0 - kDamping + kDamping * dangling) / static_cast<double>(n);
      std::fill(next.begin(), next.end(), base);
      each_link([&](std::size_t s, std::size_t t) { next[t] += kDamping * rank[s] / out_degree[s]; });
      double change = 0;
      for (std::size_t i = 0; i < n; ++i) change += std::abs(next[i] - rank[i]);
      rank.swap(next);
      g.pagerank_iterations = it + 1;
      if (change < 1e-9) break;
    }
    // The ranks by COPY into a temporary table, then into chunk_metrics by one UPDATE.
    exec("CREATE TEMPORARY TABLE sluice_graph_ranks (i integer NOT NULL, r double precision NOT NULL) ON COMMIT DROP");
    {
      ResultPtr start(PQexec(conn_, "COPY sluice_graph_ranks (i, r) FROM STDIN"));
      if (!start || PQresultStatus(start.get()) != PGRES_COPY_IN) fail(start.get(), "cannot store the ranks");
      std::string buffer;
      auto flush = [&] {
        if (PQputCopyData(conn_, buffer.data(), static_cast<int>(buffer.size())) != 1) {
          fail(nullptr, "cannot store the ranks");
        }
        buffer.clear();
      };
      for (std::size_t i = 0; i < n; ++i) {
        // The shortest text that reads back as the same double.
        fmt::format_to(std::back_inserter(buffer), "{}\t{}\n", i, rank[i]);
        if (buffer.size() >= 1 << 16) flush();
      }
      if (!buffer.empty()) flush();
      if (PQputCopyEnd(conn_, nullptr) != 1) fail(nullptr, "cannot store the ranks");
      ResultPtr end(PQgetResult(conn_));
      check(end, "cannot store the ranks");
      while (PGresult* more = PQgetResult(conn_)) PQclear(more);
    }
    exec("UPDATE chunk_metrics m SET pagerank = r.r FROM sluice_graph_nodes n JOIN sluice_graph_ranks r ON r.i = n.i "
         "WHERE m.chunk_id = n.id");
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
