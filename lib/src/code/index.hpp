#pragma once
// The code index (docs/code-index.md): a source tree into a store, through the engine like any
// other input. The tree is a Source: it walks the files (walk.hpp), reads those whose size,
// mtime or inode changed since the store last saw them, chunks them by syntax (chunker.hpp)
// and yields one record per chunk (its vector already, when the store holds one for the same
// text) followed by one record that closes the file (with an empty vector: not embedded). The
// store is a Sink: it gathers a file's chunks with their vectors and, at the record that
// closes the file, writes it whole (code_store.hpp). The two share a plan per file, in input
// order, that the source appends and the sink takes; it holds only files in flight.
// Thread: the source's calls on the pipeline's source thread, the sink's and on_event() on its
// loop; totals() from any thread.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/events.hpp>
#include <sluice/sink.hpp>
#include <sluice/source.hpp>
#include <sluice/tokenizer.hpp>

#include "code/walk.hpp"
#include "store/code_store.hpp"

namespace sluice::code {

/// The version of what the index writes for a file (chunking, hashing, the header line): a new
/// one makes the next run read every file again.
inline constexpr int kIndexFormat = 1;

/// Tokens kept for the header line in front of each chunk's content ("PATH: NAME").
inline constexpr std::uint32_t kHeaderTokens = 32;

/// The header line of a chunk: "PATH: NAME" (or "PATH"), cut from the front, between
/// characters, to fewer than `max_tokens` tokens.
std::string chunk_header(std::string_view path, std::string_view name,
                         const std::function<std::uint32_t(std::string_view)>& count,
                         std::uint32_t max_tokens = kHeaderTokens);

struct IndexOptions {
  std::string root;  ///< the folder indexed
  std::string store;  ///< sqlite:PATH
  WalkOptions walk;
  /// Most tokens of a chunk's content (its header line and the special tokens come on top).
  std::uint32_t budget = 0;
  std::string pipeline_id;
};

/// What the run did, by file.
struct IndexTotals {
  std::uint64_t files_total = 0;   ///< files the walk found (before the run, by a first walk)
  std::uint64_t bytes_total = 0;
  std::uint64_t files_done = 0;    ///< written to the store by this run
  std::uint64_t indexed = 0, partial = 0, failed = 0, unchanged = 0, removed = 0;
  std::map<std::string, std::uint64_t> skipped;  ///< by kind of reason
  std::uint64_t chunks = 0;          ///< chunks of the files written
  std::uint64_t chunks_reused = 0;   ///< of which vectors were already stored
  std::uint64_t tokens = 0;          ///< tokens of the chunks embedded
  std::vector<std::string> first_failures;  ///< "PATH: error", the first 10
  WalkCounts walk;
  bool walk_complete = false;
  bool removal_skipped = false;  ///< gone files kept: the walk had errors
  bool graph_built = false;      ///< resolved again by this run (something changed)
  store::GraphStats graph;
  std::uint64_t skipped_total() const {
    std::uint64_t n = 0;
    for (const auto& [kind, k] : skipped) n += k;
    return n;
  }
};

/// A skip reason's kind, for summaries: without its numbers and details ("binary",
/// "over --max-file-bytes", "invalid UTF-8", "symbolic link in a loop"...).
std::string skip_reason_kind(const std::string& reason);

/// The files (relative to the root) that an import of `name` in the file `source` may name,
/// most likely first, by the source's language: Python modules ("a.b", ".b") as a/b.py or
/// a/b/__init__.py from the root, src/ or the source's folder; relative JavaScript and
/// TypeScript specifiers with their usual extensions and index files; C and C++ includes beside
/// the source, from the root, include/ and src/; Java classes from the root, src/ and
/// src/main/java/; Rust paths under crate::, super:: and self::. Other imports (packages of
/// other projects, Go's) name none.
std::vector<std::string> import_candidates(std::string_view source, std::string_view name);

class CodeIndex {
 public:
  /// Opens the store (a writer, locked for this run), checks that its chunks were made by this
  /// model (`run.model_identity`, dimensions) or creates the tables, records the run, and
  /// walks the tree once for its totals. Throws sluice::Error.
  CodeIndex(IndexOptions options, std::shared_ptr<Tokenizer> tokenizer, const SinkRun& model);
  ~CodeIndex();

  std::unique_ptr<Source> make_source();
  std::unique_ptr<Sink> make_sink();
  /// DocumentFailed events: a chunk that could not be embedded fails its file with its error.
  void on_event(const PipelineEvent& event);
  static EventFilter filter();
  IndexTotals totals() const;
  std::int64_t run() const { return run_; }

  struct Plan;
  struct Shared;

 private:
  std::shared_ptr<Shared> shared_;
  std::int64_t run_ = 0;
};

}  // namespace sluice::code
