#pragma once
// `pipeline-run search`: the rows of a store nearest to a query, by cosine similarity, with
// the query embedded by the model that made the store's vectors.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "remote_args.hpp"

namespace pipeline_run {

struct SearchArgs {
  std::string store;                  // sqlite:PATH, postgresql://...
  std::string table = "embeddings";
  std::vector<std::string> queries;   // --query, each
  std::string queries_file;           // --queries FILE.jsonl
  std::size_t k = 10;
  std::filesystem::path model;        // empty: the folder the store records
  std::string text_field = "text";
  std::string prompt;
  std::string prompt_name;
  std::string format = "auto";        // auto (a table on a terminal), json, table
  bool approximate = false;           // HNSW index instead of the exact scan
  std::string index;                  // its file; default beside a SQLite store
  std::size_t ef = 100;               // candidates kept while searching
  RemoteArgs remote;                  // a store made with embed --remote: queries through the API
};

/// Runs the command; returns the exit code (exit_codes.hpp).
int run_search(const SearchArgs& args);

}  // namespace pipeline_run
