#include "io/jsonl_input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <uv.h>

#include <sluice/error.hpp>

namespace sluice {

JsonlInput::JsonlInput(const std::string& path, std::size_t max_record_bytes, std::size_t chunk_bytes)
    : name_(path == "-" ? "<stdin>" : path),
      max_record_bytes_(max_record_bytes),
      buffer_(chunk_bytes == 0 ? std::size_t{1} << 16 : chunk_bytes),
      splitter_(max_record_bytes) {
  if (path == "-") {
    fd_ = STDIN_FILENO;
  } else {
    uv_fs_t req;
    const int r = uv_fs_open(nullptr, &req, path.c_str(), O_RDONLY | O_CLOEXEC, 0, nullptr);
    uv_fs_req_cleanup(&req);
    if (r < 0) throw Error(ErrorCode::io_error, fmt::format("{}: cannot open input: {}", path, uv_strerror(r)));
    fd_ = r;
    owns_fd_ = true;
  }
  struct stat st {};
  if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
    seekable_ = true;
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
}

JsonlInput::~JsonlInput() {
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

void JsonlInput::seek(std::uint64_t offset, std::uint64_t lines_before) {
  offset_ = offset;
  splitter_ = LineSplitter(max_record_bytes_, offset, lines_before + 1);
}

void JsonlInput::consumed(std::size_t n, const LineSplitter::Callback& on_line) {
  if (n == 0) {
    splitter_.finish(on_line);
    return;
  }
  offset_ += n;
  splitter_.feed(std::string_view(buffer_.data(), n), on_line);
}

bool JsonlInput::read(const LineSplitter::Callback& on_line) {
  int n;
  do {
    uv_fs_t req;
    uv_buf_t b = uv_buf_init(buffer_.data(), static_cast<unsigned>(buffer_.size()));
    n = uv_fs_read(nullptr, &req, fd_, &b, 1, read_offset(), nullptr);
    uv_fs_req_cleanup(&req);
  } while (n == UV_EINTR);
  if (n < 0) throw Error(ErrorCode::io_error, fmt::format("{}: cannot read input: {}", name_, uv_strerror(n)));
  consumed(static_cast<std::size_t>(n), on_line);
  return n > 0;
}

}  // namespace sluice
