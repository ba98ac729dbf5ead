#pragma once
/// Stores: embeddings written into SQLite or PostgreSQL tables, exactly once, and searched.
///
/// A store is named by a URI: `sqlite:PATH` (the embedded default: a file, nothing to start)
/// or a libpq connection URI, `postgresql://[user[:password]@]host[:port]/dbname[?...]`
/// (`postgres://` too). Each table holds one model's vectors:
///   id (primary key, text), record (the input record: SQLite TEXT of its exact bytes,
///   PostgreSQL jsonb), embedding (SQLite: a BLOB of the little-endian values of the output
///   type, the bytes --output-encoding base64 writes; PostgreSQL: real[] of the values
///   --output-encoding json writes), run, line;
/// `sluice_tables` records each table's model, dimensions, output type and normalisation, and
/// `sluice_runs` each run with its checkpoint, committed in the same transaction as its rows
/// (docs/stores.md).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/sink.hpp>
#include <sluice/vector_format.hpp>

namespace sluice {

struct StoreOptions {
  std::string uri;                  ///< sqlite:PATH, postgresql://..., postgres://...
  std::string table = "embeddings";  ///< [a-z_][a-z0-9_]*, at most 63 characters
  /// The field whose value (a string or an integer, stored as text) is each row's id; records
  /// without it take their input line number. Another type is a bad record (invalid_id), and
  /// so is an id an earlier record of the same run had (duplicate_id): nothing is overwritten
  /// silently. A later run's record with the same id replaces the row (an update).
  std::string id_field = "id";
  /// Keep the run's checkpoint in the store (sluice_runs), committed with the rows.
  bool keep_checkpoint = true;
  /// Connection losses retried per commit, with exponential backoff from 0.1 s (at most 5 s
  /// a wait, about 16 s in all for 8), before the run stops with its last checkpoint.
  int max_retries = 8;
  /// Only read (describe_store(), search_store() always): nothing is created, a missing
  /// SQLite file is an error, and a user with SELECT alone is enough.
  bool read_only = false;
};

/// Whether `output` names a store rather than a JSONL file.
bool is_store_uri(std::string_view output) noexcept;
/// The file of a SQLite store's URI (`sqlite:PATH`, `sqlite://PATH`, `sqlite:///ABS`), or
/// nothing for another URI.
std::optional<std::string> sqlite_store_path(std::string_view uri);
/// The URI with any password replaced by "***" (for messages, events and logs).
std::string redact_uri(std::string_view uri);

/// What a store's table holds, from sluice_tables.
struct StoreTableInfo {
  bool exists = false;             ///< the table has a sluice_tables entry
  std::string model;               ///< the model folder of the run that created it
  std::string model_identity;      ///< SinkRun::model_identity
  std::string pooling;             ///< SinkRun::pooling
  std::string precision;           ///< SinkRun::precision
  std::uint32_t dimensions = 0;
  VectorType type = VectorType::float32;
  bool normalized = false;
  std::uint64_t rows = 0;
};

/// Connects, checks the URI, the permissions (to write, unless options.read_only) and that the
/// table, when it exists, is one of sluice's, and says what it holds: what `pipeline-run embed`
/// checks before loading a model.
/// Throws sluice::Error (invalid_argument: a bad URI or table name, a table not made by
/// sluice; io_error: unreachable, refused), with the URI's password hidden.
StoreTableInfo describe_store(const StoreOptions& options);

/// A sink that upserts every record into the store's table, one transaction per commit, with
/// the run's checkpoint in that transaction (Sink::keeps_checkpoint() unless
/// options.keep_checkpoint is false). Rows are written on a thread of the sink's own. open()
/// refuses vectors of another model, dimensions, output type or normalisation than the table
/// holds, naming both.
std::unique_ptr<Sink> make_store_sink(const StoreOptions& options);

/// One search result.
struct SearchHit {
  std::string id;
  double score = 0;    ///< cosine similarity to the query
  std::string record;  ///< the stored record (JSON)
};

/// The k rows nearest to each query by cosine similarity, best first (ties by id), by an
/// exact scan of the table in bounded memory (rows are read in blocks). The queries have the
/// table's dimensions (float32, as a model gives them). Throws sluice::Error.
std::vector<std::vector<SearchHit>> search_store(const StoreOptions& options,
                                                 std::span<const std::vector<float>> queries, std::size_t k);

/// An approximate nearest-neighbour index of a table (HNSW, hnswlib), for tables that outgrow
/// an exact scan. Kept in a file of its own (`path`, and `path`.meta beside it), built from one
/// scan of the table and rebuilt when the table has changed since (another run, more rows).
/// Memory: the whole index, about rows x (dimensions x 4 + m x 8) bytes, while it is open.
struct ApproximateIndexOptions {
  std::string path;              ///< the index file
  std::size_t m = 16;            ///< links per node (HNSW's M)
  std::size_t ef_construction = 200;
  std::size_t ef_search = 100;   ///< candidates kept while searching (at least k)
  std::size_t recall_sample = 200;  ///< rows taken as held-out queries to measure recall@10
};

struct ApproximateIndexInfo {
  std::uint64_t rows = 0;
  /// Of the 10 nearest rows by exact search, the share the index also returns, averaged over
  /// `recall_sample` rows of the table used as queries (each row itself left out of both).
  double recall_at_10 = 0;
  std::size_t recall_queries = 0;
  bool built_now = false;  ///< built (or rebuilt) by this open
  double build_s = 0;      ///< how long that took
  std::string table_version;
};

class ApproximateIndex {
 public:
  /// Opens the index at options.path, or builds it (also when it is stale or unreadable).
  /// Throws sluice::Error.
  static std::unique_ptr<ApproximateIndex> open(const StoreOptions& store, const ApproximateIndexOptions& options);
  virtual ~ApproximateIndex() = default;
  virtual const ApproximateIndexInfo& info() const = 0;
  /// The k rows the index finds nearest to each query (cosine), best first.
  virtual std::vector<std::vector<SearchHit>> search(std::span<const std::vector<float>> queries, std::size_t k) = 0;
};

}  // namespace sluice
