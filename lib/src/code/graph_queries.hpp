#pragma once
// The graph query of each language (graph_queries.cpp): @call, @import and @inherit captures.
// Thread: any.

#include <string_view>

namespace sluice::code {

/// The query of the language named `language`, or an empty view for one without.
std::string_view graph_query_text(std::string_view language);

}  // namespace sluice::code
