// The JSONL output as a Sink (sluice/sink.hpp, make_jsonl_sink()): lines the pipeline formats
// on its model threads, appended with AsyncFileWriter on the pipeline's loop.

#include <sluice/sink.hpp>

#include <charconv>

#include <fmt/format.h>

#include "async_file_writer.hpp"
#include "checkpoint.hpp"

namespace sluice {

namespace {

class JsonlFileSink final : public Sink {
 public:
  explicit JsonlFileSink(std::string path) : path_(std::move(path)) {}

  std::string name() const override { return path_; }
  bool wants_jsonl() const override { return true; }
  std::optional<std::string> file() const override {
    if (path_ == "-") return std::nullopt;  // standard output is written once
    return path_;
  }

  void open(const SinkRun& run) override {
    std::uint64_t start = 0;
    if (run.resume && !run.position.empty()) {
      auto [end, ec] = std::from_chars(run.position.data(), run.position.data() + run.position.size(), start);
      if (ec != std::errc() || end != run.position.data() + run.position.size()) {
        throw Error(ErrorCode::invalid_argument,
                    fmt::format("{}: the checkpoint's output position \"{}\" is not a byte offset", path_, run.position));
      }
    }
    // A resumed run cuts the file back to the checkpoint's offset: bytes after it belong to
    // records that are done again.
    check_resume_size(path_, start);
    out_ = std::make_unique<AsyncFileWriter>(
        run.loop, [](std::uint64_t) {}, [this](const std::string& message) { error_ = message; });
    out_->open(path_, start);
    start_ = start;
  }

  void write(std::span<const EmbeddedRecord> records) override {
    if (!error_.empty()) throw Error(ErrorCode::io_error, error_);
    for (const EmbeddedRecord& r : records) out_->append(r.jsonl);
  }

  // Standard output cannot go back: no position, so no resume.
  std::string position() const override {
    if (path_ == "-") return {};
    return std::to_string(out_ ? out_->appended() : start_);
  }

  void commit(const std::string&, std::function<void(CommitResult)> done) override {
    out_->sync([this, done = std::move(done)](int status) {
      CommitResult result;
      if (!error_.empty()) {
        result.error = error_;
      } else if (status < 0) {
        result.error = fmt::format("{}: cannot sync output: {}", path_, uv_strerror(status));
      }
      done(std::move(result));
    });
  }

  void finish() override {
    if (out_) out_->close([] {});
  }

 private:
  std::string path_;
  std::unique_ptr<AsyncFileWriter> out_;
  std::uint64_t start_ = 0;
  std::string error_;  // a write that failed: the next write() or commit() says it
};

}  // namespace

std::unique_ptr<Sink> make_jsonl_sink(const std::string& path) { return std::make_unique<JsonlFileSink>(path); }

}  // namespace sluice
