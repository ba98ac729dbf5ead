// The code index's tree walk: ignore rules checked against git itself on the same tree, the
// skip rules, symbolic links and unreadable paths; and wildmatch against git's own cases.

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "code/ignore.hpp"
#include "code/walk.hpp"

namespace fs = std::filesystem;
using namespace sluice::code;

namespace {

struct TempTree {
  TempTree() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-walk-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    root = tmpl;
  }
  ~TempTree() {
    // Folders made unreadable by a test are made readable again to be removed.
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) fs::permissions(it->path(), fs::perms::owner_all, ec);
    }
    fs::permissions(root, fs::perms::owner_all, ec);
    fs::remove_all(root, ec);
  }
  void file(const std::string& rel, const std::string& text = "x = 1\n") const {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel, std::ios::binary) << text;
  }
  fs::path root;
};

std::vector<WalkEntry> walk_all(const fs::path& root, WalkOptions o = {}) {
  TreeWalker w(root.string(), std::move(o));
  std::vector<WalkEntry> out;
  while (auto e = w.next()) out.push_back(std::move(*e));
  return out;
}

std::set<std::string> files_of(const std::vector<WalkEntry>& entries) {
  std::set<std::string> out;
  for (const WalkEntry& e : entries) {
    if (e.status == WalkEntry::Status::file) out.insert(e.path);
  }
  return out;
}

std::map<std::string, std::string> skipped_of(const std::vector<WalkEntry>& entries) {
  std::map<std::string, std::string> out;
  for (const WalkEntry& e : entries) {
    if (e.status != WalkEntry::Status::file) out[e.path] = e.reason;
  }
  return out;
}

// git's own answer: the files it would add (untracked, not ignored).
std::optional<std::set<std::string>> git_files(const fs::path& root) {
  if (std::system("git --version > /dev/null 2>&1") != 0) return std::nullopt;
  const std::string cmd = "cd '" + root.string() +
                          "' && git init -q . && git ls-files --others --exclude-standard -z 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  std::set<std::string> files;
  for (std::size_t start = 0; start < out.size();) {
    const std::size_t end = out.find('\0', start);
    files.insert(out.substr(start, end - start));
    start = end + 1;
  }
  return files;
}

}  // namespace

TEST_CASE("wildmatch: git's rules for *, **, ? and classes") {
  CHECK(wildmatch("foo", "foo"));
  CHECK_FALSE(wildmatch("foo", "bar"));
  CHECK(wildmatch("*", "foo"));
  CHECK_FALSE(wildmatch("*", "foo/bar"));
  CHECK(wildmatch("f*", "foo"));
  CHECK(wildmatch("*o", "foo"));
  CHECK(wildmatch("???", "foo"));
  CHECK_FALSE(wildmatch("??", "foo"));
  CHECK_FALSE(wildmatch("a?b", "a/b"));
  CHECK(wildmatch("[a-c]x", "bx"));
  CHECK_FALSE(wildmatch("[!a-c]x", "bx"));
  CHECK(wildmatch("[^a-c]x", "dx"));
  CHECK(wildmatch("[]]", "]"));
  CHECK(wildmatch("[!]]", "a"));
  CHECK(wildmatch("\\*", "*"));
  CHECK_FALSE(wildmatch("\\*", "a"));
  CHECK(wildmatch("**/foo", "foo"));
  CHECK(wildmatch("**/foo", "a/b/foo"));
  CHECK(wildmatch("a/**/b", "a/b"));
  CHECK(wildmatch("a/**/b", "a/x/y/b"));
  CHECK_FALSE(wildmatch("a/**/b", "a/x/y/c"));
  CHECK(wildmatch("abc/**", "abc/x/y"));
  CHECK_FALSE(wildmatch("abc/**", "abc"));
  CHECK(wildmatch("a/*/c", "a/b/c"));
  CHECK_FALSE(wildmatch("a/*/c", "a/b/x/c"));
  CHECK(wildmatch("a**b", "axxb"));       // not between slashes: two plain stars
  CHECK_FALSE(wildmatch("a**b", "ax/xb"));
  CHECK_FALSE(wildmatch("[a-", "a"));      // an unclosed class matches nothing
  // Many stars over a long text stay fast (the abort codes of git's wildmatch).
  CHECK_FALSE(wildmatch("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", std::string(200, 'a')));
  CHECK(wildmatch("-*-*-*-*-*-*-12-*-*-*-m-*-*-*", "-adobe-courier-bold-o-normal--12-120-75-75-m-70-iso8859-1"));
  CHECK_FALSE(wildmatch("-*-*-*-*-*-*-12-*-*-*-m-*-*-*", "-adobe-courier-bold-o-normal--12-120-75-75-X-70-iso8859-1"));
  CHECK(wildmatch("XXX/*/*/*/*/*/*/12/*/*/*/m/*/*/*", "XXX/adobe/courier/bold/o/normal//12/120/75/75/m/70/iso8859/1"));
}

TEST_CASE("gitignore lines: comments, escapes, trailing spaces, negation, folders, anchoring") {
  IgnoreFile f = IgnoreFile::parse("# comment\n\\#hash\n*.log\n!keep.log\nbuild/\n/top.txt\nsub/anchored.txt\n"
                                   "trailing   \nescaped\\ \n\\!bang\r\n");
  CHECK(f.match("#hash", false) == true);
  CHECK(f.match("# comment", false) == std::nullopt);
  CHECK(f.match("a/b/x.log", false) == true);
  CHECK(f.match("a/keep.log", false) == false);
  CHECK(f.match("build", true) == true);
  CHECK(f.match("build", false) == std::nullopt);
  CHECK(f.match("x/build", true) == true);
  CHECK(f.match("top.txt", false) == true);
  CHECK(f.match("x/top.txt", false) == std::nullopt);
  CHECK(f.match("sub/anchored.txt", false) == true);
  CHECK(f.match("x/sub/anchored.txt", false) == std::nullopt);
  CHECK(f.match("trailing", false) == true);
  CHECK(f.match("escaped\\ ", false) == std::nullopt);
  CHECK(f.match("escaped ", false) == true);
  CHECK(f.match("!bang", false) == true);
}

TEST_CASE("the walk leaves out what git ignores, at every level, as git does") {
  TempTree t;
  t.file(".gitignore", "*.log\n!important.log\n/only-top.txt\ndocs/*.md\n!docs/keep.md\ntmp/\n**/gen/**\n"
                       "a/**/deep.txt\n*.o\n");
  t.file("main.py");
  t.file("debug.log");
  t.file("important.log");
  t.file("only-top.txt");
  t.file("src/only-top.txt");
  t.file("docs/readme.md");
  t.file("docs/keep.md");
  t.file("docs/sub/nested.md");  // "docs/*.md" does not reach into docs/sub
  t.file("tmp/x.py");
  t.file("src/tmp/y.py");
  t.file("src/gen/out.py");
  t.file("a/deep.txt");
  t.file("a/b/c/deep.txt");
  t.file("lib.o");
  t.file("src/.gitignore", "*.py\n!keep.py\n/local.txt\n");
  t.file("src/x.py");
  t.file("src/keep.py");
  t.file("src/local.txt");
  t.file("src/inner/local.txt");
  t.file("src/inner/z.py");
  t.file("src/inner/.gitignore", "!z.py\n");
  t.file("weird name [1].txt");
  t.file("space .txt");
  const auto ours = files_of(walk_all(t.root));
  auto git = git_files(t.root);
  if (!git) {
    MESSAGE("SKIPPED: git is not installed: the walk is not compared with git");
    return;
  }
  CHECK(ours == *git);
  CHECK(ours.count("important.log") == 1);
  CHECK(ours.count("src/inner/z.py") == 1);
  CHECK(ours.count("src/x.py") == 0);

  // A root below the repository's top: the ignore files above it still apply, paths stay
  // relative to the root.
  const auto below = files_of(walk_all(t.root / "src"));
  std::set<std::string> want;
  for (const std::string& f : *git) {
    if (f.rfind("src/", 0) == 0) want.insert(f.substr(4));
  }
  CHECK(below == want);
}

TEST_CASE("the walk: vendored folders, globs, size, symbolic links, FIFOs, unreadable folders") {
  TempTree t;
  t.file("a.py");
  t.file("big.py", std::string(2000, 'x'));
  t.file("node_modules/pkg/index.js");
  t.file("vendor/lib.go");
  t.file("build/out.c");
  t.file("src/build.py");  // a file named like a build folder is a file
  t.file("src/b.rs");
  t.file("src/c.md");
  REQUIRE(::symlink("../a.py", (t.root / "src" / "link.py").c_str()) == 0);
  REQUIRE(::symlink("/etc/hostname", (t.root / "out.txt").c_str()) == 0);
  REQUIRE(::symlink("loop2", (t.root / "loop1").c_str()) == 0);
  REQUIRE(::symlink("loop1", (t.root / "loop2").c_str()) == 0);
  REQUIRE(::symlink(".", (t.root / "src" / "self").c_str()) == 0);
  REQUIRE(::mkfifo((t.root / "fifo").c_str(), 0600) == 0);
  t.file("locked/secret.py");

  WalkOptions o;
  o.max_file_bytes = 1000;
  const bool root_user = ::geteuid() == 0;
  if (!root_user) fs::permissions(t.root / "locked", fs::perms::none);
  auto entries = walk_all(t.root, o);
  // As root every folder is readable.
  const std::set<std::string> locked = root_user ? std::set<std::string>{"locked/secret.py"} : std::set<std::string>{};
  auto plus = [](std::set<std::string> a, const std::set<std::string>& b) {
    a.insert(b.begin(), b.end());
    return a;
  };
  CHECK(files_of(entries) == plus({"a.py", "src/b.rs", "src/build.py", "src/c.md"}, locked));
  auto skipped = skipped_of(entries);
  CHECK(skipped["big.py"].find("2000 bytes, over --max-file-bytes 1000") != std::string::npos);
  CHECK(skipped["src/link.py"].find("symbolic link (not followed") != std::string::npos);
  CHECK(skipped["out.txt"].find("symbolic link out of the tree") != std::string::npos);
  CHECK(skipped["loop1"].find("in a loop") != std::string::npos);
  CHECK(skipped["src/self"].find("symbolic link") != std::string::npos);
  CHECK(skipped["fifo"].find("not a regular file") != std::string::npos);
  if (root_user) {
    MESSAGE("SKIPPED: running as root, an unreadable folder cannot be made: that case is not checked");
  } else {
    CHECK(skipped["locked"].find("cannot read the folder") != std::string::npos);
  }
  {
    TreeWalker w(t.root.string(), o);
    while (w.next()) {
    }
    CHECK(w.counts().vendored == 3);
  }

  // --include names a path inside a vendored folder: that folder is walked; --exclude wins.
  WalkOptions inc = o;
  inc.include = {"*.py", "vendor/**"};
  inc.exclude = {"src/"};
  CHECK(files_of(walk_all(t.root, inc)) == plus({"a.py", "vendor/lib.go"}, locked));
}

TEST_CASE("classify_content: binary, minified, invalid UTF-8; source text passes") {
  CHECK_FALSE(classify_content("def f():\n    return 1\n"));
  CHECK_FALSE(classify_content(""));
  std::string with_table;  // one long line among ordinary ones (a table, a literal)
  for (int i = 0; i < 60; ++i) with_table += "    value_" + std::to_string(i) + " = compute(value)\n";
  with_table += "TABLE = \"" + std::string(5000, 'a') + "\"\n";
  CHECK_FALSE(classify_content(with_table));
  CHECK(classify_content(std::string("abc\0def", 7))->find("binary") == 0);
  CHECK(classify_content("var a=" + std::string(30000, 'b') + ";")->find("minified") == 0);
  std::string dense;
  for (int i = 0; i < 20; ++i) dense += std::string(400, 'c') + "\n";
  CHECK(classify_content(dense)->find("minified") == 0);
  CHECK(*classify_content("ok\n\xff") == "invalid UTF-8 at byte 3");
  CHECK(*classify_content("\xc0\xaf") == "invalid UTF-8 at byte 0");           // overlong
  CHECK(*classify_content("a\xed\xa0\x80") == "invalid UTF-8 at byte 1");      // surrogate
  CHECK(*classify_content("ab\xe2\x82") == "invalid UTF-8 at byte 2");         // cut
  CHECK_FALSE(classify_content("caf\xc3\xa9 \xf0\x9f\x98\x80\n"));
}

TEST_CASE("ignore files that are not regular files are not read; a folder pattern includes its files") {
  TempTree t;
  t.file("a.py");
  t.file("src/b.py");
  t.file("src/deep/c.py");
  t.file("other/d.py");
  REQUIRE(::mkfifo((t.root / ".gitignore").c_str(), 0600) == 0);  // would block a reader
  REQUIRE(::symlink("/dev/zero", (t.root / "src" / ".gitignore").c_str()) == 0);
  auto entries = walk_all(t.root);
  CHECK(files_of(entries).count("src/deep/c.py") == 1);
  for (const char* pattern : {"src/", "src", "/src"}) {
    INFO(pattern);
    WalkOptions o;
    o.include = {pattern};
    CHECK(files_of(walk_all(t.root, o)) == std::set<std::string>{"src/b.py", "src/deep/c.py"});
  }
}

TEST_CASE("gitignore: POSIX classes, a BOM, a trailing backslash") {
  IgnoreFile f = IgnoreFile::parse("\xEF\xBB\xBF" "bom.txt\n[[:digit:]]\nlit\\\n");
  CHECK(f.match("bom.txt", false) == true);
  CHECK(f.match("7", false) == true);
  CHECK(f.match("a", false) == std::nullopt);
  CHECK(f.match("lit\\", false) == std::nullopt);
  CHECK(wildmatch("[[:alpha:]]x", "ax"));
  CHECK_FALSE(wildmatch("[[:alpha:]]x", "1x"));
  CHECK(wildmatch("[![:space:]]", "a"));
}
