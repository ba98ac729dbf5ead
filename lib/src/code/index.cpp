#include "code/index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include <sluice/error.hpp>

#include "code/chunker.hpp"
#include "code/languages.hpp"
#include "io/output_format.hpp"
#include "io/sha256.hpp"

namespace sluice::code {

using store::CodeChunkRow;
using store::CodeFileRow;
using store::CodeFileWrite;
using store::CodeStore;

std::string chunk_header(std::string_view path, std::string_view name,
                         const std::function<std::uint32_t(std::string_view)>& count, std::uint32_t max_tokens) {
  std::string header = name.empty() ? std::string(path) : fmt::format("{}: {}", path, name);
  while (header.size() > 1 && count(header) > max_tokens - 1) {
    // Cut from the front, at a character's start.
    std::size_t cut = header.size() / 4 + 1;
    while (cut < header.size() && (static_cast<unsigned char>(header[cut]) & 0xC0) == 0x80) ++cut;
    header.erase(0, cut);
  }
  return header;
}

namespace {

// "a/b/../c" -> "a/c"; nothing when it climbs out of the root.
std::optional<std::string> normalise_path(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at <= path.size()) {
    const std::size_t slash = std::min(path.find('/', at), path.size());
    const std::string_view part = path.substr(at, slash - at);
    at = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

std::string dir_of(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

std::string join(std::string_view dir, std::string_view rel) {
  return dir.empty() ? std::string(rel) : std::string(dir) + "/" + std::string(rel);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

}  // namespace

std::string skip_reason_kind(const std::string& reason) {
  if (reason.find("over --max-file-bytes") != std::string::npos) return "over --max-file-bytes";
  if (reason.starts_with("invalid UTF-8")) return "invalid UTF-8";
  std::string kind = reason.substr(0, reason.find_first_of("(,:0123456789"));
  return kind.substr(0, kind.find_last_not_of(' ') + 1);
}

std::vector<std::string> import_candidates(std::string_view source, std::string_view name) {
  std::vector<std::string> raw;
  const Language* lang = language_for_path(source);
  const std::string_view language = lang ? lang->name : std::string_view();
  const std::string dir = dir_of(source);
  if (language == "python") {
    // "a.b" from the root, from src/, and beside the source; ".b" and "..b" from the package.
    std::size_t dots = 0;
    while (dots < name.size() && name[dots] == '.') ++dots;
    const std::string rel = replace_all(std::string(name.substr(dots)), ".", "/");
    std::vector<std::string> bases;
    if (dots > 0) {
      std::string base = dir;
      for (std::size_t i = 1; i < dots; ++i) base = dir_of(base);
      bases.push_back(base);
    } else {
      bases = {"", "src", dir};
    }
    for (const std::string& b : bases) {
      if (rel.empty()) {
        raw.push_back(join(b, "__init__.py"));
        continue;
      }
      raw.push_back(join(b, rel + ".py"));
      raw.push_back(join(b, rel + "/__init__.py"));
    }
  } else if (language == "javascript" || language == "typescript" || language == "tsx") {
    // Relative specifiers only: a bare one names a package.
    if (name.starts_with("./") || name.starts_with("../") || name.starts_with("/")) {
      const std::string base = name.starts_with("/") ? std::string(name.substr(1)) : join(dir, name);
      for (std::string_view ext : {"", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", "/index.ts", "/index.tsx",
                                   "/index.js", "/index.jsx"}) {
        raw.push_back(base + std::string(ext));
      }
    }
  } else if (language == "c" || language == "cpp") {
    raw = {join(dir, name), std::string(name), join("include", name), join("src", name)};
  } else if (language == "java") {
    const std::string rel = replace_all(std::string(name), ".", "/") + ".java";
    raw = {rel, join("src", rel), join("src/main/java", rel)};
  } else if (language == "rust") {
    // crate::a::b::C -> src/a/b.rs, src/a/b/mod.rs, src/a.rs (the item may be in its parent).
    std::string path(name);
    if (const std::size_t brace = path.find("::{"); brace != std::string::npos) path.resize(brace);
    // The importing file's module folder: its folder for mod.rs, lib.rs and main.rs, else the
    // folder named after it (src/net/http.rs is the module src/net/http).
    const std::string_view file_name = source.substr(source.rfind('/') == std::string_view::npos ? 0
                                                                                                 : source.rfind('/') + 1);
    const bool folder_module = file_name == "mod.rs" || file_name == "lib.rs" || file_name == "main.rs";
    const std::string module_dir =
        folder_module ? dir : join(dir, file_name.substr(0, file_name.size() - std::string_view(".rs").size()));
    std::string base;
    if (path.starts_with("crate::")) {
      base = "src";
      path = path.substr(7);
    } else if (path.starts_with("super::")) {
      base = dir_of(module_dir);
      path = path.substr(7);
    } else if (path.starts_with("self::")) {
      base = module_dir;
      path = path.substr(6);
    } else {
      return {};  // another crate
    }
    std::string rel = replace_all(path, "::", "/");
    while (!rel.empty()) {
      raw.push_back(join(base, rel + ".rs"));
      raw.push_back(join(base, rel + "/mod.rs"));
      const std::size_t slash = rel.rfind('/');
      if (slash == std::string::npos) break;
      rel.resize(slash);
    }
  } else if (language == "go") {
    // A package is a folder, not a file: Go imports stay unresolved.
    return {};
  }
  std::vector<std::string> out;
  for (const std::string& r : raw) {
    if (auto p = normalise_path(r); p && !p->empty() && p->size() < 4096) {
      if (std::find(out.begin(), out.end(), *p) == out.end()) out.push_back(std::move(*p));
    }
  }
  return out;
}

// One file in flight: what the source decided, and (for a file read again) its chunks, whose
// vectors the sink fills in as they arrive.
struct CodeIndex::Plan {
  std::uint64_t first_index = 0;  // the record index of its first chunk
  std::uint64_t close_index = 0;  // of the record that closes it
  CodeFileWrite write;
  std::vector<bool> reused;       // per chunk: its vector came from the store
  std::vector<bool> arrived;      // per chunk
};

struct CodeIndex::Shared {
  IndexOptions opt;
  std::shared_ptr<Tokenizer> tokenizer;
  std::unique_ptr<CodeStore> writer;   // the sink's (loop thread)
  std::unique_ptr<CodeStore> reader;   // the source's (source thread)
  std::int64_t run = 0;
  std::uint32_t dimensions = 0;
  // What rows depend on besides a file's bytes: the store keeps it ("options"); when this run's
  // differs, every file is read again, and the new value is kept once the run is complete.
  std::string options_fingerprint;
  bool reread_all = false;

  std::mutex mu;  // guards plans, totals
  std::deque<Plan> plans;
  IndexTotals totals;

  // Loop thread only: chunk record index -> why it failed (DocumentFailed).
  std::map<std::uint64_t, std::string> failures;
  // The index of each file's first record, its path and size, for file_started (guarded by mu).
  struct Start {
    std::uint64_t index;
    std::string path;
    std::uint64_t size;
  };
  std::deque<Start> starts;
  std::function<void(EventPayload)> publish;  // SinkRun::publish (loop thread)
};

namespace {

using Plan = CodeIndex::Plan;

class TreeSource final : public Source {
 public:
  explicit TreeSource(std::shared_ptr<CodeIndex::Shared> s)
      : s_(std::move(s)),
        walker_(s_->opt.root, s_->opt.walk),
        count_([t = s_->tokenizer](std::string_view text) {
          return static_cast<std::uint32_t>(t->count_tokens(text, false));
        }),
        chunker_(count_, s_->opt.budget) {}

  std::vector<Record> read_batch(std::size_t max_records) override {
    std::vector<Record> out;
    std::size_t bytes = 0;
    while (out.size() < std::max<std::size_t>(max_records, 1) && bytes < (std::size_t{1} << 20)) {
      auto e = walker_.next();
      if (!e) {
        std::lock_guard lock(s_->mu);
        s_->totals.walk = walker_.counts();
        s_->totals.walk_complete = true;
        break;
      }
      bytes += add_file(*e, out);
    }
    return out;
  }

  std::uint64_t size_bytes() const override { return s_->totals.bytes_total; }
  std::string name() const override { return s_->opt.root; }
  std::optional<std::string> resume_refusal() const override {
    return "the code index resumes by itself: run the same command again, and files the store holds unchanged "
           "are not read";
  }

 private:
  // Appends the file's records; returns the bytes of text they carry.
  std::size_t add_file(const WalkEntry& e, std::vector<Record>& out) {
    Plan plan;
    CodeFileRow& row = plan.write.file;
    row.path = e.path;
    row.size = e.size;
    row.mtime_ns = e.mtime_ns;
    row.inode = e.inode;
    const std::uint64_t start = offset_;
    offset_ += e.size;
    std::size_t bytes = 0;

    row.ctime_ns = e.ctime_ns;
    // Not read again: a file the store holds with the same size, mtime, ctime and inode, made
    // with the same options (after other options, every file is read again; stored vectors
    // are still reused).
    const auto stored = e.status != WalkEntry::Status::failed && !s_->reread_all ? s_->reader->file(e.path)
                                                                                  : std::nullopt;
    // A file the walk skips (a link, a FIFO, too large) is unchanged only if it was skipped.
    const bool same_kind = stored && (e.status == WalkEntry::Status::file || stored->status == "skipped");
    if (same_kind && stored->stat_known && stored->size == e.size && stored->mtime_ns == e.mtime_ns &&
        stored->inode == e.inode && stored->ctime_ns == e.ctime_ns) {
      plan.write.kind = CodeFileWrite::Kind::unchanged;
      row.status = stored->status;
    } else if (e.status != WalkEntry::Status::file) {
      plan.write.kind = e.status == WalkEntry::Status::skipped ? CodeFileWrite::Kind::replace : CodeFileWrite::Kind::fail;
      row.status = e.status == WalkEntry::Status::skipped ? "skipped" : "failed";
      row.reason = e.reason;
    } else if (!read_and_chunk(e, plan, out, start, bytes)) {
      return bytes;  // gone since the walk saw it: no row (a rerun removes an older one)
    }
    plan.first_index = next_index_;
    next_index_ += plan.write.chunks.size();
    plan.close_index = next_index_++;
    {
      std::lock_guard lock(s_->mu);
      s_->starts.push_back({plan.first_index, e.path, e.size});
    }
    // The record that closes the file: not embedded, in its place.
    Record close;
    close.json = "{\"file\":";
    append_json_string(close.json, e.path);
    close.json += ",\"status\":";
    append_json_string(close.json, plan.write.kind == CodeFileWrite::Kind::unchanged ? "unchanged" : row.status);
    close.json += "}";
    // Progress and the ETA follow bytes: a file's bytes are its chunks' (read_and_chunk()), or
    // this record's when it has none.
    close.line = 1;
    close.offset = plan.write.chunks.empty() ? start : offset_;
    close.end_offset = offset_;
    close.embedding.emplace();
    out.push_back(std::move(close));
    std::lock_guard lock(s_->mu);
    s_->plans.push_back(std::move(plan));
    return bytes + 64;
  }

  // False when the file is gone.
  bool read_and_chunk(const WalkEntry& e, Plan& plan, std::vector<Record>& out, std::uint64_t start,
                      std::size_t& bytes) {
    CodeFileRow& row = plan.write.file;
    std::string text;
    if (auto error = read_file(s_->opt.root + "/" + e.path, row, text)) {
      if (error->empty()) return false;
      plan.write.kind = CodeFileWrite::Kind::fail;
      row.status = "failed";
      row.reason = *error;
      return true;
    }
    row.sha256 = sha256_hex(text);
    if (auto why = classify_content(text)) {
      row.status = "skipped";
      row.reason = *why;
      return true;
    }
    ChunkedFile f;
    try {
      f = chunker_.chunk(e.path, text);
    } catch (const std::exception& ex) {
      plan.write.kind = CodeFileWrite::Kind::fail;
      row.status = "failed";
      row.reason = fmt::format("cannot chunk: {}", ex.what());
      return true;
    }
    row.language = f.language;
    row.status = f.partial ? "partial" : "indexed";
    if (f.partial) row.reason = fmt::format("syntax error at line {}", f.first_error_line);
    plan.write.chunks.reserve(f.chunks.size());
    std::string vector_bytes;
    std::uint64_t cut = 0;
    for (std::size_t i = 0; i < f.chunks.size(); ++i) {
      CodeChunk& c = f.chunks[i];
      CodeChunkRow r;
      r.id = fmt::format("{}#{}", e.path, i);
      r.ordinal = static_cast<std::uint32_t>(i);
      r.kind = std::move(c.kind);
      r.name = std::move(c.name);
      r.start_line = c.start_line;
      r.end_line = c.end_line;
      r.start_byte = c.start_byte;
      r.end_byte = c.end_byte;
      r.tokens = c.tokens;
      r.content_hash = sha256_hex(c.content);
      std::string embedded = chunk_header(e.path, r.name, count_) + "\n" + c.content;
      r.text_hash = sha256_hex(embedded);
      r.content = std::move(c.content);

      Record rec;
      rec.json = "{\"path\":";
      append_json_string(rec.json, e.path);
      rec.json += fmt::format(",\"chunk\":{},\"start_line\":{},\"end_line\":{},\"name\":", i, r.start_line, r.end_line);
      append_json_string(rec.json, r.name);
      rec.json += "}";
      // The file's bytes cut among its chunks, in order, so that together they are its size.
      rec.line = r.start_line;
      rec.offset = start + cut;
      cut = i + 1 < f.chunks.size() ? std::clamp<std::uint64_t>(f.chunks[i + 1].start_byte, cut, e.size) : e.size;
      rec.end_offset = start + cut;
      const bool reused = s_->reader->embedding_of(r.text_hash, vector_bytes) &&
                          vector_bytes.size() == std::size_t{s_->dimensions} * sizeof(float);
      if (reused) {
        std::vector<float> v(s_->dimensions);
        std::memcpy(v.data(), vector_bytes.data(), vector_bytes.size());
        rec.embedding = std::move(v);
      } else {
        bytes += embedded.size();
        rec.text = std::move(embedded);
      }
      plan.reused.push_back(reused);
      out.push_back(std::move(rec));
      plan.write.chunks.push_back(std::move(r));
    }
    plan.arrived.assign(plan.write.chunks.size(), false);
    // What each chunk names: a reference belongs to the smallest chunk around it (a method's
    // chunk, not its class's skeleton); once per chunk, kind and name.
    std::set<std::tuple<std::size_t, std::string_view, std::string_view>> seen;
    for (const CodeReference& ref : f.references) {
      std::size_t best = plan.write.chunks.size();
      for (std::size_t i = 0; i < plan.write.chunks.size(); ++i) {
        const CodeChunkRow& c = plan.write.chunks[i];
        if (c.start_byte > ref.byte || ref.byte >= c.end_byte) continue;
        if (best == plan.write.chunks.size() ||
            c.end_byte - c.start_byte < plan.write.chunks[best].end_byte - plan.write.chunks[best].start_byte) {
          best = i;
        }
      }
      if (best == plan.write.chunks.size()) continue;
      if (!seen.emplace(best, ref.kind, ref.name).second) continue;
      plan.write.edges.push_back({plan.write.chunks[best].id, ref.name, ref.kind});
    }
    return true;
  }

  // The file's bytes, and its stat from the open descriptor; an error message when it cannot
  // be read, an empty one when it is gone.
  static std::optional<std::string> read_file(const std::string& path, CodeFileRow& row, std::string& text) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) return std::string();  // gone
    if (fd < 0) return fmt::format("cannot read: {}", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      const int err = errno;
      ::close(fd);
      return fmt::format("cannot read: {}", S_ISREG(st.st_mode) ? std::strerror(err) : "not a regular file");
    }
    row.size = static_cast<std::uint64_t>(st.st_size);
    row.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    row.inode = static_cast<std::uint64_t>(st.st_ino);
    row.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    text.resize(row.size);
    std::size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return fmt::format("cannot read: {}", std::strerror(err));
      }
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    text.resize(got);  // a file that shrank meanwhile: what was there
    return std::nullopt;
  }

  std::shared_ptr<CodeIndex::Shared> s_;
  TreeWalker walker_;
  TokenCounter count_;
  Chunker chunker_;
  std::uint64_t offset_ = 0;
  std::uint64_t next_index_ = 0;
};

class IndexSink final : public Sink {
 public:
  explicit IndexSink(std::shared_ptr<CodeIndex::Shared> s) : s_(std::move(s)) {}

  std::string name() const override { return s_->writer->name(); }

  void open(const SinkRun& run) override { s_->publish = run.publish; }

  void write(std::span<const EmbeddedRecord> records) override {
    std::vector<Plan> ready;
    {
      std::lock_guard lock(s_->mu);
      for (const EmbeddedRecord& r : records) {
        if (s_->plans.empty()) throw Error(ErrorCode::internal, "a record arrived for no file");
        Plan& p = s_->plans.front();
        if (r.index < p.close_index) {
          if (r.index < p.first_index) throw Error(ErrorCode::internal, "a record arrived out of its file");
          const std::size_t i = r.index - p.first_index;
          std::vector<float> values;
          store::encode_vector(r.embedding, VectorType::float32, p.write.chunks[i].embedding, values);
          p.arrived[i] = true;
          continue;
        }
        if (r.index != p.close_index) throw Error(ErrorCode::internal, "a file's closing record is missing");
        ready.push_back(std::move(p));
        s_->plans.pop_front();
      }
    }
    if (ready.empty()) return;
    std::vector<CodeFileWrite> writes;
    writes.reserve(ready.size());
    for (Plan& p : ready) {
      // A chunk that could not be embedded fails its file: the store keeps what it had.
      for (std::size_t i = 0; i < p.arrived.size(); ++i) {
        if (p.arrived[i]) continue;
        std::string why = "a chunk could not be embedded";
        if (auto it = s_->failures.find(p.first_index + i); it != s_->failures.end()) why = it->second;
        const CodeChunkRow& c = p.write.chunks[i];
        p.write.kind = CodeFileWrite::Kind::fail;
        p.write.file.status = "failed";
        p.write.file.reason = fmt::format("lines {}-{}: {}", c.start_line, c.end_line, why);
        break;
      }
      s_->failures.erase(s_->failures.begin(), s_->failures.lower_bound(p.close_index));
      writes.push_back(std::move(p.write));
    }
    const std::vector<std::string> errors = s_->writer->commit(writes, s_->run);
    std::vector<EventPayload> events;
    {
      std::lock_guard lock(s_->mu);
      IndexTotals& t = s_->totals;
      for (std::size_t i = 0; i < writes.size(); ++i) {
        const CodeFileWrite& w = writes[i];
        const std::string& path = w.file.path;
        std::uint32_t reused = 0;
        for (bool r : ready[i].reused) reused += r ? 1 : 0;
        ++t.files_done;
        const std::string reason = errors[i].empty() ? w.file.reason : errors[i];
        const std::string status = errors[i].empty() ? w.file.status : "failed";
        if (w.kind == CodeFileWrite::Kind::unchanged) {
          ++t.unchanged;
          events.emplace_back(FileIndexed{path, "unchanged", 0, 0, {}});
        } else if (status == "failed") {
          ++t.failed;
          if (t.first_failures.size() < 10) t.first_failures.push_back(fmt::format("{}: {}", path, reason));
          events.emplace_back(FileFailed{path, reason});
        } else if (status == "skipped") {
          ++t.skipped[skip_reason_kind(reason)];
          events.emplace_back(FileSkipped{path, reason});
        } else {
          const auto n = static_cast<std::uint32_t>(w.chunks.size());
          ++(status == "partial" ? t.partial : t.indexed);
          t.chunks += n;
          t.chunks_reused += reused;
          events.emplace_back(FileIndexed{path, status, n, n - reused, reason});
        }
      }
    }
    // After the lock: a subscriber may ask for totals().
    if (s_->publish) {
      for (auto& e : events) s_->publish(std::move(e));
    }
  }

  void finish() override {
    bool complete = false, clean = false;
    {
      std::lock_guard lock(s_->mu);
      complete = s_->totals.walk_complete && s_->plans.empty();
      clean = s_->totals.walk.errors == 0;
      s_->totals.removal_skipped = complete && !clean;
    }
    if (!complete) return;  // stopped: the next run goes on
    // Every file seen with this run's options: a rerun may trust the rows' stats.
    if (s_->reread_all) s_->writer->set_state("options", s_->options_fingerprint);
    // Gone files only after a whole walk without errors: a folder that could not be read is
    // not gone.
    const std::uint64_t removed = clean ? s_->writer->remove_unseen(s_->run) : 0;
    {
      std::lock_guard lock(s_->mu);
      s_->totals.removed = removed;
    }
    // The graph, again, when a file was written or removed since it was last resolved: names
    // may now resolve elsewhere.
    if (!s_->writer->graph_stale()) return;
    const auto t0 = std::chrono::steady_clock::now();
    store::GraphStats g = s_->writer->resolve_graph(import_candidates);
    g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::lock_guard lock(s_->mu);
    s_->totals.graph = g;
    s_->totals.graph_built = true;
  }

 private:
  std::shared_ptr<CodeIndex::Shared> s_;
};

}  // namespace

CodeIndex::CodeIndex(IndexOptions options, std::shared_ptr<Tokenizer> tokenizer, const SinkRun& model)
    : shared_(std::make_shared<Shared>()) {
  Shared& s = *shared_;
  s.opt = std::move(options);
  s.tokenizer = std::move(tokenizer);
  s.dimensions = model.dimensions;
  s.writer = CodeStore::open(s.opt.store, false);
  s.writer->lock();
  store::TableMeta meta;
  meta.model = model.model;
  meta.model_identity = model.model_identity;
  meta.pooling = model.pooling;
  meta.precision = model.precision;
  meta.dimensions = model.dimensions;
  meta.type = VectorType::float32;
  meta.normalized = model.normalized;
  if (auto have = s.writer->meta()) {
    s.writer->upgrade();
    if (have->model_identity != meta.model_identity || have->dimensions != meta.dimensions) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("{} holds a code index made by another model ({}, {} dimensions); this run's is {} ({} "
                              "dimensions). Index into another store, or give --model {}",
                              redact_uri(s.opt.store), have->model, have->dimensions, meta.model, meta.dimensions,
                              have->model));
    }
  } else {
    s.writer->create(meta);
  }
  // One tree per store: another folder's run would remove every row as gone.
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(s.opt.root), ec);
  const std::string root = ec ? s.opt.root : canonical.string();
  const std::string indexed = s.writer->state("root");
  if (!indexed.empty() && indexed != root) {
    throw Error(ErrorCode::invalid_argument,
                fmt::format("{} holds the index of {}; this run indexes {}: index into another store (or, when the "
                            "folder was moved, into a new one)",
                            redact_uri(s.opt.store), indexed, root));
  }
  if (indexed.empty()) s.writer->set_state("root", root);
  s.options_fingerprint = fmt::format("format {}, chunk budget {} tokens, header {} tokens, max file bytes {}",
                                      kIndexFormat, s.opt.budget, kHeaderTokens, s.opt.walk.max_file_bytes);
  s.reread_all = s.writer->state("options") != s.options_fingerprint;
  run_ = s.run = s.writer->start_run(s.opt.pipeline_id, root);
  s.reader = CodeStore::open(s.opt.store, true);
  // The totals, for the progress line and its ETA: one walk that only lists.
  TreeWalker walker(s.opt.root, s.opt.walk);
  while (auto e = walker.next()) {
    ++s.totals.files_total;
    s.totals.bytes_total += e->size;
  }
}

CodeIndex::~CodeIndex() = default;

std::unique_ptr<Source> CodeIndex::make_source() { return std::make_unique<TreeSource>(shared_); }
std::unique_ptr<Sink> CodeIndex::make_sink() { return std::make_unique<IndexSink>(shared_); }

EventFilter CodeIndex::filter() { return EventFilter::of<DocumentStarted, DocumentFailed>(); }

void CodeIndex::on_event(const PipelineEvent& event) {
  if (const auto* d = std::get_if<DocumentStarted>(&event.payload)) {
    // A file starts with its first record (records enter in order).
    std::optional<FileStarted> started;
    {
      std::lock_guard lock(shared_->mu);
      auto& starts = shared_->starts;
      while (!starts.empty() && starts.front().index < d->index) starts.pop_front();
      if (!starts.empty() && starts.front().index == d->index) {
        started = FileStarted{std::move(starts.front().path), starts.front().size};
        starts.pop_front();
      }
    }
    if (started && shared_->publish) shared_->publish(std::move(*started));
    return;
  }
  if (const auto* f = std::get_if<DocumentFailed>(&event.payload)) {
    // The message without the "ROOT:LINE: " the run puts in front.
    std::string message = f->message;
    const std::string prefix = fmt::format("{}:{}: ", shared_->opt.root, f->location.line);
    if (message.starts_with(prefix)) message.erase(0, prefix.size());
    shared_->failures[f->index] = std::move(message);
  }
}

IndexTotals CodeIndex::totals() const {
  std::lock_guard lock(shared_->mu);
  return shared_->totals;
}

}  // namespace sluice::code
