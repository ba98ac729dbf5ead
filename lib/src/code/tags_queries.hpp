#pragma once
// The tags query of each language: the grammar's queries/tags.scm (TypeScript's and TSX's
// followed by JavaScript's), embedded into the library when it is built (embed_queries.py writes
// the definition), so nothing is read from the source tree at run time. Thread: any.

#include <string_view>

namespace sluice::code {

/// The tags query of the language named `language` ("python", "tsx", ...), or an empty view
/// for a name the build did not embed. The text lives as long as the program.
std::string_view tags_query_text(std::string_view language);

}  // namespace sluice::code
