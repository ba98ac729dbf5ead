#include "code/languages.hpp"

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "code/tags_queries.hpp"

// Defined by the grammars' generated parser.c (subprojects/tree-sitter-*).
extern "C" {
const TSLanguage* tree_sitter_python(void);
const TSLanguage* tree_sitter_javascript(void);
const TSLanguage* tree_sitter_typescript(void);
const TSLanguage* tree_sitter_tsx(void);
const TSLanguage* tree_sitter_go(void);
const TSLanguage* tree_sitter_rust(void);
const TSLanguage* tree_sitter_c(void);
const TSLanguage* tree_sitter_cpp(void);
const TSLanguage* tree_sitter_java(void);
}

namespace sluice::code {

namespace {

constexpr std::array<std::string_view, 2> kPython = {".py", ".pyi"};
constexpr std::array<std::string_view, 4> kJavaScript = {".js", ".mjs", ".cjs", ".jsx"};
constexpr std::array<std::string_view, 3> kTypeScript = {".ts", ".mts", ".cts"};
constexpr std::array<std::string_view, 1> kTsx = {".tsx"};
constexpr std::array<std::string_view, 1> kGo = {".go"};
constexpr std::array<std::string_view, 1> kRust = {".rs"};
constexpr std::array<std::string_view, 2> kC = {".c", ".h"};
constexpr std::array<std::string_view, 6> kCpp = {".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"};
constexpr std::array<std::string_view, 1> kJava = {".java"};

struct Entry {
  std::string_view name;
  std::span<const std::string_view> extensions;
  const TSLanguage* (*grammar)(void);
};

constexpr std::array<Entry, 9> kEntries = {{
    {"python", kPython, tree_sitter_python},
    {"javascript", kJavaScript, tree_sitter_javascript},
    {"typescript", kTypeScript, tree_sitter_typescript},
    {"tsx", kTsx, tree_sitter_tsx},
    {"go", kGo, tree_sitter_go},
    {"rust", kRust, tree_sitter_rust},
    {"c", kC, tree_sitter_c},
    {"cpp", kCpp, tree_sitter_cpp},
    {"java", kJava, tree_sitter_java},
}};

std::array<Language, kEntries.size()> load() {
  std::array<Language, kEntries.size()> loaded;
  for (std::size_t i = 0; i < kEntries.size(); ++i) {
    const Entry& entry = kEntries[i];
    const TSLanguage* grammar = entry.grammar();
    const std::uint32_t abi = ts_language_version(grammar);
    if (abi < TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION || abi > TREE_SITTER_LANGUAGE_VERSION) {
      throw std::runtime_error("the tree-sitter grammar of " + std::string(entry.name) + " is ABI " +
                               std::to_string(abi) + ", but the linked tree-sitter library reads ABI " +
                               std::to_string(TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION) + " to " +
                               std::to_string(TREE_SITTER_LANGUAGE_VERSION) +
                               ": pin a grammar release of a supported ABI in subprojects/grammars.lock");
    }
    const std::string_view query = tags_query_text(entry.name);
    if (query.empty()) {
      throw std::runtime_error("no tags query is embedded for " + std::string(entry.name) +
                               " (lib/src/code/meson.build names one per language)");
    }
    loaded[i] = Language{entry.name, entry.extensions, grammar, query};
  }
  return loaded;
}

}  // namespace

std::span<const Language> languages() {
  // Built on first use; a throw leaves it unbuilt, so each later call reports the error again.
  static const std::array<Language, kEntries.size()> registry = load();
  return registry;
}

const Language* language_by_name(std::string_view name) {
  for (const Language& language : languages()) {
    if (language.name == name) return &language;
  }
  return nullptr;
}

const Language* language_for_path(std::string_view path) {
  const std::size_t slash = path.find_last_of('/');
  const std::string_view file_name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::size_t dot = file_name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return nullptr;
  const std::string_view extension = file_name.substr(dot);
  for (const Language& language : languages()) {
    for (std::string_view candidate : language.extensions) {
      if (candidate == extension) return &language;
    }
  }
  return nullptr;
}

ParserPtr make_parser(const Language& language) {
  ParserPtr parser(ts_parser_new());
  if (!parser) throw std::runtime_error("tree-sitter could not create a parser");
  if (!ts_parser_set_language(parser.get(), language.grammar)) {
    throw std::runtime_error("tree-sitter refuses the grammar of " + std::string(language.name) + " (ABI " +
                             std::to_string(ts_language_version(language.grammar)) + ")");
  }
  return parser;
}

}  // namespace sluice::code
