#include "checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <simdjson.h>

#include "io/jsonl_source.hpp"
#include "io/output_format.hpp"

namespace sluice {

std::string checkpoint_to_json(const CheckpointState& s) {
  std::string out = fmt::format("{{\"version\":{},\"input\":", s.version);
  append_json_string(out, s.input);
  fmt::format_to(std::back_inserter(out),
                 ",\"input_size\":{},\"input_offset\":{},\"input_line\":{},\"records_done\":{},\"output\":",
                 s.input_size, s.input_offset, s.input_line, s.records_done);
  append_json_string(out, s.output);
  fmt::format_to(std::back_inserter(out), ",\"output_offset\":{},\"dead_letter\":", s.output_offset);
  append_json_string(out, s.dead_letter);
  fmt::format_to(
      std::back_inserter(out),
      ",\"dead_letter_offset\":{},\"completed\":{},\"failed\":{},\"tokens\":{},\"truncated\":{},\"input_position\":",
      s.dead_letter_offset, s.completed, s.failed, s.tokens, s.truncated);
  append_json_string(out, s.input_position);
  out += ",\"output_hash\":";
  append_json_string(out, s.output_hash);
  out += ",\"dead_letter_hash\":";
  append_json_string(out, s.dead_letter_hash);
  out += ",\"output_position\":";
  append_json_string(out, s.output_position);
  out += ",\"fingerprint\":";
  append_json_string(out, s.fingerprint);
  fmt::format_to(std::back_inserter(out), ",\"finished\":{}}}\n", s.finished);
  return out;
}

Result<CheckpointState> checkpoint_from_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  if (auto err = parser.parse(padded).get(doc)) {
    return ErrorInfo{
        ErrorCode::invalid_argument, fmt::format("not a checkpoint: {}", simdjson::error_message(err)), {}, {}};
  }
  CheckpointState s;
  auto u64 = [&](const char* key, std::uint64_t& out) -> bool {
    return doc[key].get_uint64().get(out) == simdjson::SUCCESS;
  };
  auto str = [&](const char* key, std::string& out) -> bool {
    std::string_view v;
    if (doc[key].get_string().get(v) != simdjson::SUCCESS) return false;
    out.assign(v);
    return true;
  };
  std::uint64_t version = 0;
  if (!u64("version", version)) {
    return ErrorInfo{ErrorCode::invalid_argument, "checkpoint is missing a field or has a wrong type", {}, {}};
  }
  if (version != CheckpointState::kVersion && version != 2) {
    return ErrorInfo{ErrorCode::invalid_argument,
                     fmt::format("checkpoint version {} is not supported (this sluice writes version {}): it was "
                                 "written by another version; run without --resume to start again",
                                 version, CheckpointState::kVersion),
                     {},
                     {}};
  }
  bool ok = str("input", s.input) && u64("input_size", s.input_size) &&
            u64("input_offset", s.input_offset) && u64("input_line", s.input_line) &&
            u64("records_done", s.records_done) && str("output", s.output) && u64("output_offset", s.output_offset) &&
            str("dead_letter", s.dead_letter) && u64("dead_letter_offset", s.dead_letter_offset) &&
            u64("completed", s.completed) && u64("failed", s.failed) && u64("tokens", s.tokens) &&
            u64("truncated", s.truncated) && str("output_hash", s.output_hash) &&
            str("dead_letter_hash", s.dead_letter_hash) && str("fingerprint", s.fingerprint) &&
            doc["finished"].get_bool().get(s.finished) == simdjson::SUCCESS;
  // Added in version 2 without a new version: absent in files written before it.
  if (ok && doc["output_position"].error() != simdjson::NO_SUCH_FIELD) ok = str("output_position", s.output_position);
  if (ok && version == 2) {
    // Version 2 read only JSONL files, and kept the hash of the bytes before input_offset:
    // the JSONL source's position.
    std::string input_hash;
    ok = str("input_hash", input_hash);
    if (ok && !input_hash.empty()) s.input_position = jsonl_position(s.input_offset, s.input_line, input_hash);
  } else if (ok) {
    ok = str("input_position", s.input_position);
  }
  if (!ok) return ErrorInfo{ErrorCode::invalid_argument, "checkpoint is missing a field or has a wrong type", {}, {}};
  s.version = CheckpointState::kVersion;
  return s;
}

void check_resume_size(const std::string& path, std::uint64_t offset) {
  if (offset == 0) return;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size < offset) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{}: {} bytes, shorter than the {} the checkpoint records: it was changed since; run "
                            "without --resume to start again",
                            path, ec ? 0 : size, offset));
  }
}

static std::string errno_message(const std::string& what, const std::string& path) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

std::string write_checkpoint_file(const std::string& path, const CheckpointState& state) {
  const std::string tmp = path + ".tmp";
  const std::string text = checkpoint_to_json(state);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_message("cannot write checkpoint", tmp);
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto msg = errno_message("cannot write checkpoint", tmp);
      ::close(fd);
      return msg;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto msg = errno_message("cannot fsync checkpoint", tmp);
    ::close(fd);
    return msg;
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return errno_message("cannot rename checkpoint", tmp);
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

CheckpointState read_checkpoint_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io_error, fmt::format("{}: cannot read checkpoint: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = checkpoint_from_json(ss.str());
  if (!r) throw Error(ErrorCode::invalid_argument, fmt::format("{}: {}", path, r.error().message));
  return std::move(r).value();
}

}  // namespace sluice
