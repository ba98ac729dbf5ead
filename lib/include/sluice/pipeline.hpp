#pragma once
/// Pipeline: JSONL (or any Source) in, embeddings out, in input order, in bounded memory,
/// reporting everything as events.
///
/// Threads (see docs/architecture.md):
///  - the loop thread runs the libuv loop: reads input (uv_fs_read), splits and validates
///    records, restores input order, writes output (uv_fs_write), publishes every event;
///  - one tokenizer thread turns records into token ids and forms batches;
///  - model_workers inference threads (model_thread_layout(); one per core up to 8 cores)
///    each run model calls, with their own intra-op threads, and format output;
///  - with a custom Source, one source thread calls Source::read_batch().
/// Records between reading and writing are bounded by max_in_flight_records and
/// max_in_flight_bytes: when either is reached, the reader stops issuing reads.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sluice/events.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/sink.hpp>
#include <sluice/source.hpp>
#include <sluice/tokenizer.hpp>
#include <sluice/vector_format.hpp>

struct uv_loop_s;

namespace sluice {

/// What to do with a record that cannot be embedded.
enum class OnError : std::uint8_t {
  fail,  ///< stop the run at the first bad record (status "failed")
  skip,  ///< report it (DocumentFailed, dead-letter file) and go on
};

/// What to do with a text longer than the model accepts.
enum class LongInput : std::uint8_t {
  truncate,  ///< embed its first max_tokens tokens (counted: DocumentCompleted.truncated, summary)
  chunk,     ///< embed it whole, as overlapping windows: one output record per window
  fail,      ///< the record fails (text_too_long), like any bad record
};

/// How the model's cores are shared out: `workers` model calls at once, each on its own thread
/// with `threads_per_worker` intra-op threads.
struct ThreadLayout {
  int workers = 1;
  int threads_per_worker = 1;
};

/// The layout for `threads` cores (0: every core) and `workers` concurrent calls (0: choose).
/// Chosen: one single-threaded call per core up to 8 cores (independent calls need no
/// OpenMP fork/join or barrier, and a core taken by another process slows one call instead
/// of stalling all), then 8 calls of ceil(cores / 8) threads. Asked for: at most one per
/// core, the cores split evenly. Without `concurrent` (the model's concurrent_embed()): one
/// call with every thread.
ThreadLayout model_thread_layout(int threads, int workers, bool concurrent);

struct PipelineOptions {
  std::string input = "-";                 ///< JSONL path, "-" for stdin (unused with a Source)
  /// JSONL path, "-" for stdout: without set_sink(), the pipeline writes it through
  /// make_jsonl_sink(output), the same sink any program can make (unused with a Sink).
  std::string output = "-";
  std::filesystem::path model;             ///< model folder, when no model object is given
  std::string text_field = "text";         ///< the string field to embed
  std::string output_field = "embedding";  ///< the field added to each output line
  /// Prepended to every text before tokenising, e.g. "query: " or "passage: " for e5; its
  /// tokens count toward the model's maximum length. Empty: none.
  std::string prompt;
  /// A prompt of the model folder's config_sentence_transformers.json, by name ("query");
  /// refused when the folder has no such prompt. With neither `prompt` nor `prompt_name`,
  /// the folder's default_prompt_name applies, as in sentence-transformers.
  std::string prompt_name;
  /// Keep the first N dimensions (Matryoshka truncation), L2-renormalised when the model
  /// normalises its embeddings; 0: all. More than the model has is refused.
  std::uint32_t dimensions = 0;
  /// Texts longer than the model's maximum length: truncated, chunked or failed.
  ///
  /// With chunk, every record becomes one output line per window, in order:
  /// {"parent_line":L,"parent_id":ID,"chunk":i,"chunks":n,"start":s,"end":e,"embedding":[...]},
  /// where s and e are code point offsets of the window's text in the record's text field
  /// (prompt not counted) and parent_id is the record's `id_field` value when it is a string
  /// or an integer. With chunk_document, the record itself (every field byte for byte) comes
  /// first, with the mean of its windows' vectors weighted by their tokens (renormalised when
  /// the model normalises). Windows follow Hugging Face's truncation with a stride: each
  /// starts `chunk_overlap` tokens before the previous one ends. Only the JSONL output
  /// supports chunk (a Sink other than make_jsonl_sink()'s is refused).
  LongInput long_input = LongInput::truncate;
  std::size_t chunk_tokens = 0;    ///< window length, special tokens included; 0: the model's max
  std::size_t chunk_overlap = 32;  ///< tokens a window repeats from the one before
  bool chunk_document = false;
  std::string id_field = "id";
  /// How embeddings are written to JSONL output (a sink that wants_jsonl()); other sinks
  /// receive float32 values.
  /// int8 needs a normalising model (components in [-1, 1]).
  VectorFormat vector_format;
  std::size_t batch_size = 256;            ///< records per model call, at most
  /// Padded tokens per model call, at most (records x longest padded sequence); 0: no budget.
  /// With a budget, records are sorted by length inside each window so that batches pad
  /// little (padding efficiency above 0.9 on source code and on short sentences), and a
  /// model call's memory is bounded whatever the lengths.
  std::size_t max_batch_tokens = 4096;
  /// Records per window; 0: batch_size. Windows are cut at fixed record counts (or earlier,
  /// below), so batches are the same on every run, and checkpoints fall on window boundaries.
  /// A window is held in memory until it is complete (its records count against
  /// max_in_flight_*, and reading finishes the open window even past those bounds).
  std::size_t sort_window = 4096;
  /// A window also closes at the record that brings its weight (counted as
  /// max_in_flight_bytes counts records) to this many bytes: large records make short
  /// windows, decided from the input alone, so memory stays bounded and batches are the same
  /// on every run (docs/architecture.md, "Memory bound").
  std::size_t sort_window_bytes = 16u << 20;
  OnError on_error = OnError::fail;
  std::string dead_letter;                      ///< path for failed records (JSONL); empty: none
  /// With OnError::skip: the run fails (status "failed") at the record that makes the failed
  /// count exceed this, records failed before a resume included; none: no limit. That record
  /// is still reported and dead-lettered.
  std::optional<std::uint64_t> max_errors;
  std::size_t max_in_flight_records = 8192;     ///< records read but not yet written (at least a window)
  std::size_t max_in_flight_bytes = 64u << 20;  ///< their bytes (input, text and output)
  std::size_t read_chunk_bytes = 64u << 10;     ///< size of each uv_fs_read
  std::size_t max_record_bytes = 16u << 20;     ///< longer lines fail with record_too_large
  /// Cores the model uses, all its calls together; 0: every core. They are split between
  /// concurrent model calls (model_workers) and each call's intra-op threads
  /// (model_thread_layout()).
  int threads = 0;
  /// Model calls that run at once, each on its own thread with threads / model_workers
  /// intra-op threads; 0: chosen by model_thread_layout() (one per core up to 8 cores). More
  /// than one needs a model whose concurrent_embed() is true (a CPU model Model::load
  /// returns); otherwise one. Each call in flight holds its own batch's activations.
  int model_workers = 0;
  /// When the pipeline loads the model (the constructor taking options only): overrides of
  /// the folder's pooling and normalisation, and the precision of the linear layers.
  std::optional<Pooling> pooling;
  std::optional<bool> normalize;
  Precision precision = Precision::fp32;
  /// Where the model runs (ModelOptions::device): the CPU, or a CUDA device on a build with
  /// -Dcuda=enabled (docs/models.md, "Devices").
  Device device;
  double progress_interval_s = 0.5;             ///< BatchProgress period; 0 = only at the end
  /// Checkpoint file; empty: none. Written atomically after the output is durable.
  std::string checkpoint;
  std::uint64_t checkpoint_every_records = 10000;
  double checkpoint_every_s = 30;
  std::string pipeline_id;  ///< empty: a random one
  /// Other files the program writes while the run goes (pipeline-run: its event log). The run
  /// refuses to start when any two of these, the input, the output, the dead-letter file and
  /// the checkpoint are one file (check_distinct_files).
  std::vector<FileRole> other_files;
  /// Continue the run recorded in `checkpoint`: the output (and dead-letter file) is cut back
  /// to the checkpoint's offsets and reading starts at its input offset. Refused (throws
  /// sluice::Error, invalid_argument) when the input, model or options differ from the
  /// checkpoint's, saying which. Without a checkpoint file the run starts from the beginning.
  /// A finished checkpoint makes the run do nothing and succeed.
  bool resume = false;
};

/// The files a run with these options reads and writes, with their roles: the input (or
/// standard input), the output (or standard output), the dead-letter file, the checkpoint and
/// its temporary file, and `other_files`. A Pipeline refuses to start when two are one file
/// (check_distinct_files); a program can check the same before it opens files of its own.
std::vector<FileRole> run_files(const PipelineOptions& options);

/// A model's identity as stores record it (SinkRun::model_identity): its family, its files by
/// content (every configuration, tokenizer and weight file, not the folder's path), pooling,
/// normalisation and precision. Reads every file of the folder.
std::string model_identity(const ModelInfo& info);

/// The engine. Ownership: a Pipeline owns its options, the Source and Sink handed to it (they
/// live until the Pipeline is destroyed, so a sink's state can be read after run() returns),
/// its subscribers' callbacks, and a share of the Model and Tokenizer (shared_ptr: a model can
/// outlive it and serve several pipelines, one run at a time). Threads: run() runs the loop on
/// the calling thread; start() on the caller's loop thread; the loop thread calls the sink and
/// every subscriber; the Source is called on a thread of the pipeline's; stop() and abort()
/// from any thread. Not copyable or movable.
class Pipeline {
 public:
  /// Loads the model folder named in options.model. Throws sluice::Error (invalid_model,
  /// invalid_argument) before anything runs.
  explicit Pipeline(PipelineOptions options);
  /// Uses an already loaded model and tokenizer (shared: several pipelines may use one
  /// model, one at a time). The tokenizer's max length is capped to the model's.
  Pipeline(PipelineOptions options, std::shared_ptr<Model> model, std::shared_ptr<Tokenizer> tokenizer);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Reads records from `source` instead of options.input. Thread: before run()/start().
  void set_source(std::unique_ptr<Source> source);
  /// Sends embedded records to `sink` instead of writing options.output. Thread: before run().
  void set_sink(std::unique_ptr<Sink> sink);
  /// Whether a program set a sink (the JSONL output the pipeline makes itself does not count).
  bool has_sink() const noexcept;

  /// Subscribes to events. Thread: before run()/start(), or the loop thread during the run.
  SubscriptionId subscribe(EventFilter filter, EventCallback callback);
  void unsubscribe(SubscriptionId id);

  /// Runs to the end on a loop of its own, on the calling thread. Returns the summary that
  /// PipelineFinished carried. Errors during the run end it with status "failed" (they are
  /// not thrown); setup errors (output not writable, input missing) throw sluice::Error.
  RunSummary run();

  /// Runs on the caller's libuv loop; `on_finished` is called on that loop at the end, after
  /// every handle of the pipeline is closed. Throws sluice::Error for setup errors.
  void start(uv_loop_s* loop, std::function<void(const RunSummary&)> on_finished);

  /// Stops reading and drops the work not yet in the model; the model calls under way finish
  /// (their results dropped), what was already released is written, then a final checkpoint at
  /// the last window boundary before the first record not done, and the run ends with status
  /// "stopped" ("completed" if every record was already done). It takes at most one model call
  /// per worker plus the writes (docs/architecture.md). Thread: any; async-signal-safe.
  void stop() noexcept;
  /// Ends as soon as possible without draining: work in flight is dropped (its output not
  /// written). Thread: any; async-signal-safe.
  void abort() noexcept;

  const ModelInfo& model_info() const;
  const std::string& pipeline_id() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
