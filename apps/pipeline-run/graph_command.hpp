#pragma once
// `pipeline-run graph STORE`: the code index's most central chunks, or the whole graph as DOT
// or GraphML (docs/code-index.md, "The graph").

#include <cstddef>
#include <string>

namespace pipeline_run {

struct GraphArgs {
  std::string store;
  std::size_t top = 20;
  std::string format = "auto";  // auto, table, json
  std::string export_format;    // "", dot, graphml
  std::string output = "-";
};

int run_graph(const GraphArgs& args);

}  // namespace pipeline_run
