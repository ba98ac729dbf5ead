#include "code/walk.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include <sluice/error.hpp>

#include "io/output_format.hpp"

namespace sluice::code {

namespace fs = std::filesystem;

struct TreeWalker::Level {
  std::string rel;  // the folder, relative to the root ("" for the root)
  std::vector<std::string> names;
  std::size_t next = 0;
  std::optional<IgnoreFile> gitignore;
};

namespace {

// An ignore file: a regular file (git does not follow a symbolic link there; a FIFO would
// block) of at most 1 MiB.
std::optional<std::string> read_small_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

std::string_view relative_to(std::string_view path, std::string_view base) {
  return base.empty() ? path : path.substr(base.size() + 1);
}

}  // namespace

TreeWalker::TreeWalker(const std::string& root, WalkOptions options)
    : root_(root), opt_(std::move(options)) {
  exclude_ = IgnoreFile::from_patterns(opt_.exclude);
  include_ = IgnoreFile::from_patterns(opt_.include);
  struct stat st {};
  if (::stat(root_.c_str(), &st) != 0) {
    throw Error(ErrorCode::io_error, fmt::format("{}: cannot read the tree: {}", root_, std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) throw Error(ErrorCode::io_error, fmt::format("{}: not a folder", root_));
  // The repository the root is in: the ignore files of the folders above it apply too.
  std::error_code ec;
  const fs::path abs = fs::weakly_canonical(fs::absolute(root_, ec), ec);
  for (fs::path top = abs;; top = top.parent_path()) {
    if (fs::exists(top / ".git", ec)) {
      const fs::path rel = abs.lexically_relative(top);
      root_in_repo_ = rel == "." ? std::string() : rel.generic_string();
      if (auto text = read_small_file((top / ".git" / "info" / "exclude").string())) {
        outer_.emplace_back(std::string(), IgnoreFile::parse(*text));
      }
      // From the top down to the root's parent (the root's own is read with its listing).
      std::string base;
      fs::path dir = top;
      for (const fs::path& part : rel == "." ? fs::path() : rel) {
        if (auto text = read_small_file((dir / ".gitignore").string())) {
          outer_.emplace_back(base, IgnoreFile::parse(*text));
        }
        dir /= part;
        base = join(base, part.generic_string());
      }
      break;
    }
    if (top == top.parent_path()) break;
  }
  enter("");
}

TreeWalker::~TreeWalker() = default;

void TreeWalker::enter(const std::string& rel) {
  auto level = std::make_unique<Level>();
  level->rel = rel;
  const std::string dir = rel.empty() ? root_ : root_ + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;  // the caller checked it opens; raced away since: nothing in it
  while (dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    level->names.emplace_back(name);
  }
  ::closedir(d);
  std::sort(level->names.begin(), level->names.end());
  if (std::binary_search(level->names.begin(), level->names.end(), ".gitignore")) {
    if (auto text = read_small_file(dir + "/.gitignore")) level->gitignore = IgnoreFile::parse(*text);
  }
  stack_.push_back(std::move(level));
}

std::optional<bool> TreeWalker::ignored_by_rules(const std::string& rel, bool is_dir) const {
  for (auto it = stack_.rbegin(); it != stack_.rend(); ++it) {
    const Level& l = **it;
    if (!l.gitignore) continue;
    if (auto m = l.gitignore->match(relative_to(rel, l.rel), is_dir)) return m;
  }
  const std::string in_repo = join(root_in_repo_, rel);
  for (auto it = outer_.rbegin(); it != outer_.rend(); ++it) {
    if (auto m = it->second.match(relative_to(in_repo, it->first), is_dir)) return m;
  }
  return std::nullopt;
}

bool TreeWalker::included(const std::string& rel) const {
  if (include_.empty()) return true;
  if (include_.match(rel, false).value_or(false)) return true;
  // A folder pattern ("src/", "src") includes what is inside.
  for (std::size_t slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1)) {
    if (include_.match(std::string_view(rel).substr(0, slash), true).value_or(false)) return true;
  }
  return false;
}

bool TreeWalker::include_reaches_into(const std::string& rel_dir) const {
  for (const std::string& p : opt_.include) {
    std::string_view pat = p;
    if (!pat.empty() && pat.front() == '/') pat.remove_prefix(1);
    if (pat.starts_with(rel_dir + "/") || wildmatch(pat, rel_dir)) return true;
  }
  return false;
}

std::optional<WalkEntry> TreeWalker::next() {
  while (!stack_.empty()) {
    Level& level = *stack_.back();
    if (level.next == level.names.size()) {
      stack_.pop_back();
      continue;
    }
    const std::string name = level.names[level.next++];
    const std::string rel = join(level.rel, name);
    const std::string full = root_ + "/" + rel;
    WalkEntry entry;
    entry.path = rel;
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // removed while walking
      entry.status = WalkEntry::Status::failed;
      entry.reason = fmt::format("cannot read its attributes: {}", std::strerror(errno));
      ++counts_.errors;
      return entry;
    }
    entry.size = static_cast<std::uint64_t>(st.st_size);
    entry.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    entry.inode = static_cast<std::uint64_t>(st.st_ino);
    entry.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    const bool is_dir = S_ISDIR(st.st_mode);
    if (name == ".git") continue;  // the repository itself (a folder, or a worktree's file)
    if (exclude_.match(rel, is_dir).value_or(false)) {
      ++counts_.excluded;
      continue;
    }
    if (ignored_by_rules(rel, is_dir).value_or(false)) {
      ++counts_.ignored;
      continue;
    }
    if (is_dir) {
      if (std::find(opt_.vendored.begin(), opt_.vendored.end(), name) != opt_.vendored.end() &&
          !include_reaches_into(rel)) {
        ++counts_.vendored;
        continue;
      }
      if (::access(full.c_str(), R_OK | X_OK) != 0) {
        entry.status = WalkEntry::Status::failed;
        entry.reason = fmt::format("cannot read the folder: {}", std::strerror(errno));
        ++counts_.errors;
        return entry;
      }
      enter(rel);
      continue;
    }
    if (!included(rel)) {
      ++counts_.excluded;
      continue;
    }
    entry.status = WalkEntry::Status::skipped;
    if (S_ISLNK(st.st_mode)) {
      char* target = ::realpath(full.c_str(), nullptr);
      if (target == nullptr) {
        entry.reason = errno == ELOOP ? "symbolic link in a loop (not followed)"
                                      : fmt::format("symbolic link that leads nowhere ({})", std::strerror(errno));
      } else {
        char* top = ::realpath(root_.c_str(), nullptr);
        const std::string_view t = target, r = top ? top : "";
        const bool inside = !r.empty() && t.starts_with(r) && (t.size() == r.size() || t[r.size()] == '/');
        entry.reason = inside ? "symbolic link (not followed: its target is walked where it lies)"
                              : "symbolic link out of the tree (not followed)";
        std::free(top);
        std::free(target);
      }
      return entry;
    }
    if (!S_ISREG(st.st_mode)) {
      entry.reason = "not a regular file (a FIFO, socket or device)";
      return entry;
    }
    if (entry.size > opt_.max_file_bytes) {
      entry.reason = fmt::format("{} bytes, over --max-file-bytes {}", entry.size, opt_.max_file_bytes);
      return entry;
    }
    entry.status = WalkEntry::Status::file;
    return entry;
  }
  return std::nullopt;
}

std::optional<std::string> classify_content(std::string_view bytes) {
  const std::string_view head = bytes.substr(0, 8192);
  if (head.find('\0') != std::string_view::npos) return std::string("binary (a NUL byte in the first 8 KiB)");
  std::size_t longest = 0, lines = 0, start = 0;
  while (start < bytes.size()) {
    std::size_t nl = bytes.find('\n', start);
    if (nl == std::string_view::npos) nl = bytes.size();
    longest = std::max(longest, nl - start);
    ++lines;
    start = nl + 1;
  }
  // A long line alone is not enough (a data table, a long literal: the chunker splits it).
  constexpr std::size_t kLongestLine = 20000, kMeanLine = 300, kMeanFrom = 4096;
  if (longest > kLongestLine || (bytes.size() > kMeanFrom && lines > 0 && bytes.size() / lines > kMeanLine)) {
    return fmt::format("minified or generated (a line of {} bytes, {} bytes a line on average)", longest,
                       lines ? bytes.size() / lines : 0);
  }
  // UTF-8: the shortest form, no surrogates, nothing past U+10FFFF.
  if (const std::size_t bad = find_invalid_utf8(bytes); bad < bytes.size()) {
    return fmt::format("invalid UTF-8 at byte {}", bad);
  }
  return std::nullopt;
}

}  // namespace sluice::code
