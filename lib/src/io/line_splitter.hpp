#pragma once
// Splits a byte stream into lines without ever holding more than one line (bounded by
// max_line_bytes). Handles LF and CRLF, a final line without newline, and a UTF-8 BOM at the
// start of the stream. Thread: whoever owns it (the loop thread in the pipeline).
//
// Rules, the same however the stream is cut into chunks:
// - A line ends at "\n". One "\r" just before that "\n" belongs to the terminator; any other
//   "\r" (inside a line, or last byte of a final line without "\n") is data.
// - A UTF-8 BOM (EF BB BF) at stream offset 0 is skipped. Offsets stay true byte positions in
//   the stream, so line 1 then has offset 3. The BOM is only looked for when start_offset is 0.
// - Lines that are empty or hold only ASCII space, "\t" and "\r" are counted in line numbers
//   but not reported (also when they are longer than max_line_bytes).
// - A line whose length (terminator excluded) is above max_line_bytes is reported once, at its
//   end, with too_long = true, its true length and empty bytes. At most max_line_bytes of it
//   are ever buffered; then buffering stops.
// - A line that lies wholly inside one chunk is reported as a view into that chunk (no copy);
//   only a line spanning chunks is copied into the splitter's buffer.

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

  /// `max_line_bytes`: longest line reported with its bytes. `first_line`/`start_offset` let a
  /// reader resume mid-stream (checkpoint resume): the first byte fed is at `start_offset`
  /// and begins line `first_line`.
  explicit LineSplitter(std::uint64_t max_line_bytes, std::uint64_t start_offset = 0,
                        std::uint64_t first_line = 1);

  /// Feeds the next chunk; calls `on_line` for each complete line, in order. Lines that are
  /// empty or only ASCII whitespace are counted in line numbers but not reported.
  /// `on_line` must not call back into this splitter.
  void feed(std::string_view chunk, const Callback& on_line);
  /// End of stream: reports a last line that had no newline. Afterwards the splitter is ready
  /// for a further stream that continues at bytes_fed() with the next line number.
  void finish(const Callback& on_line);

  std::uint64_t bytes_fed() const noexcept;       ///< total bytes seen (start_offset included)
  std::uint64_t buffered_bytes() const noexcept;  ///< bytes of the unfinished line held now
  /// Number the next line will get (after finish(): one past the last line, blank ones counted).
  std::uint64_t next_line_number() const noexcept { return line_number_; }

 private:
  void append_partial(std::string_view part);
  void emit_partial(std::uint64_t end_offset, const Callback& on_line);
  void reset_line(std::uint64_t next_start);

  std::uint64_t max_line_bytes_;
  std::uint64_t pos_;             // stream offset of the next byte to be fed
  std::uint64_t line_number_;     // number of the line being read
  std::uint64_t line_start_;      // stream offset of its first byte
  // The unfinished line, when it began in an earlier chunk:
  std::string buf_;               // its bytes (a trailing "\r" held back in pending_cr_)
  std::uint64_t partial_len_ = 0; // raw bytes seen, a pending "\r" included
  bool pending_cr_ = false;       // last byte seen was "\r": terminator or data, not known yet
  bool too_long_ = false;         // over max_line_bytes: buf_ no longer kept
  bool blank_ = true;             // only space, "\t", "\r" so far
  // BOM detection at stream offset 0:
  bool bom_checked_;
  std::uint8_t bom_matched_ = 0;  // BOM bytes matched so far (in earlier chunks)
};

}  // namespace sluice
