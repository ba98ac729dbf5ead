#pragma once
// Sequential appends to one file with uv_fs_write, one write in flight at a time, so bytes
// land in the order they were appended. Thread: loop (every method and callback).

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

namespace sluice {

class AsyncFileWriter {
 public:
  /// `on_written(total)`: after each completed write, with the total bytes now written.
  /// `on_error(message)`: a write failed; the writer stops writing.
  AsyncFileWriter(uv_loop_t* loop, std::function<void(std::uint64_t)> on_written,
                  std::function<void(const std::string&)> on_error);
  ~AsyncFileWriter();

  /// Opens `path` ("-" = standard output) for writing, truncated to `start_offset` bytes.
  /// Synchronous; throws sluice::Error(io_error) naming the path.
  void open(const std::string& path, std::uint64_t start_offset = 0);

  /// Queues bytes; starts a write when none is in flight.
  void append(std::string_view bytes);
  /// Calls `done(status)` once everything appended so far is written and fsync'ed
  /// (status 0, or a negative libuv error). On a pipe or terminal, fsync is skipped.
  void sync(std::function<void(int)> done);
  /// Closes after pending writes; calls `done` when closed.
  void close(std::function<void()> done);

  bool idle() const noexcept { return !busy_ && pending_.empty(); }
  bool failed() const noexcept { return failed_; }
  std::uint64_t written() const noexcept { return written_; }
  std::uint64_t appended() const noexcept { return written_ + writing_.size() - writing_pos_ + pending_.size(); }
  const std::string& path() const noexcept { return path_; }

 private:
  static void on_write(uv_fs_t* req);
  static void on_fsync(uv_fs_t* req);
  static void on_close(uv_fs_t* req);
  void start_write();
  void run_barriers();

  uv_loop_t* loop_;
  std::function<void(std::uint64_t)> on_written_;
  std::function<void(const std::string&)> on_error_;
  std::string path_;
  uv_file fd_ = -1;
  bool owns_fd_ = false;
  bool regular_file_ = false;
  uv_fs_t req_{};
  std::string pending_;
  std::string writing_;
  std::size_t writing_pos_ = 0;
  bool busy_ = false;
  bool failed_ = false;
  std::uint64_t written_ = 0;
  std::vector<std::function<void(int)>> syncs_;
  std::function<void()> close_done_;
  bool closing_ = false;
};

}  // namespace sluice
