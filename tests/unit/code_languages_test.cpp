#include <doctest/doctest.h>

#include <tree_sitter/api.h>

#include <cstdint>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "code/languages.hpp"

using sluice::code::Language;
using sluice::code::language_by_name;
using sluice::code::language_for_path;
using sluice::code::languages;
using sluice::code::make_parser;

namespace {

struct TreeDeleter {
  void operator()(TSTree* tree) const noexcept { ts_tree_delete(tree); }
};
struct QueryDeleter {
  void operator()(TSQuery* query) const noexcept { ts_query_delete(query); }
};
struct CursorDeleter {
  void operator()(TSQueryCursor* cursor) const noexcept { ts_query_cursor_delete(cursor); }
};
using TreePtr = std::unique_ptr<TSTree, TreeDeleter>;
using QueryPtr = std::unique_ptr<TSQuery, QueryDeleter>;
using CursorPtr = std::unique_ptr<TSQueryCursor, CursorDeleter>;

// A small file of each language: an import, a class (or struct) with a method, a function; and
// the definitions its grammar's tags query names, as "kind name" (kind: what follows
// @definition.), worked out by hand from the query's patterns.
struct Sample {
  std::string_view language;
  std::string_view source;
  std::set<std::string> definitions;
};

const Sample kSamples[] = {
    {"python",
     R"(import os
from collections import OrderedDict

class Greeter:
    def greet(self, name):
        return "hello " + name

def main():
    print(Greeter().greet(os.getcwd()))
)",
     // Methods are function_definitions too: python's query has no @definition.method.
     {"class Greeter", "function greet", "function main"}},
    {"javascript",
     R"(import { readFile } from "fs";

class Greeter {
  constructor(name) { this.name = name; }
  greet() { return "hello " + this.name; }
}

function main() {
  new Greeter("world").greet();
}
)",
     // (#not-eq? @name "constructor") leaves the constructor out.
     {"class Greeter", "method greet", "function main"}},
    {"typescript",
     R"(import { readFile } from "fs";

interface Named { name: string; }

class Greeter implements Named {
  constructor(public name: string) {}
  greet(): string { return "hello " + this.name; }
}

function main(): void {
  new Greeter("world").greet();
}
)",
     // The interface from typescript's own tags.scm, the rest from javascript's.
     {"interface Named", "class Greeter", "method greet", "function main"}},
    {"tsx",
     R"(import * as React from "react";

class Greeter extends React.Component<{ name: string }> {
  render() { return <div>hello {this.props.name}</div>; }
}

function App(): JSX.Element {
  return <Greeter name="world" />;
}
)",
     {"class Greeter", "method render", "function App"}},
    {"go",
     R"(package main

import "fmt"

type Greeter struct {
	name string
}

func (g *Greeter) Greet() string {
	return "hello " + g.name
}

func main() {
	fmt.Println((&Greeter{name: "world"}).Greet())
}
)",
     {"type Greeter", "method Greet", "function main"}},
    {"rust",
     R"(use std::fmt;

struct Greeter {
    name: String,
}

impl Greeter {
    fn greet(&self) -> String {
        format!("hello {}", self.name)
    }
}

fn main() {
    println!("{}", Greeter { name: "world".to_string() }.greet());
}
)",
     // A function inside an impl's declaration_list matches both the method and the function
     // pattern.
     {"class Greeter", "method greet", "function greet", "function main"}},
    {"c",
     R"(#include <stdio.h>

struct greeter {
    const char *name;
};

static void greet(const struct greeter *g) {
    printf("hello %s\n", g->name);
}

int main(void) {
    struct greeter g = {"world"};
    greet(&g);
    return 0;
}
)",
     // Only the struct with a body is a definition.
     {"class greeter", "function greet", "function main"}},
    {"cpp",
     R"(#include <iostream>
#include <string>

class Greeter {
 public:
  std::string greet(const std::string& name) const;
  int count() const { return 1; }
};

std::string Greeter::greet(const std::string& name) const {
  return "hello " + name;
}

int main() {
  std::cout << Greeter().greet("world") << std::endl;
}
)",
     // Declarators named by a field_identifier (inside the class) are functions; the one with a
     // qualified name (outside) is the method.
     {"class Greeter", "function greet", "function count", "method greet", "function main"}},
    {"java",
     R"(import java.util.List;

public class Greeter {
    private final String name;

    public Greeter(String name) { this.name = name; }

    public String greet() {
        return "hello " + name;
    }

    public static void main(String[] args) {
        System.out.println(new Greeter("world").greet());
    }
}
)",
     // The constructor is a constructor_declaration, which the query does not name.
     {"class Greeter", "method greet", "method main"}},
};

std::string_view node_text(TSNode node, std::string_view source) {
  const std::uint32_t start = ts_node_start_byte(node);
  return source.substr(start, ts_node_end_byte(node) - start);
}

// Where the first ERROR or MISSING node is ("" when none), for the failure message.
std::string first_error(TSNode node, std::string_view source) {
  if (std::string_view(ts_node_type(node)) == "ERROR" || ts_node_is_missing(node)) {
    const TSPoint at = ts_node_start_point(node);
    return (ts_node_is_missing(node) ? "MISSING " + std::string(ts_node_type(node)) : std::string("ERROR")) + " at " +
           std::to_string(at.row + 1) + ":" + std::to_string(at.column + 1) + ": \"" +
           std::string(node_text(node, source)) + "\"";
  }
  for (std::uint32_t i = 0; i < ts_node_child_count(node); ++i) {
    const TSNode child = ts_node_child(node, i);
    if (ts_node_has_error(child)) return first_error(child, source);
  }
  return "";
}

std::string_view query_error_name(TSQueryError error) {
  switch (error) {
    case TSQueryErrorNone:
      return "none";
    case TSQueryErrorSyntax:
      return "syntax";
    case TSQueryErrorNodeType:
      return "node type";
    case TSQueryErrorField:
      return "field";
    case TSQueryErrorCapture:
      return "capture";
    case TSQueryErrorStructure:
      return "structure";
    case TSQueryErrorLanguage:
      return "language";
  }
  return "unknown";
}

// The tags query compiled for `language`; on failure, a message with the error's type and
// offset, and the query text around it.
QueryPtr compile_tags_query(const Language& language, std::string& error) {
  std::uint32_t offset = 0;
  TSQueryError type = TSQueryErrorNone;
  QueryPtr query(ts_query_new(language.grammar, language.tags_query.data(),
                              static_cast<std::uint32_t>(language.tags_query.size()), &offset, &type));
  if (!query) {
    const std::size_t from = offset < 40 ? 0 : offset - 40;
    error = "the tags query of " + std::string(language.name) +
            " does not compile: " + std::string(query_error_name(type)) + " error at offset " + std::to_string(offset) +
            ", near \"" + std::string(language.tags_query.substr(from, 80)) + "\"";
  }
  return query;
}

std::string_view capture_name(const TSQuery* query, std::uint32_t index) {
  std::uint32_t length = 0;
  const char* name = ts_query_capture_name_for_id(query, index, &length);
  return {name, length};
}

// Whether a match passes its pattern's text predicates (#eq?, #not-eq?, #match?, #not-match?,
// each with a capture and a string or a second capture). Directives (#strip!, #select-adjacent!,
// #set-adjacent!) change no match and are skipped; any other predicate fails the test.
bool passes_predicates(const TSQuery* query, const TSQueryMatch& match, std::string_view source) {
  std::uint32_t steps_count = 0;
  const TSQueryPredicateStep* steps = ts_query_predicates_for_pattern(query, match.pattern_index, &steps_count);
  auto text_of_capture = [&](std::uint32_t id) -> std::string_view {
    for (std::uint16_t i = 0; i < match.capture_count; ++i) {
      if (match.captures[i].index == id) return node_text(match.captures[i].node, source);
    }
    return {};
  };
  auto string_value = [&](std::uint32_t id) {
    std::uint32_t length = 0;
    const char* value = ts_query_string_value_for_id(query, id, &length);
    return std::string_view(value, length);
  };
  std::uint32_t i = 0;
  while (i < steps_count) {
    std::uint32_t end = i;
    while (end < steps_count && steps[end].type != TSQueryPredicateStepTypeDone) ++end;
    REQUIRE(steps[i].type == TSQueryPredicateStepTypeString);
    const std::string_view op = string_value(steps[i].value_id);
    if (!op.ends_with("!")) {
      REQUIRE_MESSAGE((op == "eq?" || op == "not-eq?" || op == "match?" || op == "not-match?"),
                      (std::string("unsupported predicate #") + std::string(op)));
      REQUIRE(end - i == 3);
      REQUIRE(steps[i + 1].type == TSQueryPredicateStepTypeCapture);
      const std::string subject(text_of_capture(steps[i + 1].value_id));
      const std::string other(steps[i + 2].type == TSQueryPredicateStepTypeCapture
                                  ? text_of_capture(steps[i + 2].value_id)
                                  : string_value(steps[i + 2].value_id));
      bool holds = false;
      if (op == "eq?" || op == "not-eq?") {
        holds = (subject == other) == (op == "eq?");
      } else {
        holds = std::regex_search(subject, std::regex(other)) == (op == "match?");
      }
      if (!holds) return false;
    }
    i = end + 1;
  }
  return true;
}

// "a, b, c": a set as doctest shows it when a check fails.
std::string joined(const std::set<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Every definition the tags query finds in `source`, as "kind name".
std::set<std::string> definitions(const TSQuery* query, TSNode root, std::string_view source) {
  std::set<std::string> found;
  CursorPtr cursor(ts_query_cursor_new());
  ts_query_cursor_exec(cursor.get(), query, root);
  TSQueryMatch match;
  while (ts_query_cursor_next_match(cursor.get(), &match)) {
    if (!passes_predicates(query, match, source)) continue;
    std::string kind;
    std::string name;
    for (std::uint16_t i = 0; i < match.capture_count; ++i) {
      const std::string_view capture = capture_name(query, match.captures[i].index);
      if (capture.starts_with("definition.")) kind = capture.substr(std::string_view("definition.").size());
      if (capture == "name") name = node_text(match.captures[i].node, source);
    }
    if (!kind.empty() && !name.empty()) found.insert(kind + " " + name);
  }
  return found;
}

}  // namespace

TEST_CASE("the registry has the nine languages, each with a grammar tree-sitter reads") {
  const std::vector<std::string_view> expected = {"python", "javascript", "typescript", "tsx", "go",
                                                  "rust",   "c",          "cpp",        "java"};
  REQUIRE(languages().size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const Language& language = languages()[i];
    CAPTURE(language.name);
    CHECK(language.name == expected[i]);
    CHECK(language_by_name(language.name) == &language);
    REQUIRE(language.grammar != nullptr);
    const std::uint32_t abi = ts_language_version(language.grammar);
    CHECK(abi >= TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION);
    CHECK(abi <= TREE_SITTER_LANGUAGE_VERSION);
    CHECK(!language.extensions.empty());
    CHECK(language.tags_query.find("@definition.") != std::string_view::npos);
    CHECK(make_parser(language) != nullptr);
  }
  CHECK(language_by_name("C++") == nullptr);
  CHECK(language_by_name("") == nullptr);
  CHECK(language_by_name("Python") == nullptr);
}

TEST_CASE("TypeScript's and TSX's tags queries are their own followed by JavaScript's") {
  const std::string_view javascript = language_by_name("javascript")->tags_query;
  for (std::string_view name : {"typescript", "tsx"}) {
    CAPTURE(name);
    const std::string_view query = language_by_name(name)->tags_query;
    CHECK(query.find("(interface_declaration") != std::string_view::npos);
    CHECK(query.ends_with(javascript));
  }
}

TEST_CASE("file extensions select languages") {
  struct Case {
    std::string_view path;
    std::string_view language;  // "" for none
  };
  const Case cases[] = {
      {"main.py", "python"},
      {"pkg/stubs/types.pyi", "python"},
      {"app.js", "javascript"},
      {"esm.mjs", "javascript"},
      {"common.cjs", "javascript"},
      {"ui/Button.jsx", "javascript"},
      {"index.ts", "typescript"},
      {"lib.d.ts", "typescript"},
      {"esm.mts", "typescript"},
      {"common.cts", "typescript"},
      {"ui/App.tsx", "tsx"},
      {"cmd/main.go", "go"},
      {"src/lib.rs", "rust"},
      {"main.c", "c"},
      {"include/api.h", "c"},
      {"a.cc", "cpp"},
      {"a.cpp", "cpp"},
      {"a.cxx", "cpp"},
      {"a.hpp", "cpp"},
      {"a.hh", "cpp"},
      {"a.hxx", "cpp"},
      {"src/Main.java", "java"},
      {"/abs/path/x.py", "python"},
      {"./rel.go", "go"},
      // No language: no extension, an unknown one, a dotfile, a dot in a folder name only,
      // another case (extensions match exactly), a trailing dot, an empty path.
      {"Makefile", ""},
      {"notes.txt", ""},
      {"archive.tar.gz", ""},
      {".py", ""},
      {"src/.rs", ""},
      {"pkg.py/README", ""},
      {"MAIN.PY", ""},
      {"a.C", ""},
      {"main.", ""},
      {"", ""},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    const Language* language = language_for_path(c.path);
    if (c.language.empty()) {
      CHECK(language == nullptr);
    } else {
      REQUIRE(language != nullptr);
      CHECK(language->name == c.language);
    }
  }
  // Every extension selects its own language, and no two languages share one.
  std::set<std::string_view> seen;
  for (const Language& language : languages()) {
    for (std::string_view extension : language.extensions) {
      CAPTURE(extension);
      CHECK(extension.starts_with("."));
      CHECK(seen.insert(extension).second);
      CHECK(language_for_path("dir/file" + std::string(extension)) == &language);
    }
  }
}

TEST_CASE("each language parses its sample without errors and its tags query finds the definitions") {
  std::set<std::string_view> covered;
  for (const Sample& sample : kSamples) {
    CAPTURE(sample.language);
    const Language* language = language_by_name(sample.language);
    REQUIRE(language != nullptr);
    covered.insert(language->name);

    auto parser = make_parser(*language);
    TreePtr tree(ts_parser_parse_string(parser.get(), nullptr, sample.source.data(),
                                        static_cast<std::uint32_t>(sample.source.size())));
    REQUIRE(tree != nullptr);
    const TSNode root = ts_tree_root_node(tree.get());
    CHECK_MESSAGE(!ts_node_has_error(root), first_error(root, sample.source));

    std::string error;
    QueryPtr query = compile_tags_query(*language, error);
    REQUIRE_MESSAGE(query != nullptr, error);
    CHECK(joined(definitions(query.get(), root, sample.source)) == joined(sample.definitions));
  }
  CHECK(covered.size() == languages().size());
}
