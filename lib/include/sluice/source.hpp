#pragma once
/// Sources: where records come from. The JSONL file reader is one (make_jsonl_source()); a
/// program's own source has the same powers: sizes for the ETA, bad records named where they
/// are, and a position to resume from.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sluice/record.hpp>

namespace sluice {

/// A pull source (read_batch() until it returns nothing). The pipeline calls read_batch() from a
/// thread of its own, never concurrently, and stops calling after it returns an empty batch.
/// Memory: the pipeline asks again only when its queues have room, so a source that
/// produces lazily keeps the whole run bounded.
/// Ownership: the Pipeline owns it from set_source() until the Pipeline is destroyed.
///
/// Resume: a source that can go back gives each record a Record::position, an opaque string
/// that says where reading continues after that record. A checkpoint records the position of
/// the last record of the durable prefix; a resumed run hands it to resume() before the first
/// read_batch(), and the records that follow must be those an uninterrupted run would have
/// read next. A source whose records have no position cannot be resumed (the run refuses
/// --resume up front).
class Source {
 public:
  virtual ~Source() = default;
  /// Up to `max_records` records (more is allowed); an empty vector means the end. May
  /// block. A record the source cannot read (a file it cannot open, a line over a limit) is
  /// returned with Record::error set: it becomes a bad record in its place. Exceptions thrown
  /// here stop the run with status "failed" and the exception's message.
  /// Thread: the pipeline's source thread.
  virtual std::vector<Record> read_batch(std::size_t max_records) = 0;
  /// Total records when known in advance (for ETA); 0 when unknown. Thread: any.
  virtual std::size_t size_hint() const { return 0; }
  /// Total bytes when known in advance (the ETA follows bytes when the records have
  /// Record::end_offset); 0 when unknown. Thread: any.
  virtual std::uint64_t size_bytes() const { return 0; }
  /// The name used in messages, events and checkpoints: a path, a URI without password.
  virtual std::string name() const { return "<source>"; }
  /// The file this source reads, if it is one: the run checks that its outputs are other
  /// files. Thread: any.
  virtual std::optional<std::string> file() const { return std::nullopt; }
  /// Why resume() cannot work, or nothing when it can: asked before the model loads, so that
  /// --resume of a source read once is refused at once. Thread: the caller of
  /// Pipeline::start()/run().
  virtual std::optional<std::string> resume_refusal() const {
    return "it cannot go back to a position (it has no Source::resume())";
  }
  /// Continue after the record whose Record::position is `position` (from an earlier run).
  /// Throws sluice::Error (invalid_argument) with what is wrong when the source no longer
  /// matches the position (the input changed before it): the run refuses to resume.
  /// Thread: the caller of Pipeline::start()/run(), before the source thread starts.
  virtual void resume(const std::string& position) { (void)position; }
};

/// Options of the JSONL file source.
struct JsonlSourceOptions {
  /// A longer line is a bad record (record_too_large) whose bytes are never held.
  std::size_t max_record_bytes = std::size_t{64} << 20;
  std::size_t read_chunk_bytes = std::size_t{1} << 20;  ///< bytes read at once
};

/// The JSONL reader as a Source: one record per non-blank line, LF or CRLF, a UTF-8 BOM
/// skipped, Record::line and offsets as in the file. `path` "-" reads standard input (once:
/// not resumable). Positions are the byte offset after the record, its line, and a hash of
/// every byte before it: resume() refuses a file changed before that point (changes after it
/// are fine), and one that does not end a line there. Throws sluice::Error (io_error)
/// "PATH: cannot open input: ..." when the file cannot be opened.
std::unique_ptr<Source> make_jsonl_source(const std::string& path, JsonlSourceOptions options = {});

}  // namespace sluice
