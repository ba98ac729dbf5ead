#include <sluice/validate.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include <fmt/format.h>
#include <uv.h>

#include "io/line_splitter.hpp"
#include "io/record_parser.hpp"

namespace sluice {

ValidationSummary validate_jsonl(const std::string& path, const ValidationOptions& options,
                                 const std::function<bool(const InputLocation&, const ErrorInfo&)>& on_invalid) {
  return scan_jsonl(path, options, [&](const ScannedRecord& r) { return !r.error || on_invalid(r.where, *r.error); });
}

ValidationSummary scan_jsonl(const std::string& path, const ValidationOptions& options,
                             const std::function<bool(const ScannedRecord&)>& on_record) {
  const std::string name = path == "-" ? "<stdin>" : path;
  uv_file fd = STDIN_FILENO;
  uv_fs_t req;
  if (path != "-") {
    fd = uv_fs_open(nullptr, &req, path.c_str(), O_RDONLY, 0, nullptr);
    uv_fs_req_cleanup(&req);
    if (fd < 0) throw Error(ErrorCode::io_error, fmt::format("{}: cannot open input: {}", path, uv_strerror(fd)));
  }
  // A pipe, a FIFO, /dev/stdin or a process substitution is read in sequence, as "-" is.
  struct stat st {};
  const bool seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ValidationSummary summary;
  RecordParser parser(options.text_field, options.output_field);
  parser.set_allow_empty_text(options.allow_empty_text);
  LineSplitter splitter(options.max_record_bytes);
  std::vector<char> buf(options.read_chunk_bytes == 0 ? 1u << 20 : options.read_chunk_bytes);
  bool keep_going = true;
  auto on_line = [&](const Line& line) {
    if (!keep_going) return;
    ++summary.records;
    InputLocation where{name, line.number, line.offset};
    if (line.too_long) {
      ++summary.invalid;
      const ErrorInfo error{ErrorCode::record_too_large,
                            fmt::format("record is {} bytes, more than the limit of {} (raise it with --max-record-bytes)",
                                        line.length, options.max_record_bytes),
                            {},
                            {}};
      keep_going = on_record(ScannedRecord{where, line.bytes, nullptr, 0, false, &error});
      return;
    }
    auto r = parser.parse(line.bytes);
    if (!r) {
      ++summary.invalid;
      keep_going = on_record(ScannedRecord{where, line.bytes, nullptr, 0, false, &r.error()});
      return;
    }
    const ParsedRecord& rec = r.value();
    keep_going = on_record(ScannedRecord{where, line.bytes, &rec.text, rec.prefix_length, rec.empty_object, nullptr});
  };
  std::uint64_t offset = 0;
  std::string read_error;
  while (keep_going) {
    uv_buf_t b = uv_buf_init(buf.data(), static_cast<unsigned>(buf.size()));
    int n = uv_fs_read(nullptr, &req, fd, &b, 1, seekable ? static_cast<int64_t>(offset) : -1, nullptr);
    uv_fs_req_cleanup(&req);
    if (n < 0) {
      read_error = fmt::format("{}: cannot read input: {}", name, uv_strerror(n));
      break;
    }
    if (n == 0) {
      splitter.finish(on_line);
      break;
    }
    offset += static_cast<std::uint64_t>(n);
    summary.bytes += static_cast<std::uint64_t>(n);
    splitter.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)), on_line);
    if (options.on_progress) options.on_progress(offset, seekable ? static_cast<std::uint64_t>(st.st_size) : 0);
  }
  if (path != "-") {
    uv_fs_close(nullptr, &req, fd, nullptr);
    uv_fs_req_cleanup(&req);
  }
  if (!read_error.empty()) throw Error(ErrorCode::io_error, read_error);
  return summary;
}

}  // namespace sluice
