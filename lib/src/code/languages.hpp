#pragma once
// The languages the code index reads: for each, its name, the file extensions that select it,
// its tree-sitter grammar and its tags query. The grammars are built from their npm sources
// (subprojects/, fetched by tools/grammars.sh) and linked in; the queries are embedded. Thread:
// any (the registry is built once, on first use, and never changes).
//
// Extensions are matched exactly, case included, on the last dot of the file name: ".h" is C
// (a C++ header that needs C++ parsing is better named .hpp/.hh/.hxx), and a name that starts
// with its only dot (".py") has no extension.

#include <memory>
#include <span>
#include <string_view>

#include <tree_sitter/api.h>

namespace sluice::code {

struct Language {
  std::string_view name;                         ///< "python", "javascript", "typescript", "tsx", ...
  std::span<const std::string_view> extensions;  ///< with the dot: ".py", ".pyi"
  const TSLanguage* grammar = nullptr;           ///< the tree-sitter grammar, linked in
  /// The grammar's tags query (queries/tags.scm): @definition.* and @reference.* captures, each
  /// with a @name capture naming what is defined or referenced.
  std::string_view tags_query;
};

/// Every language, in a fixed order: python, javascript, typescript, tsx, go, rust, c, cpp, java.
/// On first use, checks that each grammar's ABI (ts_language_version) is one the linked
/// tree-sitter runtime reads, TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION to
/// TREE_SITTER_LANGUAGE_VERSION, and that its tags query is embedded. Throws
/// std::runtime_error naming the language otherwise (a build that mixed incompatible versions).
std::span<const Language> languages();

/// The language named `name` ("cpp"), or nullptr. Throws as languages() does.
const Language* language_by_name(std::string_view name);

/// The language of the file at `path` by its extension ("src/main.rs" is rust), or nullptr when
/// no language has that extension. Throws as languages() does.
const Language* language_for_path(std::string_view path);

struct ParserDeleter {
  void operator()(TSParser* parser) const noexcept { ts_parser_delete(parser); }
};
using ParserPtr = std::unique_ptr<TSParser, ParserDeleter>;

/// A new tree-sitter parser set to `language`'s grammar. Thread: the parser is used by one
/// thread at a time. Throws std::runtime_error when tree-sitter refuses the grammar.
ParserPtr make_parser(const Language& language);

}  // namespace sluice::code
