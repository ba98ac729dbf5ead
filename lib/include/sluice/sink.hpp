#pragma once
/// Sinks: where embedded records go when the output is not a JSONL file.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/events.hpp>
#include <sluice/record.hpp>
#include <sluice/vector_format.hpp>

struct uv_loop_s;

namespace sluice {

/// What a run tells its sink before the first write (Sink::open()). Plain values.
struct SinkRun {
  std::string pipeline_id;
  /// Everything that can change an output byte, one part per line: the model by content,
  /// pooling, normalisation, precision and the options (the checkpoint's fingerprint). Two
  /// runs with the same fingerprint write the same vectors for the same records.
  std::string fingerprint;
  std::string model;             ///< the model folder
  std::string model_family;      ///< "bert", "use-lite", ...
  /// What makes the vectors of one model differ from another's, in one line: the model
  /// files by content, pooling, normalisation and precision (not the folder's path). A store
  /// refuses vectors whose identity or dimensions differ from those it holds.
  std::string model_identity;
  std::string pooling;    ///< "mean", "cls", "max", "last_token"
  std::string precision;  ///< "fp32", "bf16", "int8"
  std::uint32_t dimensions = 0;  ///< of the vectors the sink receives (after --dim)
  bool normalized = false;       ///< whether they are L2-normalised
  /// How the user asked vectors to be stored; the sink receives float32 values and converts.
  VectorFormat vector_format;
  std::string input;  ///< the input's name, for messages
  /// The run continues from a checkpoint. `position` is the sink position that checkpoint
  /// recorded (Sink::position()), empty when the sink keeps its own checkpoint.
  bool resume = false;
  std::string position;
  /// The loop the pipeline runs on: a sink may issue its I/O there (libuv calls back on the
  /// loop thread, the thread of every Sink call).
  uv_loop_s* loop = nullptr;
  /// Publishes an event of the sink's own to the run's subscribers (the code index's file
  /// events), stamped and numbered in order with the engine's. Call it on the loop thread
  /// only (from a Sink call, or a subscriber's callback); an event published from inside a
  /// subscriber's callback is delivered after the one being delivered.
  std::function<void(EventPayload)> publish;
};

/// A record the sink refused (a database constraint, an id it cannot store): the run treats
/// it as a bad record (DocumentFailed, the dead-letter file, --on-error and --max-errors).
struct SinkRejection {
  std::uint64_t index = 0;  ///< EmbeddedRecord::index
  ErrorInfo error;
  std::string json;  ///< the record's bytes, for the dead-letter file
};

/// What a commit made durable.
struct CommitResult {
  /// Empty: every record written before the commit is durable (except those rejected). Else
  /// what failed; the run stops with status "failed", and its checkpoint stays at the last
  /// commit that succeeded.
  std::string error;
  std::vector<SinkRejection> rejected;  ///< in index order
};

/// Receives embedded records in input order. Thread: the thread running the pipeline's loop
/// (every call): the caller's with Pipeline::run(), the loop's with start(), the stream's own
/// thread with EventStream. A sink that does slow I/O holds up the loop; such sinks should
/// hand work to a thread of their own and return, and say when it is durable through
/// commit(). Ownership: the Pipeline owns it from set_sink() until the Pipeline is destroyed
/// (with EventStream, until the stream is).
///
/// Durability: a record counts as done (DocumentCompleted, the checkpoint, the in-flight
/// bounds) only once a commit() issued after its write() has reported success. The engine
/// keeps at most one commit outstanding and issues the next as soon as records wait, so
/// commits group what arrived meanwhile. A sink that writes synchronously needs no commit():
/// the default reports success at once.
class Sink {
 public:
  virtual ~Sink() = default;
  /// The sink's name in events and messages (a store names its URI without the password).
  virtual std::string name() const { return "<sink>"; }
  /// Before the first write. A sink that cannot take this run's vectors (another model in
  /// the table, a store it cannot reach) throws sluice::Error: the run does not start. A sink
  /// that keeps the checkpoint starts a new run here unless `run.resume`: a run killed before
  /// its first commit then resumes from the beginning, not from an older run's checkpoint.
  virtual void open(const SinkRun& run) { (void)run; }
  /// Records in input order, each exactly once. Exceptions stop the run with status "failed".
  virtual void write(std::span<const EmbeddedRecord> records) = 0;
  /// Whether the sink takes records as JSONL lines the pipeline formats (EmbeddedRecord::jsonl,
  /// formatted on the model threads; PipelineOptions::output_field and vector_format apply, and
  /// --long-input chunk is allowed) instead of their bytes and float32 vectors.
  virtual bool wants_jsonl() const { return false; }
  /// A sink that writes one file that can be read again names it: its position() is then the
  /// decimal byte offset its output ends at, checkpoints hash the bytes before it, and a resume
  /// checks them, as for the JSONL output (reliability.md, "Resume"). nullopt otherwise.
  virtual std::optional<std::string> file() const { return std::nullopt; }
  /// Where the sink will stand once the records written so far are durable, opaque to the
  /// engine (a byte offset for a file). The engine asks after writing the last record of each
  /// window, records the answer in the checkpoint file at that window, and hands it back to
  /// open() (SinkRun::position) on resume: the sink then drops what it holds past it. Sinks
  /// that keep their own checkpoint, or cannot go back, return nothing: a resume into a sink
  /// that neither keeps the checkpoint nor has a position is refused.
  virtual std::string position() const { return {}; }
  /// Makes every record written so far durable. When keeps_checkpoint(), `checkpoint` (the
  /// run's checkpoint, JSON; empty when the run keeps none) is stored in the same transaction,
  /// so rows and checkpoint never disagree. Calls `done` exactly once, from any thread.
  virtual void commit(const std::string& checkpoint, std::function<void(CommitResult)> done) {
    (void)checkpoint;
    done({});
  }
  /// Whether the sink stores the run's checkpoint itself (commit()) and returns it
  /// (load_checkpoint()); the run then writes no checkpoint file.
  virtual bool keeps_checkpoint() const { return false; }
  /// The checkpoint the last successful commit stored; nullopt when none. Called after
  /// open(), on resume. Throws sluice::Error when it cannot be read.
  virtual std::optional<std::string> load_checkpoint() { return std::nullopt; }
  /// Called once at the end of a run that did not fail, after the last commit.
  virtual void finish() {}
  /// At the end of a run that did not fail: the records this run (its resumed parts
  /// included) has in the sink, counted there, or nullopt when the sink cannot count them.
  /// The run compares it with its own count (RunSummary::verified); a mismatch fails it.
  virtual std::optional<std::uint64_t> verified_count() { return std::nullopt; }
};

/// The JSONL output as a sink: `path` ("-": standard output, written where its descriptor
/// stands) gets each record's line (wants_jsonl()), appended in order with one write in flight
/// on the pipeline's loop; a commit is a write and an fsync (skipped on a pipe or terminal);
/// position() is the byte offset; a resume cuts the file back to it. The file is locked for the
/// run (a second run on it is refused). What pipeline-run and a Pipeline without a sink use.
std::unique_ptr<Sink> make_jsonl_sink(const std::string& path);

}  // namespace sluice
