#pragma once
/// Records as they flow through the engine: what a source yields and what a sink receives.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sluice/error.hpp>

namespace sluice {

/// One input record: a JSON object's bytes and where it came from. A plain value, owned by
/// whoever holds it: a Source returns records by value. Thread: any (no shared state).
struct Record {
  std::string json;  ///< the JSON object, exactly as read (no line terminator)
  /// The text to embed. When absent, the pipeline takes the text field from `json`.
  std::optional<std::string> text;
  std::uint64_t line = 0;    ///< 1-based line (or item number) in its source
  std::uint64_t offset = 0;  ///< byte offset of the record in its source, when it has one
  /// Byte offset just past the record (its terminator included), when it has one: with
  /// Source::size_bytes(), the progress and ETA follow bytes. 0: offset + json.size().
  std::uint64_t end_offset = 0;
  /// Where reading continues after this record (Source::resume()); opaque to the pipeline.
  /// Empty: the source cannot resume here.
  std::string position;
  /// Set by a source that could not read this record: it becomes a bad record with this
  /// error (DocumentFailed, the dead-letter file with `json` as its record, --on-error).
  std::optional<ErrorInfo> error;
  /// Set by a source that knows the record's vector already (one a store holds for the same
  /// content and model), or that wants a record kept in order without one (empty): the
  /// pipeline does not embed it and hands it to the sink as it is, in its place, counted as
  /// completed with no tokens. `text` is not needed. Only for sinks that take vectors (not
  /// Sink::wants_jsonl()): with another, the record fails (invalid_argument).
  std::optional<std::vector<float>> embedding;
};

/// The string field `name` of the record's top-level JSON object, unescaped; nullopt when the
/// record is not a valid JSON object or the field is missing or not a string. Thread: any.
std::optional<std::string> string_field(const Record& record, std::string_view name);

/// One embedded record, in input order. A Sink sees them in a span that is valid only during
/// the write() call: copy what must outlive it. Thread: any (a plain value).
struct EmbeddedRecord {
  std::uint64_t index = 0;  ///< 0-based record index in input order
  std::uint64_t line = 0;
  std::string json;  ///< the input record's bytes (empty for a sink that wants_jsonl())
  std::vector<float> embedding;  ///< float32 (empty for a sink that wants_jsonl())
  /// For a sink that wants_jsonl(): the output line(s) the pipeline formatted on its model
  /// threads, "\n" included: the record up to its closing brace with the output field added in
  /// the options' vector format, or with --long-input chunk one line per window.
  std::string jsonl;
  std::uint32_t tokens = 0;  ///< tokens fed to the model, special tokens included
  bool truncated = false;
};

}  // namespace sluice
