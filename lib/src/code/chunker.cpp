// The syntax-aware chunker (chunker.hpp). Definitions come from each language's tags query
// (@definition.* with its @name); comments, decorators and attributes right before a
// definition belong to it; chunks are made of whole lines, except where one line alone is over
// the budget.

#include "code/chunker.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>

#include <tree_sitter/api.h>

#include "code/graph_queries.hpp"
#include "code/languages.hpp"

namespace sluice::code {

namespace {

struct Def {
  std::string kind;
  std::string name;  // qualified
  std::uint32_t first = 0, last = 0;  // 0-based lines, inclusive, comments and decorators included
  std::uint32_t body_line = 0;        // line where its body starts (signature ends there)
  bool has_body = false;
  bool body_braced = false;  // the body opens with "{" on the signature's line (else: Python)
  std::vector<std::uint32_t> statements;  // first lines (0-based) of its body's statements
  std::vector<std::size_t> children;
};

// Definition kinds that are units; others (constants, macros) are code between definitions.
std::optional<std::string> unit_kind(std::string_view capture, std::string_view node_type) {
  if (capture == "function") return std::string("function");
  if (capture == "method") return std::string("method");
  if (capture == "interface") return std::string("interface");
  if (capture == "module") return std::string("module");
  if (capture == "class" || capture == "type") {
    if (node_type.find("struct") != std::string_view::npos) return std::string("struct");
    if (node_type.find("impl") != std::string_view::npos) return std::string("impl");
    if (node_type.find("enum") != std::string_view::npos) return std::string("enum");
    if (node_type.find("union") != std::string_view::npos) return std::string("struct");
    if (node_type.find("trait") != std::string_view::npos) return std::string("interface");
    if (node_type.find("interface") != std::string_view::npos) return std::string("interface");
    if (capture == "type") return std::string("type");  // Go's type_spec, C's typedefs
    return std::string("class");
  }
  return std::nullopt;
}

// Nodes that wrap a definition and belong to it: decorators, export, templates.
bool is_wrapper(std::string_view type) {
  return type == "decorated_definition" || type == "export_statement" || type == "template_declaration" ||
         type == "type_declaration";  // Go: "type X struct" around its type_spec
}

// Nodes right before a definition that belong to it.
bool is_attached(std::string_view type) {
  return type.find("comment") != std::string_view::npos || type == "attribute_item" || type == "decorator" ||
         type == "annotation" || type == "marker_annotation";
}

struct Lines {
  explicit Lines(std::string_view text) : text(text) {
    starts.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n' && i + 1 < text.size()) starts.push_back(i + 1);
    }
  }
  std::size_t count() const { return text.empty() ? 0 : starts.size(); }
  std::size_t begin(std::size_t line) const { return starts[line]; }
  std::size_t end(std::size_t line) const { return line + 1 < starts.size() ? starts[line + 1] : text.size(); }
  std::string_view line(std::size_t l) const { return text.substr(begin(l), end(l) - begin(l)); }
  std::string_view range(std::size_t first, std::size_t last) const {
    return text.substr(begin(first), end(last) - begin(first));
  }
  bool blank(std::size_t l) const { return line(l).find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }
  std::string_view text;
  std::vector<std::size_t> starts;
};

std::string module_name(std::string_view path) {
  std::string m(path);
  const auto slash = m.rfind('/');
  const auto dot = m.rfind('.');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) m.resize(dot);
  std::replace(m.begin(), m.end(), '/', '.');
  return m;
}

struct QueryDeleter {
  void operator()(TSQuery* q) const noexcept { ts_query_delete(q); }
};
struct CursorDeleter {
  void operator()(TSQueryCursor* c) const noexcept { ts_query_cursor_delete(c); }
};
struct TreeDeleter {
  void operator()(TSTree* t) const noexcept { ts_tree_delete(t); }
};

}  // namespace

struct Chunker::Impl {
  TokenCounter count;
  std::uint32_t budget;
  struct Compiled {
    ParserPtr parser;
    std::unique_ptr<TSQuery, QueryDeleter> query;
    std::unique_ptr<TSQuery, QueryDeleter> graph;  // graph_queries.hpp; null for none
  };
  std::map<std::string_view, Compiled> compiled;

  Compiled& for_language(const Language& lang) {
    auto it = compiled.find(lang.name);
    if (it != compiled.end()) return it->second;
    Compiled c;
    c.parser = make_parser(lang);
    std::uint32_t error_offset = 0;
    TSQueryError error = TSQueryErrorNone;
    c.query.reset(ts_query_new(lang.grammar, lang.tags_query.data(), static_cast<std::uint32_t>(lang.tags_query.size()),
                               &error_offset, &error));
    if (!c.query) {
      throw std::runtime_error("the tags query of " + std::string(lang.name) + " does not compile (error " +
                               std::to_string(static_cast<int>(error)) + " at byte " + std::to_string(error_offset) +
                               ")");
    }
    if (const std::string_view g = graph_query_text(lang.name); !g.empty()) {
      c.graph.reset(ts_query_new(lang.grammar, g.data(), static_cast<std::uint32_t>(g.size()), &error_offset, &error));
      if (!c.graph) {
        throw std::runtime_error("the graph query of " + std::string(lang.name) + " does not compile (error " +
                                 std::to_string(static_cast<int>(error)) + " at byte " + std::to_string(error_offset) +
                                 ")");
      }
    }
    return compiled.emplace(lang.name, std::move(c)).first->second;
  }

  // The chunks of one file in progress.
  struct Out {
    const Lines* lines;
    std::vector<CodeChunk>* chunks;
  };

  std::uint32_t tokens(std::string_view s) const { return s.empty() ? 0 : count(s); }

  void push(Out& o, std::string kind, std::string name, std::size_t first, std::size_t last, std::string content,
            std::uint32_t n) {
    CodeChunk c;
    c.kind = std::move(kind);
    c.name = std::move(name);
    c.start_line = static_cast<std::uint32_t>(first + 1);
    c.end_line = static_cast<std::uint32_t>(last + 1);
    c.start_byte = o.lines->begin(first);
    c.end_byte = o.lines->end(last);
    c.content = std::move(content);
    c.tokens = n;
    o.chunks->push_back(std::move(c));
  }

  // One line over the budget: pieces of whole UTF-8 characters, each within the budget, cut
  // where the count says so (a binary search over the cut point).
  void split_line(Out& o, const std::string& kind, const std::string& name, std::size_t line) {
    std::string_view rest = o.lines->line(line);
    std::uint64_t at = o.lines->begin(line);
    while (!rest.empty()) {
      // The cut is searched among character boundaries only (a cut inside a character would
      // neither tokenise nor read).
      std::vector<std::size_t> ends;  // byte length of each prefix that ends a character
      for (std::size_t i = 1; i <= rest.size(); ++i) {
        if (i == rest.size() || (static_cast<unsigned char>(rest[i]) & 0xC0) != 0x80) ends.push_back(i);
      }
      std::size_t lo = 0, hi = ends.size(), best = 0;  // ends[k] for k < lo fit; k >= hi do not
      while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (tokens(rest.substr(0, ends[mid])) <= budget) {
          best = ends[mid];
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      if (best == 0) best = ends.front();  // one character over the budget: it goes alone
      CodeChunk c;
      c.kind = kind;
      c.name = name;
      c.start_line = c.end_line = static_cast<std::uint32_t>(line + 1);
      c.start_byte = at;
      c.end_byte = at + best;
      c.content.assign(rest.substr(0, best));
      c.tokens = tokens(c.content);
      o.chunks->push_back(std::move(c));
      at += best;
      rest.remove_prefix(best);
    }
  }

  // Lines [first, last] into chunks within the budget, cut at `cuts` (lines a chunk may start
  // at, 0-based: statement starts; blank lines too) where possible, else at any line;
  // blank-only pieces are not chunks.
  void split_lines(Out& o, const std::string& kind, const std::string& name, std::size_t first, std::size_t last,
                   const std::vector<std::uint32_t>& cuts) {
    std::size_t at = first;
    while (at <= last) {
      while (at <= last && o.lines->blank(at)) ++at;
      if (at > last) return;
      // Grow line by line while the lines' own counts add up to the budget (each line counted
      // once: linear in the region), remembering the last allowed cut; the piece itself is
      // counted after, and shrunk where a tokenizer counts a joined text otherwise.
      std::size_t end = at;  // inclusive
      std::size_t best_cut = 0;
      bool have_cut = false;
      const std::uint32_t first_tokens = tokens(o.lines->line(at));
      if (first_tokens > budget) {
        split_line(o, kind, name, at);
        at = at + 1;
        continue;
      }
      std::uint64_t sum = first_tokens;
      while (end + 1 <= last) {
        const std::uint32_t next = o.lines->blank(end + 1) ? 0 : tokens(o.lines->line(end + 1));
        if (sum + next > budget) break;
        sum += next;
        ++end;
        if (std::binary_search(cuts.begin(), cuts.end(), static_cast<std::uint32_t>(end + 1)) ||
            (end + 1 <= last && o.lines->blank(end + 1))) {
          best_cut = end;
          have_cut = true;
        }
      }
      if (end < last && have_cut && best_cut >= at) end = best_cut;
      std::size_t trimmed = end;
      while (trimmed > at && o.lines->blank(trimmed)) --trimmed;
      std::uint32_t n = tokens(o.lines->range(at, trimmed));
      bool shrunk = false;
      while (n > budget && trimmed > at) {
        --trimmed;
        while (trimmed > at && o.lines->blank(trimmed)) --trimmed;
        n = tokens(o.lines->range(at, trimmed));
        shrunk = true;
      }
      if (shrunk) end = trimmed;  // the lines taken off start the next piece
      push(o, kind, name, at, trimmed, std::string(o.lines->range(at, trimmed)), n);
      at = end + 1;
    }
  }

  void emit_def(Out& o, std::vector<Def>& defs, std::size_t i) {
    const Def& d = defs[i];
    const std::string_view text = o.lines->range(d.first, d.last);
    const std::uint32_t n = tokens(text);
    if (n <= budget) {
      push(o, d.kind, d.name, d.first, d.last, std::string(text), n);
      return;
    }
    if (!d.children.empty()) {
      // The skeleton: every line but the children's bodies (their signatures stay).
      std::string skeleton;
      std::size_t line = d.first;
      for (std::size_t c : d.children) {
        const Def& child = defs[c];
        // The signature: through the line the body opens on ("{"), or up to the body's first
        // line (Python's block starts at its first statement).
        std::size_t keep_to = child.last;
        if (child.has_body) {
          keep_to = child.body_braced || child.body_line == 0 ? child.body_line : child.body_line - 1;
          keep_to = std::max<std::size_t>(keep_to, child.first);
        }
        if (child.first > line) skeleton += o.lines->range(line, child.first - 1);
        skeleton += o.lines->range(child.first, std::min<std::size_t>(keep_to, child.last));
        line = child.last + 1;
      }
      if (line <= d.last) skeleton += o.lines->range(line, d.last);
      const std::uint32_t sn = tokens(skeleton);
      if (sn <= budget) {
        push(o, "skeleton", d.name, d.first, d.last, std::move(skeleton), sn);
        for (std::size_t c : d.children) emit_def(o, defs, c);
        return;
      }
      // Too big even as an outline: the lines outside the children as parts, in file order
      // with the children.
      std::size_t from = d.first;
      for (std::size_t c : d.children) {
        if (defs[c].first > from) split_lines(o, "part", d.name, from, defs[c].first - 1, {});
        emit_def(o, defs, c);
        from = defs[c].last + 1;
      }
      if (from <= d.last) split_lines(o, "part", d.name, from, d.last, {});
      return;
    }
    // A function over the budget: parts cut at its statements.
    split_lines(o, "part", d.name, d.first, d.last, d.statements);
  }

  void emit_region(Out& o, std::vector<Def>& defs, const std::vector<std::size_t>& top, std::size_t first,
                   std::size_t last, const std::vector<std::uint32_t>& cuts) {
    std::size_t at = first;
    for (std::size_t i : top) {
      if (defs[i].first > at) split_lines(o, "code", "", at, defs[i].first - 1, cuts);
      emit_def(o, defs, i);
      at = defs[i].last + 1;
    }
    if (at <= last && last != static_cast<std::size_t>(-1)) split_lines(o, "code", "", at, last, cuts);
  }

  ChunkedFile chunk(std::string_view path, std::string_view text, const Language* lang) {
    ChunkedFile out;
    Lines lines(text);
    Out o{&lines, &out.chunks};
    if (lines.count() == 0) {
      out.language = lang ? std::string(lang->name) : "text";
      return out;
    }
    const std::size_t last_line = lines.count() - 1;
    if (lang == nullptr) lang = language_for_path(path);
    if (lang == nullptr) {
      const bool markdown = path.ends_with(".md") || path.ends_with(".markdown");
      out.language = markdown ? "markdown" : "text";
      std::vector<std::uint32_t> cuts;
      if (markdown) {
        // Sections start at headings: each section alone where it fits.
        std::vector<std::size_t> heads;
        bool fence = false;
        for (std::size_t l = 0; l <= last_line; ++l) {
          const std::string_view s = lines.line(l);
          if (s.starts_with("```") || s.starts_with("~~~")) fence = !fence;
          if (!fence && s.starts_with("#")) heads.push_back(l);
        }
        std::size_t from = 0;
        heads.push_back(last_line + 1);
        for (std::size_t h : heads) {
          if (h > from) split_lines(o, "section", "", from, h - 1, cuts);
          from = h;
        }
      } else {
        split_lines(o, "lines", "", 0, last_line, cuts);
      }
      return out;
    }
    out.language = std::string(lang->name);
    Compiled& c = for_language(*lang);
    std::unique_ptr<TSTree, TreeDeleter> tree(
        ts_parser_parse_string(c.parser.get(), nullptr, text.data(), static_cast<std::uint32_t>(text.size())));
    if (!tree) throw std::runtime_error("tree-sitter could not parse the file");
    const TSNode root = ts_tree_root_node(tree.get());
    if (ts_node_has_error(root)) {
      out.partial = true;
      out.first_error_line = first_error_line(root) + 1;
    }

    // Definitions, outermost first.
    std::vector<Def> defs;
    std::map<std::pair<std::uint32_t, std::uint32_t>, bool> seen;
    std::unique_ptr<TSQueryCursor, CursorDeleter> cursor(ts_query_cursor_new());
    ts_query_cursor_exec(cursor.get(), c.query.get(), root);
    TSQueryMatch match;
    while (ts_query_cursor_next_match(cursor.get(), &match)) {
      std::optional<TSNode> def, name;
      std::string_view capture_kind;
      for (std::uint16_t k = 0; k < match.capture_count; ++k) {
        std::uint32_t len = 0;
        const char* cname = ts_query_capture_name_for_id(c.query.get(), match.captures[k].index, &len);
        const std::string_view cn(cname, len);
        if (cn.starts_with("definition.")) {
          def = match.captures[k].node;
          capture_kind = cn.substr(11);
        } else if (cn == "name") {
          name = match.captures[k].node;
        }
      }
      if (!def || !name) continue;
      auto kind = unit_kind(capture_kind, ts_node_type(*def));
      if (!kind) continue;
      // C and C++ name the declarator (name and parameters): the definition is above it.
      if (std::string_view(ts_node_type(*def)).find("declarator") != std::string_view::npos) {
        TSNode up = *def;
        for (TSNode p = ts_node_parent(up);
             !ts_node_is_null(p) && std::string_view(ts_node_type(p)).find("declarator") != std::string_view::npos;
             p = ts_node_parent(p)) {
          up = p;
        }
        const TSNode p = ts_node_parent(up);
        const std::string_view pt = ts_node_is_null(p) ? std::string_view() : ts_node_type(p);
        if (pt == "function_definition" || pt == "declaration" || pt == "field_declaration") def = p;
      }
      TSNode node = *def;
      // The node that carries decorators, export, template<>; then comments and attributes.
      for (TSNode p = ts_node_parent(node); !ts_node_is_null(p) && is_wrapper(ts_node_type(p)); p = ts_node_parent(p)) {
        node = p;
      }
      std::uint32_t first = ts_node_start_point(node).row;
      for (TSNode prev = ts_node_prev_named_sibling(node); !ts_node_is_null(prev) && is_attached(ts_node_type(prev));
           prev = ts_node_prev_named_sibling(prev)) {
        const std::uint32_t prev_end = ts_node_end_point(prev).row;
        if (prev_end + 1 < first) break;  // a blank line between: not attached
        // A comment after code on its line belongs to that code, not to what follows.
        const std::size_t at = ts_node_start_byte(prev);
        const std::size_t line_start = at == 0 ? 0 : text.rfind('\n', at - 1) + 1;  // npos + 1 == 0
        if (text.substr(line_start, at - line_start).find_first_not_of(" \t\r\f\v") != std::string_view::npos) break;
        first = ts_node_start_point(prev).row;
      }
      TSPoint end_point = ts_node_end_point(node);
      std::uint32_t last = end_point.row;
      if (end_point.column == 0 && last > first) --last;  // ends at a line's start
      if (!seen.emplace(std::make_pair(first, last), true).second) continue;
      Def d;
      d.kind = std::move(*kind);
      const std::uint32_t nb = ts_node_start_byte(*name), ne = ts_node_end_byte(*name);
      d.name.assign(text.substr(nb, ne - nb));
      d.first = first;
      d.last = std::min<std::uint32_t>(last, static_cast<std::uint32_t>(last_line));
      TSNode body = ts_node_child_by_field_name(*def, "body", 4);
      if (!ts_node_is_null(body)) {
        d.has_body = true;
        d.body_line = ts_node_start_point(body).row;
        const std::uint32_t open = ts_node_start_byte(body);
        d.body_braced = open < text.size() && text[open] == '{';
        const std::uint32_t n = ts_node_named_child_count(body);
        for (std::uint32_t k = 0; k < n; ++k) {
          d.statements.push_back(ts_node_start_point(ts_node_named_child(body, k)).row);
        }
        std::sort(d.statements.begin(), d.statements.end());
      }
      defs.push_back(std::move(d));
    }
    std::sort(defs.begin(), defs.end(), [](const Def& a, const Def& b) {
      return a.first != b.first ? a.first < b.first : a.last > b.last;
    });
    // Nesting by lines; a definition that starts on a line its previous sibling ends on is
    // part of that sibling (chunks are whole lines).
    std::vector<std::size_t> top, stack;
    std::vector<bool> dropped(defs.size(), false);
    for (std::size_t i = 0; i < defs.size(); ++i) {
      while (!stack.empty() && defs[stack.back()].last < defs[i].first) stack.pop_back();
      std::vector<std::size_t>& siblings = stack.empty() ? top : defs[stack.back()].children;
      if (!stack.empty() && defs[i].last > defs[stack.back()].last) {
        dropped[i] = true;  // overlaps its container's end: part of it
        continue;
      }
      if (!siblings.empty() && defs[siblings.back()].last >= defs[i].first) {
        dropped[i] = true;
        continue;
      }
      siblings.push_back(i);
      stack.push_back(i);
    }
    // Qualified names: the module, then the enclosing definitions.
    const std::string module = module_name(path);
    // A function directly inside a class, struct, impl or interface is a method.
    auto name_all = [&](auto&& self, const std::vector<std::size_t>& level, const std::string& prefix,
                        const std::string& parent_kind) -> void {
      const bool in_type = parent_kind == "class" || parent_kind == "struct" || parent_kind == "impl" ||
                           parent_kind == "interface" || parent_kind == "enum";
      for (std::size_t i : level) {
        defs[i].name = prefix + "." + defs[i].name;
        if (in_type && defs[i].kind == "function") defs[i].kind = "method";
        self(self, defs[i].children, defs[i].name, defs[i].kind);
      }
    };
    name_all(name_all, top, module, "");
    // Top-level statements are the cut points between definitions.
    std::vector<std::uint32_t> cuts;
    const std::uint32_t n = ts_node_named_child_count(root);
    for (std::uint32_t k = 0; k < n; ++k) cuts.push_back(ts_node_start_point(ts_node_named_child(root, k)).row);
    std::sort(cuts.begin(), cuts.end());
    emit_region(o, defs, top, 0, last_line, cuts);
    if (c.graph) collect_references(c.graph.get(), root, text, out.references);
    return out;
  }

  // What the file names (graph_queries.hpp), in the order the query finds them.
  static void collect_references(const TSQuery* query, TSNode root, std::string_view text,
                                 std::vector<CodeReference>& refs) {
    std::unique_ptr<TSQueryCursor, CursorDeleter> cursor(ts_query_cursor_new());
    ts_query_cursor_exec(cursor.get(), query, root);
    TSQueryMatch match;
    while (ts_query_cursor_next_match(cursor.get(), &match)) {
      for (std::uint16_t k = 0; k < match.capture_count; ++k) {
        std::uint32_t len = 0;
        const char* cname = ts_query_capture_name_for_id(query, match.captures[k].index, &len);
        const std::string_view cn(cname, len);
        const TSNode node = match.captures[k].node;
        const std::uint32_t b = ts_node_start_byte(node), e = ts_node_end_byte(node);
        if (e <= b || e > text.size()) continue;
        std::string name;
        // Whitespace runs as one space; the quotes of a path or a <header> dropped.
        for (char ch : text.substr(b, e - b)) {
          if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
            if (!name.empty() && name.back() != ' ') name.push_back(' ');
          } else {
            name.push_back(ch);
          }
        }
        if (name.size() >= 2 && ((name.front() == '"' && name.back() == '"') ||
                                 (name.front() == '<' && name.back() == '>') ||
                                 (name.front() == '\'' && name.back() == '\''))) {
          name = name.substr(1, name.size() - 2);
        }
        if (name.empty() || name.size() > 512) continue;
        const std::string_view kind = cn == "call" ? "calls" : cn == "import" ? "imports" : "inherits";
        // Python's `from pkg import util` may import the module pkg.util: named too.
        const TSNode parent = ts_node_parent(node);
        if (cn == "import" && !ts_node_is_null(parent) &&
            std::string_view(ts_node_type(parent)) == "import_from_statement" &&
            ts_node_eq(ts_node_child_by_field_name(parent, "module_name", 11), node)) {
          const std::uint32_t n = ts_node_child_count(parent);
          for (std::uint32_t i = 0; i < n; ++i) {
            const char* field = ts_node_field_name_for_child(parent, i);
            if (field == nullptr || std::string_view(field) != "name") continue;
            TSNode item = ts_node_child(parent, i);
            if (std::string_view(ts_node_type(item)) == "aliased_import") {
              item = ts_node_child_by_field_name(item, "name", 4);
            }
            if (ts_node_is_null(item) || std::string_view(ts_node_type(item)) != "dotted_name") continue;
            const std::uint32_t ib = ts_node_start_byte(item), ie = ts_node_end_byte(item);
            if (ie <= ib || ie > text.size()) continue;
            std::string full = name;
            if (!full.ends_with(".")) full += ".";
            full += text.substr(ib, ie - ib);
            refs.push_back(CodeReference{"imports", std::move(full), b});
          }
        }
        refs.push_back(CodeReference{std::string(kind), std::move(name), b});
      }
    }
  }

  static std::uint32_t first_error_line(TSNode node) {
    // The first ERROR or MISSING node in the file's order.
    if (ts_node_is_missing(node) || std::string_view(ts_node_type(node)) == "ERROR") {
      return ts_node_start_point(node).row;
    }
    const std::uint32_t n = ts_node_child_count(node);
    for (std::uint32_t k = 0; k < n; ++k) {
      TSNode child = ts_node_child(node, k);
      if (ts_node_has_error(child)) return first_error_line(child);
    }
    return ts_node_start_point(node).row;
  }
};

Chunker::Chunker(TokenCounter count, std::uint32_t budget) : impl_(std::make_unique<Impl>()) {
  impl_->count = std::move(count);
  impl_->budget = std::max<std::uint32_t>(budget, 1);
}

Chunker::~Chunker() = default;

ChunkedFile Chunker::chunk(std::string_view path, std::string_view text, const Language* language) {
  return impl_->chunk(path, text, language);
}

}  // namespace sluice::code
