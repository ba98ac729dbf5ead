#pragma once
// What StoreSink (store.cpp) needs of a database: SQLite (sqlite_store.cpp) and PostgreSQL
// (postgres_store.cpp). One connection, used by one thread at a time.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/store.hpp>

namespace sluice::store {

/// A failure of the connection or the server, not of one row. `transient`: the connection was
/// lost (the commit is retried on a new one); otherwise the run stops.
struct StoreError : std::runtime_error {
  StoreError(const std::string& message, bool transient) : std::runtime_error(message), transient(transient) {}
  bool transient;
};

/// The table's entry in sluice_tables.
struct TableMeta {
  std::string model;
  std::string model_identity;
  std::string pooling;
  std::string precision;
  std::uint32_t dimensions = 0;
  VectorType type = VectorType::float32;
  bool normalized = false;
};

/// One row to upsert.
struct Row {
  std::uint64_t index = 0;  // EmbeddedRecord::index
  std::string id;
  std::string record;     // the record's JSON bytes
  std::string embedding;  // the output type's little-endian bytes
  std::vector<float> values;  // the same values as floats (PostgreSQL's real[])
  std::uint64_t line = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  /// "sqlite:PATH table T" or the URI without its password.
  virtual const std::string& name() const = 0;
  /// Creates sluice_tables and sluice_runs when missing, and checks they can be written; read
  /// only: nothing. Throws sluice::Error.
  virtual void ensure_catalog() = 0;
  /// The table's entry, when it has one; throws sluice::Error(invalid_argument) when a table of
  /// that name exists without one (not sluice's).
  virtual std::optional<TableMeta> read_meta(const std::string& table) = 0;
  /// Holds the table for this connection's writer until the backend is closed: a second run
  /// writing the same table at once is refused (the later write of an id would win, and each
  /// run's count would be wrong). Throws sluice::Error(invalid_argument) naming the table.
  virtual void lock_for_writing(const std::string& table) = 0;
  /// Creates the table and its entry.
  virtual void create_table(const std::string& table, const TableMeta& meta) = 0;
  virtual std::uint64_t count_rows(const std::string& table) = 0;
  /// The last run recorded for the table.
  struct RunRow {
    std::int64_t run = 0;
    std::string id_field;
    std::string checkpoint;  // empty when none was committed
  };
  virtual std::optional<RunRow> last_run(const std::string& table) = 0;
  /// Records a new run; returns its number.
  virtual std::int64_t start_run(const std::string& table, const std::string& pipeline_id, const std::string& input,
                                 const std::string& id_field) = 0;
  /// In one transaction: upserts `rows` (an id this run already wrote from another line is
  /// not overwritten: that row's outcome is duplicate_id) and stores `checkpoint` on the run
  /// (when not empty). Outcomes: one per row, empty for a row written. Throws StoreError.
  virtual std::vector<std::optional<ErrorInfo>> commit(const std::string& table, std::int64_t run,
                                                       std::span<const Row> rows, const std::string& checkpoint,
                                                       VectorType type) = 0;
  /// Connects again after a transient failure; throws StoreError.
  virtual void reconnect() = 0;
  virtual std::uint64_t count_run_rows(const std::string& table, std::int64_t run) = 0;
  /// Every row's id, record and vector (decode_vector()'s values, or values proportional to
  /// them), a block of rows at a time (memory: one block).
  using ScanFn = std::function<void(std::string_view id, std::string_view record, std::span<const float> vector)>;
  virtual void scan(const std::string& table, VectorType type, std::uint32_t dimensions, const ScanFn& fn) = 0;

  /// What changes whenever the table's rows may have: its row count, its last run and that
  /// run's checkpoint (every commit stores one). An index built at one version is stale at another.
  virtual std::string table_version(const std::string& table) = 0;
  /// The records of these ids (those that exist).
  virtual std::vector<std::pair<std::string, std::string>> fetch_records(const std::string& table,
                                                                         std::span<const std::string> ids) = 0;

  /// The field ids come from, named in duplicate_id errors.
  void set_id_field(std::string field) { id_field_ = std::move(field); }

 protected:
  std::string id_field_;
};

/// The backend for a URI; connects. Throws sluice::Error.
std::unique_ptr<Backend> connect(const StoreOptions& options);
std::unique_ptr<Backend> connect_sqlite(const std::string& path, const std::string& name, bool read_only);
std::unique_ptr<Backend> connect_postgres(const std::string& uri, const std::string& name, bool read_only);

/// The element bytes of `embedding` in `type`, little-endian (what --output-encoding base64
/// writes), and the values --output-encoding json writes, as floats.
void encode_vector(std::span<const float> embedding, VectorType type, std::string& bytes, std::vector<float>& values);
/// a · b over n floats, with the vector instructions of the machine it runs on (AVX-512, AVX2,
/// or baseline x86-64, chosen at the first call).
float dot(const float* a, const float* b, std::size_t n);

/// Scales `v` to unit length (a zero vector stays zero).
void normalise(std::vector<float>& v);
/// A query as search compares it with stored vectors: quantised as the table stores them (int8,
/// binary), then of unit length. Throws sluice::Error(invalid_argument) when its dimensions
/// are not the table's.
std::vector<float> query_as_stored(std::span<const float> query, VectorType type, std::uint32_t dimensions);

/// Tests: search's products use at most this instruction set from now on ("avx512", "avx2",
/// "base"); returns whether that set is the one that runs (false: the machine lacks it).
bool limit_search_isa(std::string_view name);

/// Bytes per stored vector of `dimensions` elements of `type`.
std::size_t vector_bytes(VectorType type, std::uint32_t dimensions);
/// Decodes a stored vector to floats for search (int8 as v/127, binary as +1/-1 per bit).
void decode_vector(std::string_view bytes, VectorType type, std::uint32_t dimensions, std::vector<float>& out);

/// Table names: [a-z_][a-z0-9_]*, at most 63 characters (PostgreSQL's limit; lowercase, as
/// SQLite compares names without case and PostgreSQL folds unquoted ones), and not one of
/// sluice's own. Throws sluice::Error(invalid_argument).
void check_table_name(const std::string& table);

}  // namespace sluice::store
