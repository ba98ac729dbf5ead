#pragma once
/// Pipeline events: what happened, as typed facts.
///
/// Every event has the same envelope (sequence number, timestamp, pipeline id) and a payload
/// that is a plain struct owning its data. The payloads form one std::variant, `EventPayload`,
/// dispatched with std::visit. Each payload names its JSON tag once (`kType`); the JSON form
/// is one object per line with "type" and "v" (the schema version), see docs/events.md.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <sluice/error.hpp>

namespace sluice {

inline constexpr int kEventSchemaVersion = 1;

/// How a run ended. JSON: "completed", "stopped", "failed".
enum class RunStatus : std::uint8_t {
  completed,  ///< every record read was embedded or failed as a bad record
  stopped,    ///< stop() (SIGINT, SIGTERM) or abort(): drained, checkpointed, resumable
  failed,     ///< an error ended it (RunSummary::error says which)
};

/// The stages that report their state (StageStateChanged). JSON: "pipeline", "reader".
enum class Stage : std::uint8_t { pipeline, reader };

/// A stage's lifecycle. JSON: the names below.
enum class StageState : std::uint8_t {
  created,
  running,
  paused,    ///< the reader, at an in-flight bound
  draining,  ///< the pipeline, after stop(): finishing the work in flight
  stopped,
  failed,
};

/// Where a run is (BatchProgress::phase). JSON: the names below.
enum class RunPhase : std::uint8_t {
  embedding,  ///< reading and embedding
  draining,   ///< every record read has been through the model; writing remains
  finishing,  ///< everything written; the final checkpoint and closing remain
  finished,   ///< the last event of a completed run
  stopped,    ///< the last event of a stopped run
  failed,     ///< the last event of a failed run
};

/// The JSON names of the enums above, and back (false for an unknown name).
std::string_view to_string(RunStatus value) noexcept;
std::string_view to_string(Stage value) noexcept;
std::string_view to_string(StageState value) noexcept;
std::string_view to_string(RunPhase value) noexcept;
bool from_string(std::string_view name, RunStatus& out) noexcept;
bool from_string(std::string_view name, Stage& out) noexcept;
bool from_string(std::string_view name, StageState& out) noexcept;
bool from_string(std::string_view name, RunPhase& out) noexcept;

/// Totals of a run; carried by PipelineFinished and returned by Pipeline::run().
struct RunSummary {
  RunStatus status = RunStatus::completed;  ///< how the run ended
  std::uint64_t records_read = 0;   ///< records (lines with content) seen in the input
  std::uint64_t completed = 0;      ///< records embedded and written
  std::uint64_t failed = 0;         ///< records that failed (bad input or model error)
  std::uint64_t tokens = 0;         ///< real (unpadded) tokens embedded
  std::uint64_t truncated = 0;      ///< records cut to the model's maximum length
  std::uint64_t bytes_read = 0;     ///< input bytes consumed
  std::uint64_t bytes_written = 0;  ///< output bytes written
  double elapsed_s = 0;             ///< wall time from start to finish
  std::string error;                ///< for status "failed": why the run stopped
  // The model calls of this process (after --resume: of the resumed part only), retries of a
  // failed batch record by record included. model_tokens / padded_tokens is the padding
  // efficiency; model_busy_s / (model_workers x elapsed_s) how busy the model was kept.
  std::uint64_t model_calls = 0;    ///< batches given to the model
  std::uint64_t model_tokens = 0;   ///< real tokens in those batches
  std::uint64_t padded_tokens = 0;  ///< rows x padded length, summed over those batches
  double model_busy_s = 0;          ///< wall time spent inside the model's embed(), summed over calls
  std::uint32_t model_workers = 0;  ///< model calls that could run at once (ThreadLayout::workers)
  /// Records of this run the sink holds, counted by the sink at the end of a completed run
  /// (Sink::verified_count(): a store counts its rows); none when the sink cannot count. A
  /// count other than `completed` fails the run.
  std::optional<std::uint64_t> verified;

  bool operator==(const RunSummary&) const = default;
};

/// The pipeline began; carries what it runs on.
struct PipelineStarted {
  static constexpr std::string_view kType = "pipeline_started";
  std::string input;                ///< input path, "-" for stdin
  std::string output;               ///< output path, "-" for stdout
  std::string model;                ///< model folder
  std::uint64_t input_bytes = 0;    ///< input size; 0 when unknown (stdin, pipes)
  std::uint32_t batch_size = 0;
  std::uint32_t dimensions = 0;     ///< embedding size
  std::uint32_t max_tokens = 0;     ///< the model's maximum sequence length
  std::uint32_t max_batch_tokens = 0;  ///< padded tokens per model call, at most; 0: no budget
  std::uint32_t sort_window = 0;    ///< records sorted by length together; 0 or 1: input order
  std::uint32_t model_workers = 0;  ///< model calls at once (model_thread_layout())
  std::uint32_t model_threads = 0;  ///< intra-op threads of each call

  bool operator==(const PipelineStarted&) const = default;
};

/// A record entered the pipeline (parsed and valid, about to be tokenised).
struct DocumentStarted {
  static constexpr std::string_view kType = "document_started";
  std::uint64_t index = 0;          ///< 0-based record index in input order
  InputLocation location;

  bool operator==(const DocumentStarted&) const = default;
};

/// A record was embedded and its output line written.
struct DocumentCompleted {
  static constexpr std::string_view kType = "document_completed";
  std::uint64_t index = 0;
  InputLocation location;
  std::uint32_t tokens = 0;         ///< tokens fed to the model, special tokens included
  bool truncated = false;           ///< the text was longer than the model's limit
  double duration_ms = 0;           ///< from DocumentStarted to the output line written

  bool operator==(const DocumentCompleted&) const = default;
};

/// A record could not be embedded. The run goes on unless the user asked to stop at the first.
struct DocumentFailed {
  static constexpr std::string_view kType = "document_failed";
  std::uint64_t index = 0;
  InputLocation location;
  ErrorCode code = ErrorCode::internal;  ///< error kind, serialised by error_name()
  std::string message;              ///< for the user: what, where, what to do
  std::string field;                ///< the JSON field concerned, empty when none
  bool retryable = false;           ///< whether the same record may succeed on another attempt
  std::uint32_t attempt = 1;

  bool operator==(const DocumentFailed&) const = default;
};

/// Periodic progress of the whole run.
struct BatchProgress {
  static constexpr std::string_view kType = "batch_progress";
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t in_flight = 0;      ///< records read but not yet written
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_total = 0;    ///< 0 when unknown
  std::uint64_t tokens = 0;
  double docs_per_s = 0;            ///< records through the model a second, recent (smoothed)
  double tokens_per_s = 0;          ///< tokens through the model a second, recent (smoothed)
  std::optional<double> eta_s;      ///< absent until the estimate is meaningful or when the total is unknown
  // Added after the first release (a reader fills in the defaults when they are absent):
  RunPhase phase = RunPhase::embedding;
  std::uint64_t processed = 0;      ///< records through the model (or failed before it), in completion order
  std::uint64_t bytes_processed = 0;   ///< their input bytes, with those done before a resume
  std::uint64_t tokens_processed = 0;  ///< the tokens the model has embedded, with those before a resume
  std::uint64_t tokens_expected = 0;   ///< tokens of the whole run, done and estimated; 0 until known
  double fraction = 0;              ///< of the run's work done, 0 to 1; 1 only in the last event
  double bytes_per_s = 0;           ///< input bytes through the model a second, recent (smoothed)
  double elapsed_s = 0;             ///< since the run started

  bool operator==(const BatchProgress&) const = default;
};

/// The lifecycle state of a stage changed.
struct StageStateChanged {
  static constexpr std::string_view kType = "stage_state_changed";
  Stage stage = Stage::pipeline;
  StageState from = StageState::created;
  StageState to = StageState::created;
  std::string reason;               ///< why, e.g. "queue full", "end of input"; may be empty

  bool operator==(const StageStateChanged&) const = default;
};

/// A checkpoint was written: positions, not data.
struct Checkpointed {
  static constexpr std::string_view kType = "checkpointed";
  std::string path;
  std::uint64_t records_done = 0;   ///< records whose output is durable
  std::uint64_t input_offset = 0;   ///< input byte offset to resume reading from
  std::uint64_t input_line = 0;     ///< lines consumed before input_offset
  std::uint64_t output_offset = 0;  ///< output bytes durable on disk

  bool operator==(const Checkpointed&) const = default;
};

/// The run ended; the last event of every run.
struct PipelineFinished {
  static constexpr std::string_view kType = "pipeline_finished";
  RunSummary summary;

  bool operator==(const PipelineFinished&) const = default;
};

/// The code index (`pipeline-run index`, docs/code-index.md) began a file: the first of its
/// records entered the pipeline.
struct FileStarted {
  static constexpr std::string_view kType = "file_started";
  std::string path;  ///< relative to the indexed folder
  std::uint64_t size = 0;

  bool operator==(const FileStarted&) const = default;
};

/// A file's rows are in the store (its transaction committed).
struct FileIndexed {
  static constexpr std::string_view kType = "file_indexed";
  std::string path;
  std::string status;  ///< "indexed", "partial" (syntax errors) or "unchanged" (not read)
  std::uint32_t chunks = 0;           ///< its chunks (0 when unchanged)
  std::uint32_t chunks_embedded = 0;  ///< of which embedded now (the others' vectors were stored)
  std::string reason;                 ///< for partial: the first syntax error's line

  bool operator==(const FileIndexed&) const = default;
};

/// A file recorded as skipped (binary, too large, minified, invalid UTF-8, a link...).
struct FileSkipped {
  static constexpr std::string_view kType = "file_skipped";
  std::string path;
  std::string reason;

  bool operator==(const FileSkipped&) const = default;
};

/// A file that failed: unreadable, not chunked, a chunk not embedded, or refused by the store.
/// Its old rows stay.
struct FileFailed {
  static constexpr std::string_view kType = "file_failed";
  std::string path;
  std::string error;

  bool operator==(const FileFailed&) const = default;
};

/// A model worker (`pipeline-run worker`, docs/scale-out.md) with this run's model was heard
/// from for the first time: it takes the run's batches.
struct WorkerJoined {
  static constexpr std::string_view kType = "worker_joined";
  std::string worker;  ///< the worker's name (its host and process id unless it was given one)
  std::string host;
  std::uint32_t calls = 0;    ///< model calls it runs at once
  std::uint32_t threads = 0;  ///< cores it uses, all its calls together

  bool operator==(const WorkerJoined&) const = default;
};

/// A worker left: it said so when it stopped ("stopped"), or nothing was heard from it for a
/// while ("silent for N s": killed, or cut off). Its unfinished batches go to other workers
/// when their acknowledgement deadline passes.
struct WorkerLeft {
  static constexpr std::string_view kType = "worker_left";
  std::string worker;
  std::string reason;

  bool operator==(const WorkerLeft&) const = default;
};

/// A worker whose model differs from the run's (other weights, pooling, normalisation or
/// precision) is connected: it takes none of this run's batches.
struct WorkerRefused {
  static constexpr std::string_view kType = "worker_refused";
  std::string worker;
  std::string host;
  std::string worker_model;  ///< the worker's model, as model_identity() names it
  std::string run_model;     ///< this run's

  bool operator==(const WorkerRefused&) const = default;
};

/// A batch came back from its second (or later) delivery: a worker that took it before died or
/// was cut off before answering. `abandoned`: it was delivered as often as the run allows and no
/// worker answered, so its records fail (each alone, as a failing batch's do) instead of being
/// sent again and again.
struct BatchRedelivered {
  static constexpr std::string_view kType = "batch_redelivered";
  std::uint64_t batch = 0;       ///< the run's batch number, from 1
  std::uint32_t deliveries = 0;  ///< times the batch was handed to a worker
  std::string worker;            ///< the worker that answered
  bool abandoned = false;

  bool operator==(const BatchRedelivered&) const = default;
};

/// A worker's rate over the last interval, as it reports it (every worker sends its counts
/// each second; the run publishes each active worker's rate every 5 s).
struct WorkerRate {
  static constexpr std::string_view kType = "worker_rate";
  std::string worker;
  std::uint64_t batches = 0;  ///< batches it answered since it started (any run's)
  std::uint64_t rows = 0;     ///< model rows it embedded since it started
  double rows_per_s = 0;      ///< over the interval
  double tokens_per_s = 0;
  double busy = 0;            ///< fraction of the interval its model calls took, per call slot

  bool operator==(const WorkerRate&) const = default;
};

/// A request to a remote embedding API (--remote) failed in a way that may pass, and is sent
/// again after `wait_s`: a 429 (rate limited), a 5xx, a timeout, a dropped connection or an
/// answer that could not be read.
struct RemoteRetry {
  static constexpr std::string_view kType = "remote_retry";
  std::uint32_t attempt = 0;  ///< the attempt that failed, from 1
  std::uint32_t status = 0;   ///< its HTTP status; 0 when no answer came
  std::string reason;
  double wait_s = 0;          ///< before the next attempt (Retry-After, the rate-limit headers, or backoff)

  bool operator==(const RemoteRetry&) const = default;
};

/// What a run's remote API calls cost so far (every 2 s while they go on, and once at the end
/// of the run).
struct RemoteUsage {
  static constexpr std::string_view kType = "remote_usage";
  std::uint64_t requests = 0;        ///< HTTP requests sent, retries included
  std::uint64_t retries = 0;         ///< of which sent again after a failure
  std::uint64_t inputs = 0;          ///< texts embedded
  std::uint64_t tokens_billed = 0;   ///< the answers' usage.total_tokens (estimated where an answer had none)
  double throttled_s = 0;            ///< time calls waited for the rate limits (--rate-limit-*, 429s, headers)

  bool operator==(const RemoteUsage&) const = default;
};

using EventPayload = std::variant<PipelineStarted, DocumentStarted, DocumentCompleted, DocumentFailed,
                                  BatchProgress, StageStateChanged, Checkpointed, PipelineFinished, FileStarted,
                                  FileIndexed, FileSkipped, FileFailed, WorkerJoined, WorkerLeft, WorkerRefused,
                                  BatchRedelivered, WorkerRate, RemoteRetry, RemoteUsage>;

inline constexpr std::size_t kEventKinds = std::variant_size_v<EventPayload>;

/// The envelope every event shares.
struct PipelineEvent {
  std::uint64_t seq = 0;            ///< 1, 2, 3... per pipeline, no gaps
  double timestamp = 0;             ///< seconds since the Unix epoch
  std::string pipeline_id;
  EventPayload payload;

  bool operator==(const PipelineEvent&) const = default;
};

/// The JSON tag of the payload held by `payload`.
std::string_view event_type(const EventPayload& payload) noexcept;

/// One JSON object, no newline: {"type":...,"v":1,"seq":...,"ts":...,"pipeline":...,<fields>}
/// (docs/events.md lists every event's fields). "ts" has six decimals (microseconds); an
/// absent optional field is left out; NaN and infinities are written as null. Thread: any.
std::string to_json(const PipelineEvent& event);
/// Appends what to_json() returns to `out` (not cleared first): a caller that reuses one
/// buffer serialises without allocating once the buffer has grown. Thread: any.
void append_json(std::string& out, const PipelineEvent& event);
/// Parses what to_json() wrote (any whitespace, a trailing newline and unknown extra fields
/// are accepted). Rejects invalid JSON, a "v" this reader does not support, an unknown "type",
/// and missing or mistyped fields; the ErrorInfo's `field` and message name the field, e.g.
/// `event_from_json: field "location.line" is missing`. Thread: any (one parser per thread).
Result<PipelineEvent> event_from_json(std::string_view json);

/// Which event kinds a subscriber wants. A subscriber that leaves per-document events out does
/// not pay for them: the pipeline builds a payload only when some subscriber wants its kind.
class EventFilter {
 public:
  static EventFilter all() {
    EventFilter f;
    f.wanted_.fill(true);
    return f;
  }
  template <typename... Payloads>
  static EventFilter of() {
    EventFilter f;
    (f.add<Payloads>(), ...);
    return f;
  }
  /// Everything except DocumentStarted and DocumentCompleted.
  static EventFilter without_documents() {
    EventFilter f = all();
    f.remove<DocumentStarted>();
    f.remove<DocumentCompleted>();
    return f;
  }

  template <typename Payload>
  void add() { wanted_[index_of<Payload>()] = true; }
  template <typename Payload>
  void remove() { wanted_[index_of<Payload>()] = false; }
  template <typename Payload>
  bool wants() const { return wanted_[index_of<Payload>()]; }
  bool wants_index(std::size_t i) const { return wanted_[i]; }
  void merge(const EventFilter& other) {
    for (std::size_t i = 0; i < kEventKinds; ++i) wanted_[i] = wanted_[i] || other.wanted_[i];
  }

  template <typename Payload>
  static constexpr std::size_t index_of() {
    return index_of_impl<Payload>(std::make_index_sequence<kEventKinds>{});
  }

 private:
  template <typename Payload, std::size_t... I>
  static constexpr std::size_t index_of_impl(std::index_sequence<I...>) {
    std::size_t r = kEventKinds;
    ((std::is_same_v<Payload, std::variant_alternative_t<I, EventPayload>> ? (r = I, 0) : 0), ...);
    return r;
  }
  std::array<bool, kEventKinds> wanted_{};
};

/// A subscription's handle, for Pipeline::unsubscribe().
using SubscriptionId = std::uint64_t;
/// A subscriber: called on the thread that runs the pipeline's loop (docs/library.md, "Threads").
using EventCallback = std::function<void(const PipelineEvent&)>;

/// Seconds since the Unix epoch, with microseconds: the clock of PipelineEvent::timestamp.
double unix_time_now() noexcept;

}  // namespace sluice
