#pragma once
// Splits a byte stream into lines without ever holding more than one line (bounded by
// max_line_bytes). Handles LF and CRLF, a final line without newline, and a UTF-8 BOM at the
// start of the stream. Thread: whoever owns it (the loop thread in the pipeline).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sluice {

struct Line {
  /// The line's bytes without "\n" or "\r\n". Valid only during the callback. Empty when
  /// too_long (the bytes were not kept).
  std::string_view bytes;
  std::uint64_t number = 0;        ///< 1-based line number
  std::uint64_t offset = 0;        ///< byte offset of the line's first byte in the stream
  std::uint64_t length = 0;        ///< bytes of the line, terminator excluded, even when too_long
  bool too_long = false;           ///< longer than max_line_bytes: skipped, not buffered
  /// Offset just past this line's terminator: where reading resumes after this line.
  std::uint64_t end_offset = 0;
};

class LineSplitter {
 public:
  using Callback = std::function<void(const Line&)>;

  /// `first_line`/`start_offset` let a reader resume mid-stream (checkpoint resume).
  explicit LineSplitter(std::uint64_t max_line_bytes, std::uint64_t start_offset = 0,
                        std::uint64_t first_line = 1);

  /// Feeds the next chunk; calls `on_line` for each complete line, in order. Lines that are
  /// empty or only ASCII whitespace are counted in line numbers but not reported.
  void feed(std::string_view chunk, const Callback& on_line);
  /// End of stream: reports a last line that had no newline.
  void finish(const Callback& on_line);

  std::uint64_t bytes_fed() const noexcept;       ///< total bytes seen (start_offset included)
  std::uint64_t buffered_bytes() const noexcept;  ///< bytes of the unfinished line held now
};

}  // namespace sluice
