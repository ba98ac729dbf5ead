#pragma once
// Ignore rules as git has them (gitignore(5)): the patterns of one .gitignore (or
// .git/info/exclude, or --exclude globs), matched against paths relative to the folder the
// file is in. The walker keeps one IgnoreFile per folder on its way down; the deepest file
// that matches decides, and within a file the last matching pattern.
//
// Rules: blank lines and lines starting with "#" are nothing ("\#" is a "#"); trailing spaces
// are cut unless escaped with "\"; "!" negates ("\!" is a "!"); a trailing "/" matches only
// folders; a pattern with a "/" at its start or in its middle is anchored to the file's
// folder, one without matches a name at any depth below it; "*", "?" and "[...]" (ranges,
// "!" or "^" to negate, "\" escapes) never match "/"; "**/" at the start matches any folders
// in front, "/**" at the end everything inside, "/**/" in the middle zero or more folders.
// Thread: any (a value; matching does not change it).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::code {

/// Whether `text` matches the git wildmatch `pattern` (with "/" matched only by "/" and by
/// "**" where git allows it).
bool wildmatch(std::string_view pattern, std::string_view text);

class IgnoreFile {
 public:
  /// Parses the text of a .gitignore. Lines are split at "\n" ("\r\n" too).
  static IgnoreFile parse(std::string_view text);
  /// One pattern per entry (command-line globs), the same syntax as one line.
  static IgnoreFile from_patterns(const std::vector<std::string>& patterns);

  /// The verdict of the last pattern matching `path` (relative to this file's folder, "/"
  /// separators, no leading "/"): true ignored, false re-included by a "!" pattern, nothing
  /// when no pattern matches.
  std::optional<bool> match(std::string_view path, bool is_dir) const;
  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    std::string pattern;  // without "!", trailing "/" and a leading "/"
    bool negate = false;
    bool dir_only = false;
    bool anchored = false;  // matched against the whole path, else against the last name too
  };
  void add_line(std::string_view line);
  std::vector<Rule> rules_;
};

/// `path` as a pattern that matches only itself: "\" before each of "*?[]\!#" and before
/// trailing spaces.
std::string escape_glob(std::string_view path);

}  // namespace sluice::code
