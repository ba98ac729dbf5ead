#pragma once
// The code index's tables in a store (docs/code-index.md, "Schema"): files and chunks, with
// the chunks' vectors, beside sluice's catalog (sluice_tables names `chunks` with its model, so
// `pipeline-run search --table chunks` reads it like any table).
//
// Writes come in groups of whole files, one transaction per group with a savepoint per file:
// a file's old chunks are deleted, its new ones inserted and its files row written last, all
// or nothing. A file that fails there is rolled back to its savepoint and recorded as failed,
// its old chunks kept. Thread: one connection, one thread at a time.

#include <cstdint>
#include <functional>
#include <string_view>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "store_backend.hpp"

namespace sluice::store {

/// A row of `files`.
struct CodeFileRow {
  std::string path;  ///< relative to the indexed folder, "/" separators
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::int64_t ctime_ns = 0;
  std::string sha256;    ///< of the file's bytes; empty when they were not read
  std::string language;  ///< "python", ..., "markdown", "text"; empty when not read
  std::string status;    ///< indexed, partial, skipped, failed
  std::string reason;    ///< the skip reason, the error, or the first syntax error's line
  std::uint32_t chunks = 0;
};

/// A row of `chunks`.
struct CodeChunkRow {
  std::string id;  ///< PATH#ORDINAL
  std::uint32_t ordinal = 0;
  std::string kind;
  std::string name;
  std::uint32_t start_line = 0;
  std::uint32_t end_line = 0;
  std::uint64_t start_byte = 0;
  std::uint64_t end_byte = 0;
  std::string content;
  std::string content_hash;  ///< SHA-256 of `content`
  std::string text_hash;     ///< SHA-256 of the embedded text (header line and content)
  std::uint32_t tokens = 0;
  std::string embedding;     ///< the float32 vector's little-endian bytes
};

/// A row of `edges`: what a chunk names, before it is resolved to a chunk (resolve_graph()).
struct CodeEdgeRow {
  std::string source_id;
  std::string target_name;
  std::string kind;  ///< "imports", "calls", "inherits"
};

/// What a file's stored row says of it (for the incremental walk).
struct StoredFile {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::int64_t ctime_ns = 0;
  std::string status;
  bool stat_known = false;  ///< false for a failed file: it is read again
};

/// One file's outcome to write.
struct CodeFileWrite {
  enum class Kind {
    replace,    ///< delete the file's chunks, insert `chunks`, write `file`
    fail,       ///< keep the file's chunks; write `file` (status failed) without its stat
    unchanged,  ///< only mark the file as seen by this run
  };
  Kind kind = Kind::replace;
  CodeFileRow file;
  std::vector<CodeChunkRow> chunks;
  std::vector<CodeEdgeRow> edges;
};

/// What resolve_graph() did.
struct GraphStats {
  std::uint64_t edges = 0, resolved = 0;
  std::uint64_t imports = 0, imports_resolved = 0;
  std::uint64_t chunks = 0;
  int pagerank_iterations = 0;
  double seconds = 0;  ///< resolve_graph()'s wall time
};

/// The files an import may name, most likely first: `source_path` imports `name` (as written).
using ImportCandidates = std::function<std::vector<std::string>(std::string_view source_path, std::string_view name)>;

class CodeStore {
 public:
  /// Connects to the store at `uri` (sqlite:PATH, postgresql://..., postgres://...). Throws
  /// sluice::Error.
  static std::unique_ptr<CodeStore> open(const std::string& uri, bool read_only);
  virtual ~CodeStore() = default;
  virtual const std::string& name() const = 0;

  /// The chunks table's catalog entry, when the store has an index. Throws sluice::Error
  /// (invalid_argument) when tables of these names exist without one.
  virtual std::optional<TableMeta> meta() = 0;
  /// Creates the catalog, the tables and the entry (a writer, once).
  virtual void create(const TableMeta& meta) = 0;
  /// One writer at a time per store (throws sluice::Error naming the store).
  virtual void lock() = 0;
  /// After meta() found an index: adds what an index made by an earlier version lacks.
  virtual void upgrade() {}
  /// Records a run of `root`; returns its number (files seen by it carry it).
  virtual std::int64_t start_run(const std::string& pipeline_id, const std::string& root) = 0;

  virtual std::optional<StoredFile> file(const std::string& path) = 0;
  /// A value the index keeps about itself (sluice_code_state): "root" (the folder indexed),
  /// "options" (what the rows were made with); empty when unset. set_state() commits at once.
  /// A store that keeps none says "" and ignores set_state().
  virtual std::string state(const std::string& key) {
    (void)key;
    return {};
  }
  virtual void set_state(const std::string& key, const std::string& value) {
    (void)key;
    (void)value;
  }
  /// The vector stored for a chunk whose embedded text has this hash; false when none.
  virtual bool embedding_of(const std::string& text_hash, std::string& bytes) = 0;

  /// Writes the files in one transaction, each all or nothing. Returns, per file, empty or
  /// the error that made it fail (its old rows kept, its files row marked failed). Throws
  /// StoreError when the transaction itself cannot be written.
  virtual std::vector<std::string> commit(std::span<const CodeFileWrite> files, std::int64_t run) = 0;
  /// Deletes the files (and their chunks and edges) no run since `run` has seen; returns how many.
  virtual std::uint64_t remove_unseen(std::int64_t run) = 0;
  /// Resolves every edge again (docs/code-index.md, "The graph"): an import to the first chunk
  /// of the first candidate file the store holds; a call or base to a definition of that name
  /// in the same file, else in a file the source file imports, else the only one in the store;
  /// unresolved edges keep their target's name. Then each chunk's fan-in, fan-out and PageRank
  /// into chunk_metrics. One transaction. Memory: 16 bytes a chunk (the ranks).
  /// A store without a graph (none yet) throws sluice::Error (invalid_argument).
  virtual GraphStats resolve_graph(const ImportCandidates& candidates);
  /// Whether a file was written or removed since the graph was last resolved (kept in the
  /// store, so a run killed before resolving leaves it to the next).
  /// A store without a graph says false.
  virtual bool graph_stale() { return false; }

  /// A chunk with its metrics.
  struct RankedChunk {
    std::string id, path, kind, name;
    std::uint32_t start_line = 0, end_line = 0;
    std::uint64_t fan_in = 0, fan_out = 0;
    double pagerank = 0;
  };
  /// The `n` chunks of highest PageRank (ties by id). Throws sluice::Error.
  virtual std::vector<RankedChunk> top_chunks(std::size_t n);
  /// Every chunk with its metrics (by id), then every resolved edge (source id, target id,
  /// kind), a row at a time (memory: one row).
  virtual void each_node(const std::function<void(const RankedChunk&)>& fn);
  virtual void each_edge(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn);

  struct Counts {
    std::uint64_t files = 0, chunks = 0;
  };
  virtual Counts counts() = 0;
};

/// The PostgreSQL store (postgres_code_store.cpp); CodeStore::open() calls it.
std::unique_ptr<CodeStore> open_postgres_code_store(const std::string& uri, bool read_only);

/// The chunks table's name in sluice_tables (and for search --table).
inline constexpr const char* kChunksTable = "chunks";

}  // namespace sluice::store
