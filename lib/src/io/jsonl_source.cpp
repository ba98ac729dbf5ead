// The JSONL reader as a Source: JsonlInput read synchronously on the pipeline's source thread,
// each record's position carrying the hash of every byte before it.

#include "io/jsonl_source.hpp"

#include <unistd.h>

#include <charconv>
#include <deque>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/source.hpp>

#include "io/content_hash.hpp"
#include "io/jsonl_input.hpp"

namespace sluice {

std::string jsonl_position(std::uint64_t offset, std::uint64_t line, const std::string& hash_hex) {
  return fmt::format("{} {} {}", offset, line, hash_hex);
}

namespace {

class JsonlSource final : public Source {
 public:
  JsonlSource(const std::string& path, const JsonlSourceOptions& o)
      : stdin_(path == "-"),
        max_record_bytes_(o.max_record_bytes),
        chunk_bytes_(o.read_chunk_bytes == 0 ? std::size_t{1} << 16 : o.read_chunk_bytes),
        input_(path, o.max_record_bytes, chunk_bytes_) {}

  std::vector<Record> read_batch(std::size_t max_records) override {
    // Up to max_records, and about one chunk of bytes (a line longer than a chunk is one
    // record), so that what the pipeline holds beyond its in-flight bounds stays small.
    std::vector<Record> out;
    std::uint64_t bytes = 0;
    // An empty batch is the end: chunks of blank lines or of one long line are read on.
    while (!ended_ && out.size() < max_records && (out.empty() || bytes < chunk_bytes_)) {
      const std::uint64_t before = input_.offset();
      read_chunk(out);
      bytes += input_.offset() - before;
    }
    return out;
  }

  std::uint64_t size_bytes() const override { return input_.size(); }
  std::string name() const override { return input_.name(); }
  std::optional<std::string> file() const override {
    if (stdin_) return std::nullopt;
    return input_.name();
  }

  std::optional<std::string> resume_refusal() const override {
    if (stdin_) return "standard input is read once";
    if (!input_.seekable()) return "it is not a regular file (a pipe or device is read once)";
    return std::nullopt;
  }

  void resume(const std::string& position) override {
    std::uint64_t offset = 0, line = 0;
    std::string want;
    if (!parse(position, offset, line, want)) {
      throw Error(ErrorCode::invalid_argument, fmt::format("its input position \"{}\" is not one of a JSONL file "
                                                           "(offset, line, hash)", position));
    }
    auto refuse = [](std::string what) { throw Error(ErrorCode::invalid_argument, std::move(what)); };
    const std::string& name = input_.name();
    if (offset > input_.size()) {
      refuse(fmt::format("it records input offset {}, past the end of {} ({} bytes)", offset, name, input_.size()));
    }
    hash_ = ContentHash{};
    if (std::string err = hash_fd_to(input_.fd(), name, offset, hash_); !err.empty()) refuse(err);
    if (hash_.hex() != want) {
      refuse(fmt::format("the first {} bytes of {} are not those the checkpoint's run read: the input was changed "
                         "before the point the run had reached (changes after it are fine)",
                         offset, name));
    }
    // A last line without a newline ends at the end of the file and counts as a line.
    const bool ends_unterminated = offset == input_.size() && offset > 0 && hash_.last_byte() != '\n';
    if (hash_.newlines() != line && !(ends_unterminated && hash_.newlines() + 1 == line)) {
      refuse(fmt::format("it records {} lines before input offset {}, and {} has {} there", line, offset, name,
                         hash_.newlines()));
    }
    if (offset > 0 && hash_.last_byte() != '\n' && !ends_unterminated) {
      refuse(fmt::format("input offset {} is not at the end of a line of {}", offset, name));
    }
    input_.seek(offset, line);
  }

 private:
  static bool parse(const std::string& s, std::uint64_t& offset, std::uint64_t& line, std::string& hash) {
    const char* p = s.data();
    const char* end = s.data() + s.size();
    auto number = [&](std::uint64_t& v) {
      auto r = std::from_chars(p, end, v);
      if (r.ec != std::errc{} || r.ptr == end || *r.ptr != ' ') return false;
      p = r.ptr + 1;
      return true;
    };
    if (!number(offset) || !number(line)) return false;
    hash.assign(p, end);
    return hash.size() == 16 && hash.find_first_not_of("0123456789abcdef") == std::string::npos;
  }

  // Hashes the bytes of the chunk in the buffer (read at `chunk_start`) up to `to`.
  void hash_to(std::uint64_t to, std::uint64_t chunk_start) {
    const std::uint64_t from = hash_.length();
    if (to <= from) return;
    const char* data = input_.buffer().data();
    hash_.update(std::string_view(data + (from - chunk_start), static_cast<std::size_t>(to - from)));
  }

  void read_chunk(std::vector<Record>& out) {
    const std::uint64_t chunk_start = input_.offset();
    const bool more = input_.read([&](const Line& l) {
      hash_to(l.end_offset, chunk_start);
      Record r;
      r.line = l.number;
      r.offset = l.offset;
      r.end_offset = l.end_offset;
      if (l.too_long) {
        r.error = ErrorInfo{ErrorCode::record_too_large,
                            fmt::format("record is {} bytes, more than the limit of {} (raise it with "
                                        "--max-record-bytes)",
                                        l.length, max_record_bytes_),
                            {},
                            {}};
      } else {
        r.json.assign(l.bytes);
      }
      r.position = jsonl_position(l.end_offset, l.number, hash_.hex());
      out.push_back(std::move(r));
    });
    hash_to(input_.offset(), chunk_start);
    if (!more) ended_ = true;
  }

  bool stdin_;
  std::size_t max_record_bytes_;
  std::size_t chunk_bytes_;
  JsonlInput input_;
  ContentHash hash_;  // of the bytes before the last record's end
  bool ended_ = false;
};

}  // namespace

std::unique_ptr<Source> make_jsonl_source(const std::string& path, JsonlSourceOptions options) {
  return std::make_unique<JsonlSource>(path, options);
}

}  // namespace sluice
