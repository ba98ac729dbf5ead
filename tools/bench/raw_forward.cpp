// raw-forward: the ceiling the pipeline can reach. Reads a JSONL file, tokenises every record up
// front (not timed) and forms exactly the batches pipeline-run forms: windows of `sort-window`
// valid records in input order, each planned by plan_window() (sorted by length and cut at the
// padded-token budget when one is set, else cut every batch-size records in input order), rows
// padded to padded_length() of the longest. Then it warms up and times Model::embed alone,
// with pipeline-run's thread layout (model_thread_layout(): --workers threads take the batches
// in order, each call with its share of --threads intra-op threads).
//
//   raw-forward MODEL_DIR INPUT.jsonl [--batch-size N] [--max-batch-tokens N] [--sort-window N]
//               [--threads N] [--workers N] [--device cpu|cuda|cuda:N] [--text-field NAME] [--warmup N]
//               [--plan-only]
//
// --plan-only tokenises and plans but runs no model: the padding figures of a setting, in
// seconds (bench.py's padding sweep).
//
// Defaults are sluice::PipelineOptions' defaults; tools/bench/bench.py passes the values
// pipeline-run actually ran with. Prints one JSON line: records, real tokens, padded tokens,
// the sum of squared sequence lengths (for attention FLOPs), batches, seconds, rates.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <latch>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <sluice/error.hpp>
#include <sluice/model.hpp>
#include <sluice/omp_wait_policy.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/tokenizer.hpp>

#include "engine/batch_plan.hpp"

namespace {

struct Options {
  std::string model_dir;
  std::string input;
  std::string text_field = "text";
  std::size_t batch_size = sluice::PipelineOptions{}.batch_size;
  std::size_t max_batch_tokens = sluice::PipelineOptions{}.max_batch_tokens;
  std::size_t sort_window = sluice::PipelineOptions{}.sort_window;
  int threads = 0;
  int workers = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::size_t warmup = 2;
  bool plan_only = false;
};

struct Tokenised {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
};

// The pipeline rejects empty and whitespace-only texts (record_parser.cpp); they join no window.
bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; });
}

void usage() {
  std::fprintf(stderr,
               "usage: raw-forward MODEL_DIR INPUT.jsonl [--batch-size N] [--max-batch-tokens N] [--sort-window N]\n"
               "                   [--threads N] [--workers N] [--device cpu|cuda|cuda:N] [--precision fp32|bf16|int8]\n"
               "                   [--text-field NAME]\n"
               "                   [--warmup N] [--plan-only]\n");
}

}  // namespace

// OMP_WAIT_POLICY=PASSIVE before libgomp reads it (omp_wait_policy.hpp); the re-execution
// in main() is then a no-op kept for safety.
SLUICE_PASSIVE_OMP_WAIT_AT_LOAD();

int main(int argc, char** argv) {
  sluice::reexec_with_passive_omp_wait(argv);  // the same as pipeline-run, for a fair ratio
  if (argc < 3) {
    usage();
    return 2;
  }
  Options o;
  o.model_dir = argv[1];
  o.input = argv[2];
  for (int i = 3; i < argc; i += 2) {
    if (!std::strcmp(argv[i], "--plan-only")) {
      o.plan_only = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const std::string_view name = argv[i];
    const char* value = argv[i + 1];
    if (name == "--batch-size") o.batch_size = std::stoul(value);
    else if (name == "--max-batch-tokens") o.max_batch_tokens = std::stoul(value);
    else if (name == "--sort-window") o.sort_window = std::stoul(value);
    else if (name == "--threads") o.threads = std::stoi(value);
    else if (name == "--workers") o.workers = std::stoi(value);
    else if (name == "--device") o.device = value;
    else if (name == "--precision") o.precision = value;
    else if (name == "--text-field") o.text_field = value;
    else if (name == "--warmup") o.warmup = std::stoul(value);
    else {
      std::fprintf(stderr, "raw-forward: unknown option %s\n", argv[i]);
      usage();
      return 2;
    }
  }
  const std::size_t window = o.sort_window > 0 ? o.sort_window : o.batch_size;

  try {
    sluice::ModelOptions mo;
    mo.device = sluice::parse_device(o.device);
    if (!sluice::precision_from_name(o.precision, mo.precision)) {
      std::fprintf(stderr, "raw-forward: unknown precision %s (fp32, bf16, int8)\n", o.precision.c_str());
      return 2;
    }
    // As the pipeline lays out its threads (pipeline.cpp): a CPU model allows concurrent calls.
    const sluice::ThreadLayout layout =
        sluice::model_thread_layout(o.threads, o.workers, mo.device.kind == sluice::DeviceKind::cpu);
    mo.threads = layout.threads_per_worker;
    auto model = sluice::Model::load(o.model_dir, mo);
    const int workers = model->concurrent_embed() ? layout.workers : 1;
    auto tokenizer = sluice::Tokenizer::from_file(o.model_dir + "/tokenizer.json");
    // As the pipeline does: the model's limit, unless tokenizer.json truncates shorter.
    const std::size_t max_tokens = model->info().max_tokens;
    if (max_tokens > 0 && (!tokenizer->max_length() || *tokenizer->max_length() > max_tokens)) {
      tokenizer->set_max_length(max_tokens);
    }
    // The model's default prompt (config_sentence_transformers.json), which pipeline-run
    // prepends when no prompt is given.
    std::string prompt;
    for (const auto& [name, text] : model->info().prompts) {
      if (name == model->info().default_prompt_name) prompt = text;
    }

    std::vector<Tokenised> records;
    std::uint64_t truncated = 0;
    for (auto& r : sluice::RecordStream::from_jsonl(o.input)) {
      auto text = sluice::string_field(r, o.text_field);
      if (!text || text->empty() || is_blank(*text)) continue;
      sluice::Encoding enc = prompt.empty() ? tokenizer->encode(*text) : tokenizer->encode(prompt + *text);
      truncated += enc.truncated() ? 1 : 0;
      records.push_back(Tokenised{std::move(enc.ids), std::move(enc.type_ids)});
    }

    // The pipeline's batches: plan_window() over each window of valid records, in input order.
    std::vector<sluice::TokenBatch> batches;
    std::uint64_t real = 0, padded = 0, squares = 0;
    std::size_t widest = 1;
    const std::int64_t pad = tokenizer->pad_id();
    const sluice::BatchLimits limits{o.batch_size, o.max_batch_tokens};
    for (std::size_t w = 0; w < records.size(); w += window) {
      const std::size_t n = std::min(window, records.size() - w);
      std::vector<std::uint32_t> lengths(n);
      for (std::size_t i = 0; i < n; ++i) lengths[i] = static_cast<std::uint32_t>(records[w + i].ids.size());
      const sluice::WindowPlan plan = sluice::plan_window(lengths, limits);
      for (const sluice::PlannedBatch& pb : plan.batches) {
        sluice::TokenBatch tb;
        tb.batch = static_cast<std::uint32_t>(pb.rows);
        tb.seq_len = static_cast<std::uint32_t>(pb.seq_len);
        const std::size_t cells = pb.rows * pb.seq_len;
        tb.ids.assign(cells, pad);
        tb.attention_mask.assign(cells, 0);
        tb.type_ids.assign(cells, 0);
        for (std::size_t r = 0; r < pb.rows; ++r) {
          const Tokenised& t = records[w + plan.order[pb.first + r]];
          for (std::size_t c = 0; c < t.ids.size(); ++c) {
            tb.ids[r * pb.seq_len + c] = t.ids[c];
            tb.attention_mask[r * pb.seq_len + c] = 1;
            tb.type_ids[r * pb.seq_len + c] = c < t.type_ids.size() ? t.type_ids[c] : 0;
          }
          real += t.ids.size();
          squares += std::uint64_t{t.ids.size()} * t.ids.size();
        }
        padded += cells;
        widest = std::max(widest, pb.rows);
        batches.push_back(std::move(tb));
      }
    }
    const std::uint64_t docs = records.size();
    std::vector<Tokenised>().swap(records);
    if (o.plan_only) {
      fmt::print(
          "{{\"records\":{},\"tokens\":{},\"padded_tokens\":{},\"sum_sq_tokens\":{},\"truncated\":{},"
          "\"batches\":{},\"batch_size\":{},\"max_batch_tokens\":{},\"sort_window\":{}}}\n",
          docs, real, padded, squares, truncated, batches.size(), o.batch_size, o.max_batch_tokens, window);
      return 0;
    }

    // Each worker thread warms up (the first calls allocate, pick kernels and set the thread's
    // OpenMP count), then all take batches in order until none are left; the clock runs from
    // the moment every worker is warm to the moment the last call returns.
    std::atomic<std::size_t> next{0};
    std::latch warm(workers), go(1);
    auto work = [&] {
      std::vector<float> out(widest * model->info().dimensions);
      for (std::size_t i = 0; i < std::min(o.warmup, batches.size()); ++i) model->embed(batches[i], out);
      warm.count_down();
      go.wait();  // blocked, not spinning: the workers still warming up get the cores
      for (std::size_t i; (i = next.fetch_add(1)) < batches.size();) model->embed(batches[i], out);
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w) threads.emplace_back(work);
    warm.wait();
    const auto t0 = std::chrono::steady_clock::now();
    go.count_down();
    for (auto& t : threads) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(
        "{{\"records\":{},\"tokens\":{},\"padded_tokens\":{},\"sum_sq_tokens\":{},\"truncated\":{},"
        "\"batches\":{},\"batch_size\":{},\"max_batch_tokens\":{},\"sort_window\":{},\"threads\":{},"
        "\"workers\":{},\"seconds\":{:.4f},\"docs_per_s\":{:.2f},\"tokens_per_s\":{:.1f},\"padded_tokens_per_s\":{:.1f}}}\n",
        docs, real, padded, squares, truncated, batches.size(), o.batch_size, o.max_batch_tokens, window,
        workers * layout.threads_per_worker, workers, s, docs / s, real / s, padded / s);
    return 0;
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "raw-forward: %s\n", e.what());
    return 1;
  }
}
