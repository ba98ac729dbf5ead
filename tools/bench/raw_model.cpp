// raw-model: the encoder's forward speed alone, on synthetic full batches (no tokenizer, no
// padding): BATCH rows of SEQ token ids drawn from the vocabulary with a fixed seed.
//
//   raw-model MODEL_DIR [--batch N] [--seq N] [--threads N] [--iterations N] [--device cpu|cuda|cuda:N]
//
// Defaults: 32 x 128 tokens, every core, 10 timed batches after 2 warm-up batches.
// Prints one JSON line: batch, seq, threads, iterations, seconds, tokens/s, ms/batch.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/model.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: raw-model MODEL_DIR [--batch N] [--seq N] [--threads N] [--iterations N] "
                 "[--device cpu|cuda|cuda:N]\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::uint32_t batch = 32, seq = 128;
  int threads = 0, iterations = 10;
  std::string device = "cpu";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = static_cast<std::uint32_t>(std::stoul(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seq")) seq = static_cast<std::uint32_t>(std::stoul(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iterations")) iterations = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else {
      std::fprintf(stderr, "raw-model: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    sluice::ModelOptions options;
    options.threads = threads;
    options.device = sluice::parse_device(device);
    auto model = sluice::Model::load(dir, options);
    seq = std::min(seq, model->info().max_tokens);

    sluice::TokenBatch tb;
    tb.batch = batch;
    tb.seq_len = seq;
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::int64_t> word(1000, 29000);  // ordinary word pieces
    tb.ids.resize(std::size_t{batch} * seq);
    for (auto& id : tb.ids) id = word(rng);
    for (std::uint32_t b = 0; b < batch; ++b) {
      tb.ids[std::size_t{b} * seq] = 101;            // [CLS]
      tb.ids[std::size_t{b} * seq + seq - 1] = 102;  // [SEP]
    }
    tb.attention_mask.assign(tb.ids.size(), 1);
    tb.type_ids.assign(tb.ids.size(), 0);
    std::vector<float> out(std::size_t{batch} * model->info().dimensions);

    for (int i = 0; i < 2; ++i) model->embed(tb, out);  // warm-up: allocations, thread pool
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) model->embed(tb, out);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = double(batch) * seq * iterations;
    std::printf("{\"model\":\"%s\",\"batch\":%u,\"seq\":%u,\"threads\":%d,\"iterations\":%d,\"seconds\":%.3f,"
                "\"tokens_per_s\":%.1f,\"ms_per_batch\":%.1f}\n",
                dir.c_str(), batch, seq, threads > 0 ? threads : int(std::thread::hardware_concurrency()), iterations,
                s, tokens / s, 1000.0 * s / iterations);
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "raw-model: %s\n", e.what());
    return 1;
  }
  return 0;
}
