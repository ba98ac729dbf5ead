#pragma once
// Sequential appends to one file with uv_fs_write, one write in flight at a time, so bytes
// land in the order they were appended. Thread: loop (every method and callback).
//
// Queued bytes live in chunks of one fixed size, written with one vectored write per request.
// Memory follows the bytes queued now, not the largest backlog a long run ever saw: written
// chunks go back to a small spare list or are freed, and every chunk has the same size, so the
// allocator reuses them without fragmenting.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
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

  /// Opens `path` for writing, truncated to `start_offset` bytes, and writes at explicit
  /// offsets from there. "-" is standard output, written at the descriptor's current position
  /// (what it already holds is kept, and the position moves on as with any write), never
  /// truncated; `start_offset` must be 0 for it. Synchronous; throws sluice::Error(io_error)
  /// naming the path.
  void open(const std::string& path, std::uint64_t start_offset = 0);

  /// Queues bytes; starts a write when none is in flight.
  void append(std::string_view bytes);
  /// Calls `done(status)` once everything appended so far is written and fsync'ed
  /// (status 0, or a negative libuv error). On a pipe or terminal, fsync is skipped.
  void sync(std::function<void(int)> done);
  /// Closes after pending writes; calls `done` when closed.
  void close(std::function<void()> done);

  bool idle() const noexcept { return !busy_ && queued_ == 0; }
  bool failed() const noexcept { return failed_; }
  std::uint64_t written() const noexcept { return written_; }
  std::uint64_t appended() const noexcept { return written_ + queued_; }
  const std::string& path() const noexcept { return path_; }

  static constexpr std::size_t kChunkBytes = 64u << 10;  ///< size of every buffer chunk
  static constexpr std::size_t kMaxSpareChunks = 16;     ///< written chunks kept for reuse
  static constexpr std::size_t kMaxChunksPerWrite = 64;  ///< buffers in one vectored write
  /// Chunks holding queued bytes, and spare ones: what the writer holds in memory.
  std::size_t chunks_held() const noexcept { return chunks_.size() + spare_.size(); }

 private:
  static void on_write(uv_fs_t* req);
  static void on_fsync(uv_fs_t* req);
  static void on_close(uv_fs_t* req);
  void start_write();
  void run_barriers();
  void consume(std::size_t bytes);
  void drop_queued();

  struct Chunk {
    std::unique_ptr<char[]> bytes;
    std::size_t size = 0;  // bytes filled
  };

  uv_loop_t* loop_;
  std::function<void(std::uint64_t)> on_written_;
  std::function<void(const std::string&)> on_error_;
  std::string path_;
  uv_file fd_ = -1;
  bool owns_fd_ = false;
  bool regular_file_ = false;
  uv_fs_t req_{};
  std::deque<Chunk> chunks_;                   // queued bytes, in order
  std::size_t head_ = 0;                       // bytes of chunks_.front() already written
  std::uint64_t queued_ = 0;                   // bytes appended and not yet written
  std::vector<std::unique_ptr<char[]>> spare_;  // written chunks kept for reuse
  std::vector<uv_buf_t> bufs_;                 // the request's buffers (libuv copies them)
  bool busy_ = false;
  bool failed_ = false;
  std::uint64_t written_ = 0;
  std::vector<std::function<void(int)>> syncs_;
  std::function<void()> close_done_;
  bool closing_ = false;
};

}  // namespace sluice
