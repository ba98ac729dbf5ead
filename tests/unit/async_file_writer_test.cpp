#include <doctest/doctest.h>

#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <uv.h>

#include "engine/async_file_writer.hpp"

namespace fs = std::filesystem;
using sluice::AsyncFileWriter;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Bytes that differ at every position, so a chunk written twice or out of order shows.
std::string pattern(std::size_t n, std::uint32_t seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

struct TempFile {
  fs::path path = fs::temp_directory_path() / ("sluice-writer-test-" + std::to_string(getpid()));
  ~TempFile() { fs::remove(path); }
};

}  // namespace

TEST_CASE("appends land in order across chunk boundaries, and memory follows the backlog") {
  TempFile tmp;
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::uint64_t reported = 0;
  std::string errors;
  AsyncFileWriter w(&loop, [&](std::uint64_t total) { reported = total; },
                    [&](const std::string& e) { errors += e; });
  w.open(tmp.path.string());
  const std::size_t chunk = AsyncFileWriter::kChunkBytes;
  std::string expected;
  // A backlog of many chunks (appended while the first write is in flight), then pieces of
  // every awkward size: empty, one byte, a chunk less one, exactly a chunk, several chunks.
  for (std::size_t n : {chunk * 3 + 17, std::size_t{0}, std::size_t{1}, chunk - 1, chunk, chunk * 70 + 5,
                        std::size_t{4093}}) {
    std::string piece = pattern(n, static_cast<std::uint32_t>(expected.size()));
    w.append(piece);
    expected += piece;
    CHECK(w.appended() == expected.size());
  }
  CHECK_FALSE(w.idle());
  CHECK(w.chunks_held() > AsyncFileWriter::kMaxSpareChunks);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(errors.empty());
  CHECK(w.idle());
  CHECK(w.written() == expected.size());
  CHECK(reported == expected.size());
  // Written chunks were freed down to the spare list (plus the tail being filled).
  CHECK(w.chunks_held() <= AsyncFileWriter::kMaxSpareChunks + 1);

  // Appending after an idle spell continues the file and reuses chunks.
  const std::size_t held = w.chunks_held();
  std::string more = pattern(chunk * 2, 7);
  w.append(more);
  expected += more;
  CHECK(w.chunks_held() <= held + 2);
  bool synced = false;
  w.sync([&](int status) {
    CHECK(status == 0);
    synced = true;
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(synced);
  bool closed = false;
  w.close([&] { closed = true; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  CHECK(uv_loop_close(&loop) == 0);
  const std::string got = read_all(tmp.path);
  REQUIRE(got.size() == expected.size());
  CHECK(got == expected);
}

TEST_CASE("a resumed writer truncates to its offset and continues there") {
  TempFile tmp;
  {
    std::ofstream out(tmp.path, std::ios::binary);
    out << "kept|dropped after the checkpoint";
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  AsyncFileWriter w(&loop, [](std::uint64_t) {}, [](const std::string&) {});
  w.open(tmp.path.string(), 5);
  CHECK(w.written() == 5);
  std::string tail = pattern(AsyncFileWriter::kChunkBytes + 3, 11);
  w.append(tail);
  CHECK(w.appended() == 5 + tail.size());
  bool closed = false;
  w.close([&] { closed = true; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(read_all(tmp.path) == "kept|" + tail);
}

TEST_CASE("after a failed write nothing more is written and waiting syncs get the error") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  close(fds[0]);  // no reader: the write fails with EPIPE
  std::string errors;
  AsyncFileWriter w(&loop, [](std::uint64_t) {}, [&](const std::string& e) { errors += e; });
  // Standard output stands in for any descriptor: point it at the broken pipe for this test.
  const int saved = dup(STDOUT_FILENO);
  REQUIRE(dup2(fds[1], STDOUT_FILENO) >= 0);
  close(fds[1]);
  signal(SIGPIPE, SIG_IGN);
  w.open("-");
  w.append(pattern(1000, 3));
  int sync_status = 1;
  w.sync([&](int status) { sync_status = status; });
  uv_run(&loop, UV_RUN_DEFAULT);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  CHECK(w.failed());
  CHECK(errors.find("write failed") != std::string::npos);
  CHECK(sync_status < 0);
  w.append("more");
  CHECK(w.written() == 0);
  bool closed = false;
  w.close([&] { closed = true; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  CHECK(w.chunks_held() == 0);
  CHECK(uv_loop_close(&loop) == 0);
}
