#pragma once
/// Streaming validation of a JSONL input: the check `pipeline-run validate` runs, and the pass
/// `pipeline-run embed` makes before loading the model. Memory stays flat: one line at a time.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <sluice/error.hpp>

namespace sluice {

struct ValidationOptions {
  std::string text_field = "text";
  std::string output_field = "embedding";
  std::size_t max_record_bytes = 16u << 20;
  std::size_t read_chunk_bytes = 1u << 20;
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

}  // namespace sluice
