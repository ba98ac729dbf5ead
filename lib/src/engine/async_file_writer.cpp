#include "async_file_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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
    int flags = O_WRONLY | O_CREAT | (start_offset == 0 ? O_TRUNC : 0);
    int r = uv_fs_open(nullptr, &req, path.c_str(), flags, 0644, nullptr);
    uv_fs_req_cleanup(&req);
    if (r < 0) {
      throw Error(ErrorCode::io_error, fmt::format("{}: cannot open for writing: {}", path, uv_strerror(r)));
    }
    fd_ = r;
    owns_fd_ = true;
    if (start_offset > 0) {
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
  written_ = regular_file_ ? start_offset : 0;
}

void AsyncFileWriter::append(std::string_view bytes) {
  if (failed_ || bytes.empty()) return;
  pending_.append(bytes);
  if (!busy_) start_write();
}

void AsyncFileWriter::start_write() {
  // One request in flight at a time: callbacks run from inside on_write/on_fsync may get here
  // while the request is being reused.
  if (busy_) return;
  if (failed_) {
    // After a failed write nothing more is written (the bytes after the failure would land at
    // the wrong offset); waiting syncs get the error and close goes ahead.
    writing_.clear();
    writing_pos_ = 0;
    pending_.clear();
    run_barriers();
    return;
  }
  if (writing_pos_ >= writing_.size()) {
    writing_.clear();
    writing_pos_ = 0;
    if (pending_.empty()) {
      run_barriers();
      return;
    }
    writing_.swap(pending_);
  }
  busy_ = true;
  uv_buf_t buf = uv_buf_init(writing_.data() + writing_pos_,
                             static_cast<unsigned>(std::min<std::size_t>(writing_.size() - writing_pos_, 1u << 30)));
  int64_t offset = regular_file_ ? static_cast<int64_t>(written_) : -1;
  int r = uv_fs_write(loop_, &req_, fd_, &buf, 1, offset, &AsyncFileWriter::on_write);
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
  self->writing_pos_ += static_cast<std::size_t>(result);
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
