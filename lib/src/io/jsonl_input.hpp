#pragma once
// The one JSONL reader: every part that reads a JSONL file reads it through this class. The
// pipeline issues its reads on the libuv loop (uv_fs_read into buffer() at read_offset(), then
// consumed()); validation, tokenize and RecordStream::from_jsonl read synchronously (read()).
// It opens the path ("-": standard input), knows whether the file is regular (readable at
// offsets, again: resume and content hashes need that) and its size, and splits what is read
// into lines (LineSplitter: one line held at most, bounded by max_record_bytes).
// Thread: whoever owns it.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/line_splitter.hpp"

namespace sluice {

class JsonlInput {
 public:
  /// Opens `path`; throws sluice::Error (io_error) "PATH: cannot open input: ...".
  JsonlInput(const std::string& path, std::size_t max_record_bytes, std::size_t chunk_bytes);
  ~JsonlInput();
  JsonlInput(const JsonlInput&) = delete;
  JsonlInput& operator=(const JsonlInput&) = delete;

  /// The path, or "<stdin>".
  const std::string& name() const noexcept { return name_; }
  int fd() const noexcept { return fd_; }
  /// A regular file: read at offsets, and again (a pipe, FIFO or terminal is read once).
  bool seekable() const noexcept { return seekable_; }
  /// The file's size when opened; 0 when not a regular file.
  std::uint64_t size() const noexcept { return size_; }
  /// Bytes read so far, from the start of the file.
  std::uint64_t offset() const noexcept { return offset_; }

  /// Reading starts at `offset`, whose line is number `lines_before + 1` (a resume).
  void seek(std::uint64_t offset, std::uint64_t lines_before);

  /// Where the next read goes, and the file offset to read at (-1: sequentially).
  std::span<char> buffer() noexcept { return buffer_; }
  std::int64_t read_offset() const noexcept { return seekable_ ? static_cast<std::int64_t>(offset_) : -1; }
  /// A read put `n` bytes in buffer(): its lines go to `on_line`. n == 0 is the end: the last
  /// line without a newline goes to `on_line`.
  void consumed(std::size_t n, const LineSplitter::Callback& on_line);

  /// Reads the next chunk synchronously and splits it; false once the end was reached.
  /// Throws sluice::Error (io_error) "NAME: cannot read input: ...".
  bool read(const LineSplitter::Callback& on_line);

 private:
  std::string name_;
  int fd_ = -1;
  bool owns_fd_ = false;
  bool seekable_ = false;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  std::size_t max_record_bytes_;
  std::vector<char> buffer_;
  LineSplitter splitter_;
};

}  // namespace sluice
