#include "line_splitter.hpp"

#include <algorithm>
#include <cstring>

namespace sluice {

namespace {

constexpr char kBom[3] = {'\xEF', '\xBB', '\xBF'};

bool is_blank_byte(char c) noexcept { return c == ' ' || c == '\t' || c == '\r'; }

bool is_blank(std::string_view s) noexcept {
  // A record starts with '{' almost always, so this stops at the first byte.
  for (char c : s) {
    if (!is_blank_byte(c)) return false;
  }
  return true;
}

}  // namespace

LineSplitter::LineSplitter(std::uint64_t max_line_bytes, std::uint64_t start_offset,
                           std::uint64_t first_line)
    : max_line_bytes_(max_line_bytes),
      pos_(start_offset),
      line_number_(first_line),
      line_start_(start_offset),
      bom_checked_(start_offset != 0) {}

std::uint64_t LineSplitter::bytes_fed() const noexcept { return pos_; }

std::uint64_t LineSplitter::buffered_bytes() const noexcept {
  return buf_.size() + (bom_checked_ ? 0 : bom_matched_);
}

void LineSplitter::feed(std::string_view chunk, const Callback& on_line) {
  const std::uint64_t base = pos_;
  const char* data = chunk.data();
  const std::size_t n = chunk.size();
  std::size_t i = 0;

  if (!bom_checked_) {
    const std::uint8_t matched_before = bom_matched_;
    while (i < n && bom_matched_ < 3 && data[i] == kBom[bom_matched_]) {
      ++bom_matched_;
      ++i;
    }
    if (bom_matched_ == 3) {
      bom_checked_ = true;
      line_start_ = 3;  // the stream began at 0; the BOM is not part of line 1
    } else if (i < n) {
      // Not a BOM: the bytes matched so far are the start of line 1. Those from earlier
      // chunks are no longer in view, so they start a partial line; those from this chunk
      // are read again as ordinary data.
      bom_checked_ = true;
      if (matched_before > 0) append_partial(std::string_view(kBom, matched_before));
      i = 0;
      bom_matched_ = 0;
    } else {
      pos_ = base + n;  // the chunk ended inside what may still be a BOM
      return;
    }
  }

  while (i < n) {
    const void* found = std::memchr(data + i, '\n', n - i);
    if (found == nullptr) {
      append_partial(std::string_view(data + i, n - i));
      break;
    }
    const std::size_t j = static_cast<std::size_t>(static_cast<const char*>(found) - data);
    const std::uint64_t end = base + j + 1;
    if (partial_len_ == 0) {
      // The whole line is in this chunk: report a view into it.
      std::string_view raw(data + i, j - i);
      if (!is_blank(raw)) {
        std::size_t len = raw.size();
        if (len > 0 && raw[len - 1] == '\r') --len;
        Line line;
        line.number = line_number_;
        line.offset = line_start_;
        line.length = len;
        line.end_offset = end;
        if (len > max_line_bytes_) {
          line.too_long = true;
        } else {
          line.bytes = raw.substr(0, len);
        }
        on_line(line);
      }
      ++line_number_;
      line_start_ = end;
    } else {
      append_partial(std::string_view(data + i, j - i));
      emit_partial(end, on_line);
    }
    i = j + 1;
  }
  pos_ = base + n;
}

void LineSplitter::finish(const Callback& on_line) {
  if (!bom_checked_) {
    // The stream ended inside a would-be BOM: those bytes are data.
    bom_checked_ = true;
    const std::uint8_t matched = bom_matched_;
    bom_matched_ = 0;
    if (matched > 0) append_partial(std::string_view(kBom, matched));
  }
  if (partial_len_ == 0) return;
  if (pending_cr_) {
    // A "\r" not followed by "\n" is data.
    pending_cr_ = false;
    if (!too_long_) {
      if (buf_.size() + 1 > max_line_bytes_) {
        too_long_ = true;
        buf_.clear();
      } else {
        buf_.push_back('\r');
      }
    }
  }
  emit_partial(pos_, on_line);
}

void LineSplitter::append_partial(std::string_view part) {
  if (part.empty()) return;
  if (blank_) blank_ = is_blank(part);
  partial_len_ += part.size();
  const bool ends_cr = part.back() == '\r';
  if (!too_long_) {
    // Bytes of the line so far, a trailing "\r" excluded (it may be the terminator's).
    const std::size_t keep = part.size() - (ends_cr ? 1 : 0);
    const std::uint64_t content = buf_.size() + (pending_cr_ ? 1 : 0) + keep;
    if (content > max_line_bytes_) {
      too_long_ = true;
      buf_.clear();
    } else {
      if (content > buf_.capacity()) {
        // Grow geometrically but never past the limit.
        const std::uint64_t want = std::max<std::uint64_t>(content, 2 * buf_.capacity());
        buf_.reserve(static_cast<std::size_t>(std::min(want, max_line_bytes_)));
      }
      if (pending_cr_) buf_.push_back('\r');
      buf_.append(part.data(), keep);
    }
  }
  pending_cr_ = ends_cr;
}

void LineSplitter::emit_partial(std::uint64_t end_offset, const Callback& on_line) {
  if (!blank_) {
    Line line;
    line.number = line_number_;
    line.offset = line_start_;
    // A pending "\r" here is the one before "\n": part of the terminator.
    line.length = partial_len_ - (pending_cr_ ? 1 : 0);
    line.end_offset = end_offset;
    line.too_long = too_long_;
    if (!too_long_) line.bytes = buf_;
    on_line(line);
  }
  reset_line(end_offset);
}

void LineSplitter::reset_line(std::uint64_t next_start) {
  ++line_number_;
  line_start_ = next_start;
  buf_.clear();
  partial_len_ = 0;
  pending_cr_ = false;
  too_long_ = false;
  blank_ = true;
}

}  // namespace sluice
