#include "graph_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/file_roles.hpp>
#include <sluice/store.hpp>

#include "exit_codes.hpp"
#include "io/output_format.hpp"
#include "store/code_store.hpp"

namespace pipeline_run {

namespace {

std::string json_string(std::string_view s) {
  std::string out;
  sluice::append_json_string(out, s);
  return out;
}

// Text for XML character data and attribute values: markup escaped; tab, newline and carriage
// return as character references (an attribute keeps them then); other control characters,
// which XML 1.0 does not allow, and bytes that are not UTF-8, as U+FFFD.
std::string xml(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '&': out += "&amp;"; ++i; continue;
      case '<': out += "&lt;"; ++i; continue;
      case '>': out += "&gt;"; ++i; continue;
      case '"': out += "&quot;"; ++i; continue;
      case '\t': out += "&#9;"; ++i; continue;
      case '\n': out += "&#10;"; ++i; continue;
      case '\r': out += "&#13;"; ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const std::size_t bad = sluice::find_invalid_utf8(s.substr(i, 4 < s.size() - i ? 4 : s.size() - i));
    const std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c >= 0x80 && (bad < len || i + len > s.size())) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

// A DOT quoted string.
std::string dot(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out + "\"";
}

class Output {
 public:
  explicit Output(const std::string& path) : path_(path) {
    file_ = path == "-" ? stdout : std::fopen(path.c_str(), "wb");
    if (file_ == nullptr) {
      throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
    }
  }
  ~Output() {
    if (file_ != nullptr && file_ != stdout) std::fclose(file_);
  }
  void put(const std::string& s) {
    if (std::fwrite(s.data(), 1, s.size(), file_) != s.size()) fail();
  }
  void close() {
    if (std::fflush(file_) != 0) fail();
    if (file_ != stdout && std::fclose(file_) != 0) {
      file_ = nullptr;
      fail();
    }
    file_ = nullptr;
  }

 private:
  void fail() {
    throw sluice::Error(sluice::ErrorCode::io_error, fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
  }
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace

int run_graph(const GraphArgs& args) {
  auto store = sluice::store::CodeStore::open(args.store, true);
  if (!store->meta()) {
    fmt::print(stderr, "error: {} holds no code index: run pipeline-run index DIR -o {} first\n",
               sluice::redact_uri(args.store), sluice::redact_uri(args.store));
    return kExitUsage;
  }
  if (store->graph_stale()) {
    fmt::print(stderr, "note: files changed since the graph was last resolved (a run stopped before its end): the "
                       "metrics are those of the last complete run; run pipeline-run index again to update them\n");
  }
  if (!args.export_format.empty()) {
    // Never over the store: written to a temporary file beside the output, renamed at the end.
    if (args.output != "-") {
      std::vector<sluice::FileRole> roles = {{"export", args.output}};
      if (auto file = sluice::sqlite_store_path(args.store)) {
        roles.push_back({"store", *file});
        roles.push_back({"store's journal", *file + "-wal"});
        roles.push_back({"store's shared memory", *file + "-shm"});
      }
      sluice::check_distinct_files(roles);
    }
    const std::string temp = args.output == "-" ? "-" : args.output + ".partial";
    Output out(temp);
    const bool graphml = args.export_format == "graphml";
    if (graphml) {
      out.put("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n"
              "  <key id=\"path\" for=\"node\" attr.name=\"path\" attr.type=\"string\"/>\n"
              "  <key id=\"name\" for=\"node\" attr.name=\"name\" attr.type=\"string\"/>\n"
              "  <key id=\"kind\" for=\"node\" attr.name=\"kind\" attr.type=\"string\"/>\n"
              "  <key id=\"start_line\" for=\"node\" attr.name=\"start_line\" attr.type=\"int\"/>\n"
              "  <key id=\"end_line\" for=\"node\" attr.name=\"end_line\" attr.type=\"int\"/>\n"
              "  <key id=\"fan_in\" for=\"node\" attr.name=\"fan_in\" attr.type=\"int\"/>\n"
              "  <key id=\"fan_out\" for=\"node\" attr.name=\"fan_out\" attr.type=\"int\"/>\n"
              "  <key id=\"pagerank\" for=\"node\" attr.name=\"pagerank\" attr.type=\"double\"/>\n"
              "  <key id=\"edge_kind\" for=\"edge\" attr.name=\"kind\" attr.type=\"string\"/>\n"
              "  <graph id=\"code\" edgedefault=\"directed\">\n");
    } else {
      out.put("digraph code {\n");
    }
    store->each_node([&](const sluice::store::CodeStore::RankedChunk& c) {
      if (graphml) {
        out.put(fmt::format("    <node id=\"{}\"><data key=\"path\">{}</data><data key=\"name\">{}</data><data "
                            "key=\"kind\">{}</data><data key=\"start_line\">{}</data><data key=\"end_line\">{}</data>"
                            "<data key=\"fan_in\">{}</data><data key=\"fan_out\">{}</data><data "
                            "key=\"pagerank\">{:.9g}</data></node>\n",
                            xml(c.id), xml(c.path), xml(c.name), xml(c.kind), c.start_line, c.end_line, c.fan_in,
                            c.fan_out, c.pagerank));
      } else {
        out.put(fmt::format("  {} [label={}, path={}, kind={}, lines=\"{}-{}\", fan_in={}, fan_out={}, "
                            "pagerank=\"{:.9g}\"];\n",
                            dot(c.id), dot(c.name.empty() ? c.id : c.name), dot(c.path), dot(c.kind), c.start_line,
                            c.end_line, c.fan_in, c.fan_out, c.pagerank));
      }
    });
    std::uint64_t n = 0;
    store->each_edge([&](std::string_view source, std::string_view target, std::string_view kind) {
      if (graphml) {
        out.put(fmt::format("    <edge id=\"e{}\" source=\"{}\" target=\"{}\"><data key=\"edge_kind\">{}</data></edge>\n",
                            n++, xml(source), xml(target), xml(kind)));
      } else {
        out.put(fmt::format("  {} -> {} [kind={}];\n", dot(source), dot(target), dot(kind)));
      }
    });
    out.put(graphml ? "  </graph>\n</graphml>\n" : "}\n");
    out.close();
    if (temp != "-" && std::rename(temp.c_str(), args.output.c_str()) != 0) {
      throw sluice::Error(sluice::ErrorCode::io_error,
                          fmt::format("{}: cannot write: {}", args.output, std::strerror(errno)));
    }
    return kExitOk;
  }

  const bool table = args.format == "table" || (args.format == "auto" && isatty(STDOUT_FILENO));
  const auto top = store->top_chunks(args.top);
  if (table) {
    fmt::print("{:>4}  {:>9}  {:>6}  {:>7}  {}\n", "rank", "pagerank", "fan-in", "fan-out", "chunk");
    std::size_t rank = 0;
    for (const auto& c : top) {
      fmt::print("{:>4}  {:>9.6f}  {:>6}  {:>7}  {}:{}-{} {}\n", ++rank, c.pagerank, c.fan_in, c.fan_out, c.path,
                 c.start_line, c.end_line, c.name);
    }
  } else {
    std::size_t rank = 0;
    for (const auto& c : top) {
      fmt::print("{{\"rank\":{},\"id\":{},\"path\":{},\"start_line\":{},\"end_line\":{},\"name\":{},\"kind\":{},"
                 "\"fan_in\":{},\"fan_out\":{},\"pagerank\":{:.9g}}}\n",
                 ++rank, json_string(c.id), json_string(c.path), c.start_line, c.end_line, json_string(c.name),
                 json_string(c.kind), c.fan_in, c.fan_out, c.pagerank);
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace pipeline_run
