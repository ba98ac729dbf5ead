#pragma once
// A record on its way from the reader to the writer. Owned by one thread at a time: built on
// the loop, moved to the tokenizer thread, then the inference thread, then back to the loop.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sluice/error.hpp>

namespace sluice {

// One window of a long text (--long-input chunk).
struct Chunk {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
  std::uint64_t char_start = 0;  // code points into the record's text
  std::uint64_t char_end = 0;
};

struct WorkItem {
  std::uint64_t index = 0;  // 0-based record index in input order
  std::uint64_t line = 0;
  std::uint64_t offset = 0;       // byte offset of the line
  std::uint64_t end_offset = 0;   // byte offset just past the line's terminator
  std::string source_position;    // Record::position: where reading continues after it
  std::string json;               // the record's bytes
  std::string text;               // the text to embed
  std::size_t prefix_length = 0;  // json[0, prefix_length) is kept before the added field
  bool empty_object = false;
  double started_at = 0;   // unix time when dispatched
  // The last record of its window. Windows (and so batches) are cut by position among valid
  // records, never by timing, so the same input always gives the same batches: embeddings
  // are bit-identical run to run and across a resume (which restarts at a window boundary).
  bool closes_window = false;
  std::size_t weight = 0;  // bytes counted against max_in_flight_bytes

  // Set by the tokenizer thread.
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
  std::uint32_t tokens = 0;        // tokens embedded (all windows' with chunks)
  std::uint32_t model_tokens = 0;  // tokens the tokenizer passed on to the model (0 for a record it failed)
  bool truncated = false;
  std::vector<Chunk> chunks;       // --long-input chunk: the windows, embedded as rows of their own
  std::string id_json;             // the id field's value, for chunk records

  // Model rows this record takes, and the longest of them.
  std::uint32_t rows() const { return chunks.empty() ? 1u : static_cast<std::uint32_t>(chunks.size()); }
  std::uint32_t longest_row() const {
    if (chunks.empty()) return tokens;
    std::size_t n = 0;
    for (const Chunk& c : chunks) n = std::max(n, c.ids.size());
    return static_cast<std::uint32_t>(n);
  }

  // Set by the inference thread.
  std::vector<float> embedding;  // kept for a custom sink
  std::string output_line;       // formatted for the JSONL sink

  std::optional<ErrorInfo> error;
};

}  // namespace sluice
