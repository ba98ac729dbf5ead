#pragma once
// Chunking a source file by its syntax for the code index (docs/code-index.md): definitions
// (functions, methods, classes, structs, impls, interfaces, with the comments and decorators
// attached to them) are the units; one that fits the token budget is one chunk of its own; a
// class that does not fit is a skeleton chunk (its header, fields and method signatures) plus
// its methods as chunks of their own; a function that does not fit is split at statement
// boundaries; a single line too long for the budget is split by tokens. Code between
// definitions (imports, top-level statements) forms chunks of its own, consecutive pieces
// together up to the budget. Files of no known language are chunked by Markdown headings (.md)
// or by lines. Nothing is dropped: every non-blank line of the file is in at least one chunk
// (the skeleton repeats method signatures; nothing else is repeated). A file with syntax errors
// is still chunked (what the parser recovers by syntax, the rest by lines) and marked partial
// with the first error's line.
// Thread: a Chunker is used by one thread at a time (it owns a tree-sitter parser).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::code {

struct Language;

/// One chunk of a file.
struct CodeChunk {
  /// "function", "method", "class", "struct", "enum", "interface", "module", "type" (a
  /// definition; "impl" where a grammar's query names one); "skeleton" (the outline of a
  /// definition holding others, when it did not fit); "part" (a piece of a definition
  /// split at statements or tokens); "code" (between definitions); "section" (Markdown);
  /// "lines" (a file of no known syntax, or what a parser could not read).
  std::string kind;
  /// Qualified name, "module.Class.method" style: the file's module (its path without the
  /// extension, "/" as "."), then the enclosing definitions; empty for code between definitions.
  std::string name;
  std::uint32_t start_line = 0;  ///< 1-based, inclusive
  std::uint32_t end_line = 0;    ///< 1-based, inclusive
  std::uint64_t start_byte = 0;  ///< of the first byte of the chunk's range in the file
  std::uint64_t end_byte = 0;    ///< one past the last
  /// The text to embed: the file's bytes of the range, except for a skeleton (method bodies
  /// left out) and for a part split inside a line.
  std::string content;
  std::uint32_t tokens = 0;  ///< of `content` as the counter counts them
};

/// Something a file names: a call, an import or a base (graph_queries.hpp).
struct CodeReference {
  std::string kind;  ///< "calls", "imports", "inherits"
  std::string name;  ///< the called or inherited name; the module or file as written (no quotes)
  std::uint64_t byte = 0;  ///< where in the file
};

struct ChunkedFile {
  std::vector<CodeChunk> chunks;  ///< in file order (by start byte, then a skeleton first)
  /// What the file's code names, for the graph (empty for files of no known language).
  std::vector<CodeReference> references;
  bool partial = false;           ///< the parser found syntax errors
  std::uint32_t first_error_line = 0;
  std::string language;           ///< the language's name, "markdown" or "text"
};

/// Counts the tokens of a text as the model will see it (its tokenizer, no special tokens).
using TokenCounter = std::function<std::uint32_t(std::string_view)>;

class Chunker {
 public:
  /// `budget`: the most tokens a chunk may have (its content as counted by `count`).
  Chunker(TokenCounter count, std::uint32_t budget);
  ~Chunker();
  Chunker(const Chunker&) = delete;
  Chunker& operator=(const Chunker&) = delete;

  /// Chunks `text` (valid UTF-8), the file at `path` (relative, "/" separators; it names the
  /// module and picks the language by extension when `language` is null).
  ChunkedFile chunk(std::string_view path, std::string_view text, const Language* language = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::code
