#pragma once
/// Streaming validation of a JSONL input: the check `pipeline-run validate` runs, and the pass
/// `pipeline-run embed` makes before loading the model. Memory stays flat: one line at a time.
/// Thread: the caller's (the functions read the file with blocking reads and call the callback
/// on the same thread); any number may run at once on different files.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <sluice/error.hpp>

namespace sluice {

struct ValidationOptions {
  std::string text_field = "text";
  std::string output_field = "embedding";
  std::size_t max_record_bytes = 16u << 20;
  std::size_t read_chunk_bytes = 1u << 20;
  bool allow_empty_text = false;  ///< empty or whitespace-only texts are good records (tokenize)
  /// Called after each chunk read with the bytes read so far and the input's size (0 when
  /// unknown: a pipe). On the calling thread; may be empty.
  std::function<void(std::uint64_t bytes_read, std::uint64_t bytes_total)> on_progress;
};

struct ValidationSummary {
  std::uint64_t records = 0;  ///< non-blank lines
  std::uint64_t invalid = 0;  ///< lines that would fail
  std::uint64_t bytes = 0;    ///< bytes read
};

/// Checks every line of `path` ("-" = stdin). For each bad line, calls
/// `on_invalid(location, error)`; return false from it to stop early. Throws sluice::Error
/// (io_error) when the input cannot be opened or read.
ValidationSummary validate_jsonl(const std::string& path, const ValidationOptions& options,
                                 const std::function<bool(const InputLocation&, const ErrorInfo&)>& on_invalid);

/// One line of a JSONL input as scan_jsonl() hands it over.
struct ScannedRecord {
  InputLocation where;
  std::string_view line;         ///< the line's bytes, without its terminator
  const std::string* text;       ///< the text field, unescaped; null when the record is bad
  std::size_t prefix_length;     ///< line[0, prefix_length) comes before the closing brace
  bool empty_object;             ///< the object has no members
  const ErrorInfo* error;        ///< why the record is bad; null when it is good
};

/// Reads `path` ("-" = stdin) once, one line at a time, and calls `on_record` for every
/// non-blank line, good or bad, in order; return false from it to stop. The pointers in the
/// ScannedRecord live until the callback returns. Throws sluice::Error (io_error) when the
/// input cannot be opened or read. validate_jsonl() is this with a callback that counts.
ValidationSummary scan_jsonl(const std::string& path, const ValidationOptions& options,
                             const std::function<bool(const ScannedRecord&)>& on_record);

}  // namespace sluice
