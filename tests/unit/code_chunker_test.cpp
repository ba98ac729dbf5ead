// The syntax-aware chunker: units and names, skeletons, statement parts, long lines, coverage
// of every non-blank line, partial files; Python's boundaries checked against Python's own ast.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "code/chunker.hpp"
#include "code/index.hpp"
#include "code/languages.hpp"

using namespace sluice::code;

namespace {

// Words and punctuation runs: a stand-in for a tokenizer, additive over whitespace.
std::uint32_t count_words(std::string_view s) {
  std::uint32_t n = 0;
  bool in = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in) ++n;
    in = !space;
  }
  return n;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    out.emplace_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// Every non-blank line is inside some chunk's line range, and every chunk is within budget,
// in file order, its bytes those of the file (except skeletons).
void check_cover(const std::string& text, const ChunkedFile& f, std::uint32_t budget) {
  const auto lines = split_lines(text);
  std::vector<bool> covered(lines.size() + 1, false);
  std::uint64_t last_start = 0;
  for (const CodeChunk& c : f.chunks) {
    CHECK(c.start_line >= 1);
    CHECK(c.end_line >= c.start_line);
    CHECK(c.end_line <= lines.size());
    CHECK(c.tokens <= budget);
    CHECK(c.tokens == count_words(c.content));
    CHECK(c.start_byte >= last_start);
    last_start = c.start_byte;
    if (c.kind != "skeleton") {
      CHECK(text.substr(c.start_byte, c.end_byte - c.start_byte).find(c.content) == 0);
    }
    for (std::uint32_t l = c.start_line; l <= c.end_line; ++l) covered[l] = true;
  }
  for (std::size_t l = 0; l < lines.size(); ++l) {
    if (lines[l].find_first_not_of(" \t\r") == std::string::npos) continue;
    INFO("line " << l + 1 << ": " << lines[l]);
    CHECK(covered[l + 1]);
  }
}

const CodeChunk* find(const ChunkedFile& f, std::string_view name, std::string_view kind = {}) {
  for (const CodeChunk& c : f.chunks) {
    if (c.name == name && (kind.empty() || c.kind == kind)) return &c;
  }
  return nullptr;
}

const char* kPython = R"(import os
import sys as system

CONSTANT = 3


# A comment about f,
# two lines.
@decorator
@other(1)
def f(a, b):
    """Docstring."""
    return a + b


class Shape:
    sides = 0

    def __init__(self, n):
        self.n = n

    @property
    def area(self):
        return self.n * 2

    class Inner:
        def deep(self):
            pass


print(f(1, 2))
)";

}  // namespace

TEST_CASE("python: definitions with their comments and decorators, qualified names, code between") {
  Chunker chunker(count_words, 1000);
  const ChunkedFile f = chunker.chunk("pkg/geometry.py", kPython);
  CHECK(f.language == "python");
  CHECK_FALSE(f.partial);
  const CodeChunk* fn = find(f, "pkg.geometry.f", "function");
  REQUIRE(fn != nullptr);
  CHECK(fn->start_line == 7);  // the comment above the decorators
  CHECK(fn->end_line == 13);
  const CodeChunk* cls = find(f, "pkg.geometry.Shape", "class");
  REQUIRE(cls != nullptr);
  CHECK(cls->start_line == 16);
  CHECK(cls->end_line == 28);
  CHECK(find(f, "pkg.geometry.Shape.area") == nullptr);  // inside the class's chunk
  const CodeChunk* head = &f.chunks.front();
  CHECK(head->kind == "code");
  CHECK(head->name.empty());
  CHECK(head->start_line == 1);
  CHECK(f.chunks.back().kind == "code");
  CHECK(f.chunks.back().content == "print(f(1, 2))\n");
  check_cover(kPython, f, 1000);
}

TEST_CASE("a class over the budget: a skeleton, then its methods as chunks of their own") {
  Chunker chunker(count_words, 20);
  const ChunkedFile f = chunker.chunk("geometry.py", kPython);
  const CodeChunk* skeleton = find(f, "geometry.Shape", "skeleton");
  REQUIRE(skeleton != nullptr);
  CHECK(skeleton->content.find("sides = 0") != std::string::npos);
  CHECK(skeleton->content.find("def __init__(self, n):") != std::string::npos);
  CHECK(skeleton->content.find("@property") != std::string::npos);
  CHECK(skeleton->content.find("self.n = n") == std::string::npos);  // bodies left out
  const CodeChunk* area = find(f, "geometry.Shape.area", "method");
  REQUIRE(area != nullptr);
  CHECK(area->start_line == 22);  // its decorator
  CHECK(area->end_line == 24);
  CHECK(find(f, "geometry.Shape.Inner", "class") != nullptr);  // fits: one chunk
  CHECK(find(f, "geometry.Shape.Inner.deep") == nullptr);
  check_cover(kPython, f, 20);
}

TEST_CASE("a function over the budget is cut at its statements; a line over it by tokens") {
  std::string src = "def big(x):\n";
  for (int i = 0; i < 40; ++i) src += "    y" + std::to_string(i) + " = x + " + std::to_string(i) + "\n";
  src += "    if x:\n        return 1\n        return 2\n";
  src += "LONG = [" + std::string() ;
  for (int i = 0; i < 100; ++i) src += std::to_string(i) + ", ";
  src += "]\n";
  Chunker chunker(count_words, 25);
  const ChunkedFile f = chunker.chunk("m.py", src);
  int parts = 0;
  for (const CodeChunk& c : f.chunks) {
    if (c.name == "m.big") {
      CHECK(c.kind == "part");
      ++parts;
    }
  }
  CHECK(parts >= 6);
  // The pieces of the long line are, together, the line.
  std::string joined;
  for (const CodeChunk& c : f.chunks) {
    if (c.start_line == 45 && c.end_line == 45) joined += c.content;
  }
  CHECK(joined == "LONG = [" + [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += std::to_string(i) + ", ";
    return s;
  }() + "]\n");
  check_cover(src, f, 25);
}

TEST_CASE("a file with syntax errors is chunked and marked partial with the first error's line") {
  const std::string src = "def ok():\n    return 1\n\n\ndef broken(:\n    pass\n\nx = = 2\n";
  Chunker chunker(count_words, 1000);
  const ChunkedFile f = chunker.chunk("bad.py", src);
  CHECK(f.partial);
  CHECK(f.first_error_line == 5);
  CHECK(find(f, "bad.ok", "function") != nullptr);
  check_cover(src, f, 1000);
}

TEST_CASE("every language: its definitions, names and coverage") {
  struct Sample {
    const char* path;
    std::string text;
    std::vector<std::string> names;
  };
  const std::vector<Sample> samples = {
      {"web/app.js",
       "import x from 'y';\n\n// Adds.\nfunction add(a, b) {\n  return a + b;\n}\n\nclass Box {\n  constructor(v) { this.v = v; }\n"
       "  get() {\n    return this.v;\n  }\n}\n\nexport function run() { return add(1, 2); }\n",
       {"web.app.add", "web.app.Box", "web.app.run"}},
      {"src/types.ts",
       "interface Named { name: string }\n\nexport class Person implements Named {\n  name = '';\n  greet(): string {\n"
       "    return this.name;\n  }\n}\n\nfunction helper(n: number): number {\n  return n * 2;\n}\n",
       {"src.types.Named", "src.types.Person", "src.types.helper"}},
      {"src/view.tsx",
       "function View(props: {n: number}) {\n  return <div>{props.n}</div>;\n}\n\nclass Widget {\n  render() {\n"
       "    return <span/>;\n  }\n}\n",
       {"src.view.View", "src.view.Widget"}},
      {"cmd/main.go",
       "package main\n\nimport \"fmt\"\n\ntype Point struct {\n\tX int\n}\n\n// Norm says.\nfunc (p Point) Norm() int {\n"
       "\treturn p.X\n}\n\nfunc main() {\n\tfmt.Println(1)\n}\n",
       {"cmd.main.Point", "cmd.main.Norm", "cmd.main.main"}},
      {"src/lib.rs",
       "use std::fmt;\n\n/// A point.\n#[derive(Debug)]\npub struct Point {\n    x: i32,\n}\n\nimpl Point {\n"
       "    pub fn norm(&self) -> i32 {\n        self.x\n    }\n}\n\nfn main() {\n    println!(\"hi\");\n}\n",
       {"src.lib.Point", "src.lib.main"}},
      {"src/util.c",
       "#include <stdio.h>\n\nstruct point {\n  int x;\n};\n\n/* Adds. */\nint add(int a, int b) {\n  return a + b;\n}\n",
       {"src.util.point", "src.util.add"}},
      {"src/shape.cpp",
       "#include <vector>\n\nnamespace geo {\n\nclass Shape {\n public:\n  int area() const { return 1; }\n};\n\n}  // namespace geo\n\n"
       "int twice(int x) {\n  return 2 * x;\n}\n",
       {"src.shape.Shape", "src.shape.twice"}},
      {"src/Main.java",
       "package a;\n\nimport java.util.List;\n\n/** Doc. */\npublic class Main {\n  private int n;\n\n  @Override\n"
       "  public String toString() {\n    return \"\";\n  }\n}\n\ninterface Runner {\n  void run();\n}\n",
       {"src.Main.Main", "src.Main.Runner"}},
  };
  Chunker chunker(count_words, 1000);
  for (const Sample& s : samples) {
    INFO(std::string(s.path));
    const ChunkedFile f = chunker.chunk(s.path, s.text);
    CHECK_FALSE(f.partial);
    std::set<std::string> names;
    for (const CodeChunk& c : f.chunks) names.insert(c.name);
    for (const std::string& n : s.names) {
      INFO(n);
      CHECK(names.count(n) == 1);
    }
    check_cover(s.text, f, 1000);
    // With small budgets too: skeletons, parts, and still every line.
    Chunker small(count_words, 12);
    check_cover(s.text, small.chunk(s.path, s.text), 12);
    Chunker tight(count_words, 6);
    check_cover(s.text, tight.chunk(s.path, s.text), 6);
  }
}

TEST_CASE("markdown by headings, other text by lines") {
  const std::string md = "# Title\n\nIntro text.\n\n## Part one\n\nBody one.\n\n```\n# not a heading\n```\n\n## Part two\n\nBody two.\n";
  Chunker chunker(count_words, 1000);
  const ChunkedFile f = chunker.chunk("README.md", md);
  CHECK(f.language == "markdown");
  REQUIRE(f.chunks.size() == 3);
  CHECK(f.chunks[1].content.find("# not a heading") != std::string::npos);
  CHECK(f.chunks[2].start_line == 13);
  check_cover(md, f, 1000);
  std::string cfg;
  for (int i = 0; i < 50; ++i) cfg += "key" + std::to_string(i) + " = value\n";
  const ChunkedFile t = Chunker(count_words, 10).chunk("app.cfg", cfg);
  CHECK(t.language == "text");
  CHECK(t.chunks.size() >= 15);
  check_cover(cfg, t, 10);
}

TEST_CASE("python: boundaries and names of every definition that fits, against Python's ast") {
  if (std::system("python3 -c 'import ast' > /dev/null 2>&1") != 0) {
    MESSAGE("SKIPPED: python3 is not installed: the chunks are not compared with Python's ast");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("sluice-chunk-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "sample.py";
  std::ofstream(path) << kPython;
  // Each top-level def or class: first line (its first decorator, or itself), last line, name.
  const std::string cmd = "python3 -c \"import ast,sys\n"
                          "t=ast.parse(open(sys.argv[1]).read())\n"
                          "for n in t.body:\n"
                          "  if isinstance(n,(ast.FunctionDef,ast.AsyncFunctionDef,ast.ClassDef)):\n"
                          "    s=min([n.lineno]+[d.lineno for d in n.decorator_list])\n"
                          "    print(n.name,s,n.end_lineno)\" '" +
                          path.string() + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  REQUIRE(::pclose(p) == 0);
  std::filesystem::remove_all(dir);
  Chunker chunker(count_words, 1000);
  const ChunkedFile f = chunker.chunk("sample.py", kPython);
  std::istringstream in(out);
  std::string name;
  std::uint32_t first = 0, last = 0;
  int seen = 0;
  while (in >> name >> first >> last) {
    INFO(name);
    const CodeChunk* c = find(f, "sample." + name);
    REQUIRE(c != nullptr);
    // The chunk may start earlier, with the comments right above.
    CHECK(c->start_line <= first);
    CHECK(c->end_line == last);
    for (std::uint32_t l = c->start_line; l < first; ++l) {
      const std::string line = split_lines(kPython)[l - 1];
      CHECK(line.rfind("#", 0) == 0);
    }
    ++seen;
  }
  CHECK(seen == 2);
}

namespace {
// One token a code point: cuts inside a line land between multi-byte characters.
std::uint32_t count_code_points(std::string_view s) {
  std::uint32_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}
}  // namespace

TEST_CASE("a long line of multi-byte characters is cut between characters, within the budget") {
  std::string line = "x = \"";
  for (int i = 0; i < 300; ++i) line += i % 3 == 0 ? "\u2192 " : "\u8fd9";
  line += "\"\n";
  Chunker chunker(count_code_points, 50);
  const ChunkedFile f = chunker.chunk("i18n.py", line);
  std::string joined;
  for (const CodeChunk& c : f.chunks) {
    CHECK(c.tokens <= 50);
    CHECK(c.start_line == 1);
    joined += c.content;
  }
  CHECK(joined == line);
  CHECK(f.chunks.size() >= 8);
}

TEST_CASE("C and C++ functions are units with their bodies; a trailing comment stays with its line") {
  Chunker chunker(count_words, 1000);
  const std::string c = "/* adds */\nstatic int add(int a, int b)\n{\n  return a + b;\n}\n\nint main(void) {\n  return add(1, 2);\n}\n";
  const ChunkedFile f = chunker.chunk("a.c", c);
  const CodeChunk* add = find(f, "a.add", "function");
  REQUIRE(add != nullptr);
  CHECK(add->start_line == 1);
  CHECK(add->end_line == 5);
  const CodeChunk* main_fn = find(f, "a.main", "function");
  REQUIRE(main_fn != nullptr);
  CHECK(main_fn->start_line == 7);
  CHECK(main_fn->end_line == 9);
  const std::string cpp = "class Shape {\n public:\n  int area(int s) const {\n    return s * 2;\n  }\n};\n";
  const ChunkedFile g = Chunker(count_words, 1000).chunk("s.cpp", cpp);
  const CodeChunk* shape = find(g, "s.Shape", "class");
  REQUIRE(shape != nullptr);
  CHECK(shape->end_line == 6);
  const std::string go = "package p\n\nfunc A() {} // A\nfunc B() {\n\treturn\n}\n";
  const ChunkedFile h = chunker.chunk("p.go", go);
  const CodeChunk* a = find(h, "p.A", "function");
  const CodeChunk* b = find(h, "p.B", "function");
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(a->start_line == 3);
  CHECK(b->start_line == 4);
  check_cover(go, h, 1000);
}

TEST_CASE("a long run of blank lines costs one count a line") {
  std::uint64_t calls = 0;
  Chunker chunker([&](std::string_view s) { ++calls; return count_words(s); }, 100);
  const std::string text = "a = 1\n" + std::string(50000, '\n') + "b = 2\n";
  const ChunkedFile f = chunker.chunk("blank.txt", text);
  check_cover(text, f, 100);
  CHECK(calls < 1000);
}

TEST_CASE("each language's graph query names its calls, imports and bases") {
  struct Case {
    const char* path;
    const char* source;
    std::set<std::string> want;  // "kind name"
  };
  const Case cases[] = {
      {"a.py",
       "import os.path\nfrom .util import helper\nimport numpy as np\n\nclass B(Base, mod.Mixin):\n"
       "    def f(self):\n        return helper(os.path.join('a'))\n",
       {"imports os.path", "imports .util", "imports .util.helper", "imports numpy", "inherits Base",
        "inherits Mixin", "calls helper", "calls join"}},
      {"a.js",
       "import { x } from './lib/x.js';\nclass C extends Base {\n  m() { return run(this.go(), new Thing()); }\n}\n",
       {"imports ./lib/x.js", "inherits Base", "calls run", "calls go", "calls Thing"}},
      {"a.ts",
       "import { x } from \"./x\";\ninterface I extends J {}\nclass C extends B implements I {\n"
       "  m(): void { helper(); }\n}\n",
       {"imports ./x", "inherits J", "inherits B", "inherits I", "calls helper"}},
      {"a.tsx", "import * as React from 'react';\nfunction App() { return render(<div/>); }\n",
       {"imports react", "calls render"}},
      {"a.go", "package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/pkg/util\"\n)\n\nfunc main() {\n"
               "\tfmt.Println(util.Do(helper()))\n}\n",
       {"imports fmt", "imports example.com/pkg/util", "calls Println", "calls Do", "calls helper"}},
      {"a.rs", "use crate::util::helper;\nstruct S;\nimpl Display for S {}\nfn main() {\n"
               "    helper(S::new(), x.go());\n    println!(\"hi\");\n}\n",
       {"imports crate::util::helper", "inherits Display", "calls helper", "calls new", "calls go", "calls println"}},
      {"a.c", "#include <stdio.h>\n#include \"util.h\"\nint main(void) { return helper(s->go(1)); }\n",
       {"imports stdio.h", "imports util.h", "calls helper", "calls go"}},
      {"a.cpp", "#include \"shape.hpp\"\nclass C : public Base, public ns::Other {\n  int f() { return ns::g(h()); }\n};\n",
       {"imports shape.hpp", "inherits Base", "inherits Other", "calls g", "calls h"}},
      {"A.java", "import java.util.List;\nclass A extends B implements I, J {\n  void f() { run(new C()); }\n}\n",
       {"imports java.util.List", "inherits B", "inherits I", "inherits J", "calls run", "calls C"}},
  };
  sluice::code::Chunker chunker(count_words, 1000);
  for (const Case& c : cases) {
    CAPTURE(c.path);
    const auto f = chunker.chunk(c.path, c.source);
    std::set<std::string> got;
    for (const auto& r : f.references) {
      got.insert(r.kind + " " + r.name);
      CHECK(r.byte < std::string_view(c.source).size());
    }
    CHECK(got == c.want);
  }
}

TEST_CASE("an import names the files it may be, by language") {
  using sluice::code::import_candidates;
  using V = std::vector<std::string>;
  CHECK(import_candidates("app/main.py", "pkg.util") ==
        V{"pkg/util.py", "pkg/util/__init__.py", "src/pkg/util.py", "src/pkg/util/__init__.py", "app/pkg/util.py",
          "app/pkg/util/__init__.py"});
  CHECK(import_candidates("app/sub/main.py", "..util") == V{"app/util.py", "app/util/__init__.py"});
  CHECK(import_candidates("app/main.py", ".") == V{"app/__init__.py"});
  CHECK(import_candidates("web/a/main.ts", "../lib/x")[0] == "web/lib/x");
  CHECK(import_candidates("web/a/main.ts", "../lib/x")[1] == "web/lib/x.ts");
  CHECK(import_candidates("web/main.js", "react").empty());
  CHECK(import_candidates("web/main.js", "../../../outside").empty());
  CHECK(import_candidates("src/a.c", "util.h") == V{"src/util.h", "util.h", "include/util.h"});
  CHECK(import_candidates("src/Main.java", "com.example.Util") ==
        V{"com/example/Util.java", "src/com/example/Util.java", "src/main/java/com/example/Util.java"});
  CHECK(import_candidates("src/main.rs", "crate::net::http::{Client, get}") ==
        V{"src/net/http.rs", "src/net/http/mod.rs", "src/net.rs", "src/net/mod.rs"});
  CHECK(import_candidates("src/main.rs", "std::fmt").empty());
  // A module's own folder: src/net/http.rs is the module src/net/http; mod.rs is its folder's.
  CHECK(import_candidates("src/net/http.rs", "super::tcp::connect")[0] == "src/net/tcp/connect.rs");
  CHECK(import_candidates("src/net/http.rs", "super::tcp::connect")[2] == "src/net/tcp.rs");
  CHECK(import_candidates("src/net/http.rs", "self::inner::helper")[2] == "src/net/http/inner.rs");
  CHECK(import_candidates("src/net/mod.rs", "self::tcp")[0] == "src/net/tcp.rs");
  CHECK(import_candidates("src/net/mod.rs", "super::util")[0] == "src/util.rs");
  CHECK(import_candidates("cmd/main.go", "fmt").empty());
}
