#include "chunk_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/model.hpp>
#include <sluice/tokenizer.hpp>

#include "code/chunker.hpp"
#include "code/ignore.hpp"
#include "code/index.hpp"
#include "code/walk.hpp"
#include "exit_codes.hpp"
#include "io/content_hash.hpp"
#include "io/output_format.hpp"

namespace pipeline_run {

namespace {

using sluice::code::kHeaderTokens;

class Out {
 public:
  explicit Out(const std::string& path) : path_(path) {
    if (path == "-") {
      file_ = stdout;
    } else {
      file_ = std::fopen(path.c_str(), "wb");
      if (file_ == nullptr) {
        throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
      }
    }
  }
  ~Out() {
    if (file_ != nullptr && file_ != stdout) std::fclose(file_);
  }
  void write(const std::string& s) {
    if (std::fwrite(s.data(), 1, s.size(), file_) != s.size()) {
      throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
    }
  }
  void close() {
    if (std::fflush(file_) != 0 || (file_ != stdout && std::fclose(file_) != 0)) {
      file_ = nullptr;
      throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
    }
    if (file_ != stdout) file_ = nullptr;
  }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

void field(std::string& out, const char* key, std::string_view value) {
  out += fmt::format(",\"{}\":", key);
  sluice::append_json_string(out, value);
}

}  // namespace

int run_chunk(const ChunkArgs& args) {
  auto tokenizer = sluice::Tokenizer::from_file(args.model / "tokenizer.json");
  std::uint32_t limit = args.chunk_tokens;
  if (limit == 0) limit = static_cast<std::uint32_t>(sluice::Model::load(args.model)->info().max_tokens);
  const auto specials = static_cast<std::uint32_t>(tokenizer->count_tokens("", true));
  if (limit <= specials + kHeaderTokens + 8) {
    throw sluice::Error(sluice::ErrorCode::invalid_argument,
                        fmt::format("--chunk-tokens {} leaves no room for code: {} special tokens and {} for the "
                                    "header line come first",
                                    limit, specials, kHeaderTokens));
  }
  const std::uint32_t budget = limit - specials - kHeaderTokens;
  auto count = [&](std::string_view s) {
    return static_cast<std::uint32_t>(tokenizer->count_tokens(s, false));
  };
  sluice::code::Chunker chunker(count, budget);
  sluice::code::WalkOptions wo;
  wo.include = args.include;
  wo.exclude = args.exclude;
  wo.max_file_bytes = args.max_file_bytes;
  // The outputs are distinct files, and never chunked themselves when they lie in the tree.
  sluice::check_distinct_files({{"output", args.output, STDOUT_FILENO}, {"files list", args.files_output}});
  std::error_code ec;
  const auto root = std::filesystem::weakly_canonical(std::filesystem::absolute(args.root), ec);
  for (const std::string& out : {args.output, args.files_output}) {
    if (out.empty() || out == "-") continue;
    const auto rel = std::filesystem::weakly_canonical(std::filesystem::absolute(out), ec).lexically_relative(root);
    if (!rel.empty() && *rel.begin() != "..") wo.exclude.push_back("/" + sluice::code::escape_glob(rel.generic_string()));
  }
  sluice::code::TreeWalker walker(args.root, wo);
  Out out(args.output);
  std::unique_ptr<Out> files;
  if (!args.files_output.empty()) files = std::make_unique<Out>(args.files_output);

  std::uint64_t walked = 0, chunked = 0, partial = 0, failed = 0, chunks = 0, tokens = 0;
  std::map<std::string, std::uint64_t> skipped;  // by the reason's first words
  std::vector<std::string> first_failures;
  std::string line;
  while (auto e = walker.next()) {
    ++walked;
    std::string status = "indexed", reason = e->reason;
    std::size_t file_chunks = 0;
    if (e->status == sluice::code::WalkEntry::Status::file) {
      std::ifstream in(args.root + "/" + e->path, std::ios::binary);
      std::ostringstream ss;
      if (in.is_open()) ss << in.rdbuf();
      if (!in.is_open() || in.bad()) {
        status = "failed";
        reason = fmt::format("cannot read: {}", std::strerror(errno));
      } else {
        const std::string text = ss.str();
        if (auto why = sluice::code::classify_content(text)) {
          status = "skipped";
          reason = *why;
        } else {
          try {
            const sluice::code::ChunkedFile f = chunker.chunk(e->path, text);
            if (f.partial) {
              status = "partial";
              reason = fmt::format("syntax error at line {}", f.first_error_line);
              ++partial;
            }
            for (std::size_t i = 0; i < f.chunks.size(); ++i) {
              const sluice::code::CodeChunk& c = f.chunks[i];
              const std::string header = sluice::code::chunk_header(e->path, c.name, count);
              sluice::ContentHash h;
              h.update(c.content);
              line.clear();
              line += "{\"id\":";
              sluice::append_json_string(line, fmt::format("{}#{}", e->path, i));
              field(line, "path", e->path);
              field(line, "language", f.language);
              field(line, "kind", c.kind);
              field(line, "name", c.name);
              line += fmt::format(",\"ordinal\":{},\"start_line\":{},\"end_line\":{},\"start_byte\":{},\"end_byte\":{},"
                                  "\"tokens\":{}",
                                  i, c.start_line, c.end_line, c.start_byte, c.end_byte, c.tokens);
              field(line, "content_hash", h.hex());
              field(line, "text", header + "\n" + c.content);
              line += "}\n";
              out.write(line);
              tokens += c.tokens;
            }
            file_chunks = f.chunks.size();
            chunks += file_chunks;
            ++chunked;
          } catch (const std::exception& ex) {
            status = "failed";
            reason = ex.what();
          }
        }
      }
    } else {
      status = e->status == sluice::code::WalkEntry::Status::skipped ? "skipped" : "failed";
    }
    if (status == "skipped") {
      ++skipped[sluice::code::skip_reason_kind(reason)];
    }
    if (status == "failed") {
      ++failed;
      if (first_failures.size() < 10) first_failures.push_back(fmt::format("{}: {}", e->path, reason));
    }
    if (files) {
      line.clear();
      line += "{\"path\":";
      sluice::append_json_string(line, e->path);
      field(line, "status", status);
      field(line, "reason", status == "indexed" ? std::string() : reason);
      line += fmt::format(",\"size\":{},\"mtime_ns\":{},\"inode\":{},\"chunks\":{}}}\n", e->size, e->mtime_ns,
                          e->inode, file_chunks);
      files->write(line);
    }
  }
  out.close();
  if (files) files->close();
  const auto& n = walker.counts();
  std::string summary = fmt::format("chunked: {} files into {} chunks ({} tokens, at most {} a chunk); {} partial",
                                    chunked, chunks, tokens, budget, partial);
  std::uint64_t skipped_total = 0;
  std::string by_reason;
  for (const auto& [kind, k] : skipped) {
    skipped_total += k;
    by_reason += fmt::format("{}{} {}", by_reason.empty() ? "" : ", ", k, kind);
  }
  summary += fmt::format(", {} skipped{}, {} failed; left out: {} ignored, {} excluded, {} vendored folders\n",
                         skipped_total, by_reason.empty() ? "" : " (" + by_reason + ")", failed, n.ignored,
                         n.excluded, n.vendored);
  for (const std::string& f : first_failures) summary += "failed: " + f + "\n";
  std::fputs(summary.c_str(), stderr);
  return failed > 0 ? kExitRecordsFailed : kExitOk;
}

}  // namespace pipeline_run
