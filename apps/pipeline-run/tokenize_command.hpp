#pragma once
// `pipeline-run tokenize`: token ids per record, exactly as the Hugging Face tokenizer's
// encode() gives them with the tokenizer.json's own settings, and --stats, a dry run that says
// what embedding the input will cost.

#include <cstdint>
#include <filesystem>
#include <string>

namespace pipeline_run {

struct TokenizeArgs {
  std::string input;
  std::string output;                 // empty: no ids written (only with --stats)
  std::filesystem::path model;
  std::string text_field = "text";
  std::string output_field = "input_ids";
  std::uint64_t max_record_bytes = 16u << 20;
  bool stats = false;
  bool no_special_tokens = false;
};

/// Runs the command; returns the exit code (exit_codes.hpp). Throws sluice::Error for setup
/// errors (missing model folder, unwritable output).
int run_tokenize(const TokenizeArgs& args);

}  // namespace pipeline_run
