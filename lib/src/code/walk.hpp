#pragma once
// Walking a source tree for the code index: every file under a folder, in a fixed order (names
// compared bytewise, folder by folder), lazily, holding only the listings of the folders on the
// way down (memory follows the tree's depth and its largest folder, not its size).
//
// What is left out and only counted: paths ignored by .gitignore files (at every level, and
// those of the folders above the root up to its repository's top, with .git/info/exclude),
// paths not matched by an --include glob or matched by an --exclude glob, and vendored or build
// folders (node_modules, vendor, third_party, dist, build) unless an --include glob names a
// path inside them. ".git" folders are never walked.
//
// What is recorded as skipped, with its reason: symbolic links (never followed: a link out of
// the tree or around a loop cannot be walked into), anything not a regular file (a FIFO would
// block a reader), files over max_file_bytes; and, once their bytes are read
// (classify_content()), binary files, minified or generated ones, invalid UTF-8. What could not
// be read (a folder or file without permission) is recorded as failed with its error, and the
// walk goes on.
// Thread: one at a time.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "code/ignore.hpp"

namespace sluice::code {

struct WalkOptions {
  std::vector<std::string> include;  ///< gitignore-syntax globs; empty: every file
  std::vector<std::string> exclude;  ///< gitignore-syntax globs, stronger than any other rule
  std::uint64_t max_file_bytes = std::uint64_t{1} << 20;
  /// Folders left out unless an include glob names a path inside them.
  std::vector<std::string> vendored = {"node_modules", "vendor", "third_party", "dist", "build"};
};

struct WalkEntry {
  enum class Status { file, skipped, failed };
  Status status = Status::file;
  std::string path;    ///< relative to the root, "/" separators
  std::string reason;  ///< why skipped, or the error
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::int64_t ctime_ns = 0;  ///< the inode's change time (no user sets it; an edit changes it)
};

struct WalkCounts {
  std::uint64_t ignored = 0;   ///< by .gitignore or .git/info/exclude
  std::uint64_t excluded = 0;  ///< by --exclude, or not matched by --include
  std::uint64_t vendored = 0;  ///< vendored or build folders (each counted once)
  std::uint64_t errors = 0;    ///< entries recorded as failed
};

class TreeWalker {
 public:
  /// Throws sluice::Error (io_error) when `root` is not a folder that can be read.
  TreeWalker(const std::string& root, WalkOptions options);
  ~TreeWalker();
  TreeWalker(const TreeWalker&) = delete;
  TreeWalker& operator=(const TreeWalker&) = delete;

  /// The next file, skipped path or failure; nothing at the end.
  std::optional<WalkEntry> next();
  const WalkCounts& counts() const noexcept { return counts_; }
  /// The root as given, and its absolute path.
  const std::string& root() const noexcept { return root_; }

 private:
  struct Level;
  void enter(const std::string& rel);
  std::optional<bool> ignored_by_rules(const std::string& rel, bool is_dir) const;
  bool included(const std::string& rel) const;
  bool include_reaches_into(const std::string& rel_dir) const;

  std::string root_;
  WalkOptions opt_;
  IgnoreFile exclude_;
  IgnoreFile include_;
  // The ignore files above the root (its repository's top down to the root's parent; their
  // paths relative to the top), then .git/info/exclude, lowest first.
  std::string root_in_repo_;  // the root's path below its repository's top ("" when the same)
  std::vector<std::pair<std::string, IgnoreFile>> outer_;
  std::vector<std::unique_ptr<Level>> stack_;
  WalkCounts counts_;
};

/// Why a file's bytes are not indexed, or nothing when they are text to index: a NUL byte in
/// the first 8 KiB (binary), a line longer than 20,000 bytes or an average line over 300 bytes
/// in a file over 4 KiB (minified or generated), invalid UTF-8 (with the offset of the first
/// bad byte).
std::optional<std::string> classify_content(std::string_view bytes);

}  // namespace sluice::code
