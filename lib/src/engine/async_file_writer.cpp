#include "async_file_writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include <sluice/error.hpp>

namespace sluice {

AsyncFileWriter::AsyncFileWriter(uv_loop_t* loop, std::function<void(std::uint64_t)> on_written,
                                 std::function<void(const std::string&)> on_error)
    : loop_(loop), on_written_(std::move(on_written)), on_error_(std::move(on_error)) {
  req_.data = this;
}

AsyncFileWriter::~AsyncFileWriter() {
  if (owns_fd_ && fd_ >= 0) {
    uv_fs_t req;
    uv_fs_close(nullptr, &req, fd_, nullptr);
    uv_fs_req_cleanup(&req);
  }
}

void AsyncFileWriter::open(const std::string& path, std::uint64_t start_offset) {
  path_ = path;
  if (path == "-") {
    fd_ = STDOUT_FILENO;
    owns_fd_ = false;
  } else {
    uv_fs_t req;
    // Not truncated at open: a file another run is writing is refused before anything in it
    // is touched.
    int r = uv_fs_open(nullptr, &req, path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644, nullptr);
    uv_fs_req_cleanup(&req);
    if (r < 0) {
      throw Error(ErrorCode::io_error, fmt::format("{}: cannot open for writing: {}", path, uv_strerror(r)));
    }
    fd_ = r;
    owns_fd_ = true;
    // A regular file is locked until it is closed (or the process ends, however it ends), and
    // only then cut to its start: a device such as /dev/null is shared by nature.
    struct stat st {};
    if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        if (e == EWOULDBLOCK) {
          throw Error(ErrorCode::io_error,
                      fmt::format("{}: another run is writing this file (it holds its lock): wait for it to end, or "
                                  "give this run another file",
                                  path));
        }
        if (e != ENOLCK && e != EOPNOTSUPP && e != EINVAL) {  // file systems without locks: go on
          throw Error(ErrorCode::io_error, fmt::format("{}: cannot lock: {}", path, std::strerror(e)));
        }
      }
      r = uv_fs_ftruncate(nullptr, &req, fd_, static_cast<int64_t>(start_offset), nullptr);
      uv_fs_req_cleanup(&req);
      if (r < 0) {
        throw Error(ErrorCode::io_error,
                    fmt::format("{}: cannot truncate to {} bytes: {}", path, start_offset, uv_strerror(r)));
      }
    }
  }
  struct stat st {};
  regular_file_ = fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  // written_ counts this run's bytes; for a file of our own it is also the offset of the next.
  written_ = regular_file_ && owns_fd_ ? start_offset : 0;
}

void AsyncFileWriter::append(std::string_view bytes) {
  if (failed_ || bytes.empty()) return;
  queued_ += bytes.size();
  while (!bytes.empty()) {
    // Bytes go after those of a write in flight, never over them: a chunk is filled once, in order.
    if (chunks_.empty() || chunks_.back().size == kChunkBytes) {
      Chunk c;
      if (!spare_.empty()) {
        c.bytes = std::move(spare_.back());
        spare_.pop_back();
      } else {
        c.bytes = std::make_unique_for_overwrite<char[]>(kChunkBytes);
      }
      chunks_.push_back(std::move(c));
    }
    Chunk& tail = chunks_.back();
    const std::size_t n = std::min(bytes.size(), kChunkBytes - tail.size);
    std::memcpy(tail.bytes.get() + tail.size, bytes.data(), n);
    tail.size += n;
    bytes.remove_prefix(n);
  }
  if (!busy_) start_write();
}

void AsyncFileWriter::drop_queued() {
  chunks_.clear();
  spare_.clear();
  head_ = 0;
  queued_ = 0;
}

// Marks `bytes` from the front as written; chunks written to their end are recycled.
void AsyncFileWriter::consume(std::size_t bytes) {
  queued_ -= bytes;
  while (bytes > 0) {
    Chunk& front = chunks_.front();
    const std::size_t n = std::min(bytes, front.size - head_);
    head_ += n;
    bytes -= n;
    if (head_ < front.size) break;
    if (chunks_.size() == 1) {
      // The tail, written up to where it is filled: appends start it over.
      front.size = 0;
      head_ = 0;
      break;
    }
    if (spare_.size() < kMaxSpareChunks) spare_.push_back(std::move(front.bytes));
    chunks_.pop_front();
    head_ = 0;
  }
}

void AsyncFileWriter::start_write() {
  // One request in flight at a time: callbacks run from inside on_write/on_fsync may get here
  // while the request is being reused.
  if (busy_) return;
  if (failed_) {
    // After a failed write nothing more is written (the bytes after the failure would land at
    // the wrong offset); waiting syncs get the error and close goes ahead.
    drop_queued();
    run_barriers();
    return;
  }
  if (queued_ == 0) {
    run_barriers();
    return;
  }
  bufs_.clear();
  std::size_t skip = head_;
  for (const Chunk& c : chunks_) {
    if (bufs_.size() == kMaxChunksPerWrite) break;
    if (c.size > skip) bufs_.push_back(uv_buf_init(c.bytes.get() + skip, static_cast<unsigned>(c.size - skip)));
    skip = 0;
  }
  busy_ = true;
  // Standard output is written at the descriptor's own position, which each write moves on, as
  // any program's output: what the shell or the program wrote to it before stays, and what
  // is written after lands after ours (`{ echo a; pipeline-run ...; echo b; } > f`). A file of
  // our own is written at explicit offsets from the start.
  int64_t offset = regular_file_ && owns_fd_ ? static_cast<int64_t>(written_) : -1;
  int r = uv_fs_write(loop_, &req_, fd_, bufs_.data(), static_cast<unsigned>(bufs_.size()), offset,
                      &AsyncFileWriter::on_write);
  if (r < 0) {
    busy_ = false;
    failed_ = true;
    on_error_(fmt::format("{}: write failed: {}", path_, uv_strerror(r)));
  }
}

void AsyncFileWriter::on_write(uv_fs_t* req) {
  auto* self = static_cast<AsyncFileWriter*>(req->data);
  ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  self->busy_ = false;
  if (result < 0) {
    self->failed_ = true;
    self->on_error_(fmt::format("{}: write failed: {}", self->path_, uv_strerror(static_cast<int>(result))));
    self->run_barriers();
    return;
  }
  // A short write (disk nearly full, signal) continues from where it stopped.
  self->consume(static_cast<std::size_t>(result));
  self->written_ += static_cast<std::uint64_t>(result);
  self->on_written_(self->written_);
  self->start_write();
}

void AsyncFileWriter::sync(std::function<void(int)> done) {
  syncs_.push_back(std::move(done));
  if (!busy_) start_write();
}

void AsyncFileWriter::close(std::function<void()> done) {
  close_done_ = std::move(done);
  closing_ = true;
  if (!busy_) start_write();
}

void AsyncFileWriter::run_barriers() {
  if (busy_) return;
  if (!syncs_.empty()) {
    if (failed_ || !regular_file_) {
      auto syncs = std::move(syncs_);
      syncs_.clear();
      for (auto& s : syncs) s(failed_ ? UV_EIO : 0);
    } else {
      busy_ = true;
      uv_fs_fsync(loop_, &req_, fd_, &AsyncFileWriter::on_fsync);
      return;
    }
  }
  if (closing_) {
    closing_ = false;
    if (owns_fd_ && fd_ >= 0) {
      busy_ = true;
      uv_fs_close(loop_, &req_, fd_, &AsyncFileWriter::on_close);
      return;
    }
    if (close_done_) {
      auto done = std::move(close_done_);
      done();
    }
  }
}

void AsyncFileWriter::on_fsync(uv_fs_t* req) {
  auto* self = static_cast<AsyncFileWriter*>(req->data);
  int result = static_cast<int>(req->result);
  uv_fs_req_cleanup(req);
  self->busy_ = false;
  auto syncs = std::move(self->syncs_);
  self->syncs_.clear();
  for (auto& s : syncs) s(result);
  self->start_write();
}

void AsyncFileWriter::on_close(uv_fs_t* req) {
  auto* self = static_cast<AsyncFileWriter*>(req->data);
  uv_fs_req_cleanup(req);
  self->busy_ = false;
  self->fd_ = -1;
  if (self->close_done_) {
    auto done = std::move(self->close_done_);
    done();
  }
}

}  // namespace sluice
