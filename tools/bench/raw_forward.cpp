// raw-forward: the ceiling the pipeline can reach. Reads a JSONL file, tokenises every record
// up front (not timed), forms the same batches the pipeline forms (batch-size records in input
// order, padded to the longest), warms up, then times Model::embed alone.
//
//   raw-forward MODEL_DIR INPUT.jsonl [--batch-size N] [--threads N] [--text-field NAME]
//
// Prints one JSON line: records, real tokens, padded tokens, seconds, docs/s, tokens/s.

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <sluice/model.hpp>
#include <sluice/omp_wait_policy.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/tokenizer.hpp>

int main(int argc, char** argv) {
  sluice::reexec_with_passive_omp_wait(argv);  // the same as pipeline-run, for a fair ratio
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: raw-forward MODEL_DIR INPUT.jsonl [--batch-size N] [--threads N] [--text-field NAME]\n");
    return 2;
  }
  std::string model_dir = argv[1], input = argv[2], field = "text";
  std::size_t batch_size = 32;
  int threads = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch-size"))
      batch_size = std::stoul(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--text-field"))
      field = argv[i + 1];
  }
  sluice::ModelOptions mo;
  mo.threads = threads;
  auto model = sluice::Model::load(model_dir, mo);
  auto tokenizer = sluice::Tokenizer::from_file(std::string(model_dir) + "/tokenizer.json");
  tokenizer->set_max_length(model->info().max_tokens);

  std::vector<std::vector<std::int32_t>> ids;
  for (auto& r : sluice::RecordStream::from_jsonl(input)) {
    auto text = sluice::string_field(r, field);
    if (!text || text->empty()) continue;
    ids.push_back(tokenizer->encode(*text).ids);
  }
  std::vector<sluice::TokenBatch> batches;
  std::uint64_t real = 0, padded = 0;
  for (std::size_t b = 0; b < ids.size(); b += batch_size) {
    std::size_t n = std::min(batch_size, ids.size() - b);
    std::size_t seq = 1;
    for (std::size_t i = 0; i < n; ++i) seq = std::max(seq, ids[b + i].size());
    sluice::TokenBatch tb;
    tb.batch = static_cast<std::uint32_t>(n);
    tb.seq_len = static_cast<std::uint32_t>(seq);
    tb.ids.assign(n * seq, tokenizer->pad_id());
    tb.attention_mask.assign(n * seq, 0);
    tb.type_ids.assign(n * seq, 0);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t c = 0; c < ids[b + i].size(); ++c) {
        tb.ids[i * seq + c] = ids[b + i][c];
        tb.attention_mask[i * seq + c] = 1;
      }
      real += ids[b + i].size();
    }
    padded += n * seq;
    batches.push_back(std::move(tb));
  }
  std::vector<float> out(batch_size * model->info().dimensions);
  // Warm-up: the first calls allocate and pick kernels.
  for (std::size_t i = 0; i < std::min<std::size_t>(2, batches.size()); ++i) model->embed(batches[i], out);
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& tb : batches) model->embed(tb, out);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(
      "{{\"records\":{},\"tokens\":{},\"padded_tokens\":{},\"seconds\":{:.3f},\"docs_per_s\":{:.1f},"
      "\"tokens_per_s\":{:.1f},\"padded_tokens_per_s\":{:.1f}}}\n",
      ids.size(), real, padded, s, ids.size() / s, real / s, padded / s);
  return 0;
}
