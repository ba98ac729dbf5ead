// What each language's code names, for the graph of the code index (docs/code-index.md, "The
// graph"): tree-sitter queries of our own, as the grammars' tags queries name no imports or
// inheritance and, for C and C++, no calls. Captures: @call (the called name), @import (the
// imported module or file, as written), @inherit (a base class, an implemented interface or
// trait). Each query is compiled against its grammar by the unit tests (code_languages_test).

#include "code/graph_queries.hpp"

#include <array>
#include <utility>

namespace sluice::code {

namespace {

constexpr std::string_view kPython = R"scm(
(call function: (identifier) @call)
(call function: (attribute attribute: (identifier) @call))
(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (dotted_name) @import)
(import_from_statement module_name: (relative_import) @import)
(class_definition superclasses: (argument_list (identifier) @inherit))
(class_definition superclasses: (argument_list (attribute attribute: (identifier) @inherit)))
)scm";

constexpr std::string_view kJavaScript = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (member_expression property: (property_identifier) @call))
(new_expression constructor: (identifier) @call)
(new_expression constructor: (member_expression property: (property_identifier) @call))
(import_statement source: (string (string_fragment) @import))
(class_heritage (identifier) @inherit)
(class_heritage (member_expression property: (property_identifier) @inherit))
)scm";

constexpr std::string_view kTypeScript = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (member_expression property: (property_identifier) @call))
(new_expression constructor: (identifier) @call)
(new_expression constructor: (member_expression property: (property_identifier) @call))
(import_statement source: (string (string_fragment) @import))
(extends_clause value: (identifier) @inherit)
(extends_clause value: (member_expression property: (property_identifier) @inherit))
(implements_clause (type_identifier) @inherit)
(extends_type_clause type: (type_identifier) @inherit)
)scm";

constexpr std::string_view kGo = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (selector_expression field: (field_identifier) @call))
(import_spec path: (interpreted_string_literal) @import)
)scm";

constexpr std::string_view kRust = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (field_expression field: (field_identifier) @call))
(call_expression function: (scoped_identifier name: (identifier) @call))
(macro_invocation macro: (identifier) @call)
(use_declaration argument: (_) @import)
(impl_item trait: (type_identifier) @inherit)
)scm";

constexpr std::string_view kC = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (field_expression field: (field_identifier) @call))
(preproc_include path: (string_literal) @import)
(preproc_include path: (system_lib_string) @import)
)scm";

constexpr std::string_view kCpp = R"scm(
(call_expression function: (identifier) @call)
(call_expression function: (field_expression field: (field_identifier) @call))
(call_expression function: (qualified_identifier name: (identifier) @call))
(preproc_include path: (string_literal) @import)
(preproc_include path: (system_lib_string) @import)
(base_class_clause (type_identifier) @inherit)
(base_class_clause (qualified_identifier name: (type_identifier) @inherit))
)scm";

constexpr std::string_view kJava = R"scm(
(method_invocation name: (identifier) @call)
(object_creation_expression type: (type_identifier) @call)
(import_declaration (scoped_identifier) @import)
(superclass (type_identifier) @inherit)
(super_interfaces (type_list (type_identifier) @inherit))
)scm";

constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kQueries = {{
    {"python", kPython},
    {"javascript", kJavaScript},
    {"typescript", kTypeScript},
    {"tsx", kTypeScript},
    {"go", kGo},
    {"rust", kRust},
    {"c", kC},
    {"cpp", kCpp},
    {"java", kJava},
}};

}  // namespace

std::string_view graph_query_text(std::string_view language) {
  for (const auto& [name, query] : kQueries) {
    if (name == language) return query;
  }
  return {};
}

}  // namespace sluice::code
