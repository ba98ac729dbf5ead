// The embedding server and the remote backend in one process (lib/src/serve, lib/src/backend):
// an EmbeddingServer on 127.0.0.1 with the tiny test model, and a remote Model pointed at it
// from several threads at once. The vectors must be the local model's. Run under TSan in CI
// (tools/sanitize.sh), which covers the server's loop, tokenizer and inference threads and the
// HTTP client's loop thread; the e2e tests (test_serve.py, test_remote.py) cover the rest.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sluice/error.hpp>
#include <sluice/model.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/remote.hpp>
#include <sluice/serve.hpp>
#include <sluice/tokenizer.hpp>

#include "test_models.hpp"

using namespace sluice;

namespace {

TokenBatch texts_batch(const std::vector<std::string>& texts, const Tokenizer& tok) {
  // The ids only size the call for a remote model; the texts are what it sends.
  TokenBatch b;
  b.batch = static_cast<std::uint32_t>(texts.size());
  std::size_t seq = 1;
  std::vector<Encoding> enc;
  for (const auto& t : texts) {
    enc.push_back(tok.encode(t));
    seq = std::max(seq, enc.back().ids.size());
  }
  b.seq_len = static_cast<std::uint32_t>(seq);
  b.ids.assign(b.batch * seq, tok.pad_id());
  b.attention_mask.assign(b.batch * seq, 0);
  b.type_ids.assign(b.batch * seq, 0);
  for (std::size_t r = 0; r < texts.size(); ++r) {
    for (std::size_t k = 0; k < enc[r].ids.size(); ++k) {
      b.ids[r * seq + k] = enc[r].ids[k];
      b.attention_mask[r * seq + k] = 1;
    }
  }
  for (const auto& t : texts) b.texts.push_back(t);
  return b;
}

std::vector<std::string> sample_texts(int n, int seed) {
  static const char* words[] = {"river", "stone", "light", "paper", "window", "garden", "music", "table"};
  std::vector<std::string> out;
  unsigned x = static_cast<unsigned>(seed) * 2654435761u + 1;
  for (int i = 0; i < n; ++i) {
    std::string t;
    const int len = 1 + static_cast<int>((x >> 7) % 30);
    for (int w = 0; w < len; ++w) {
      x = x * 1103515245u + 12345u;
      if (w) t += ' ';
      t += words[(x >> 16) % 8];
    }
    out.push_back(t);
  }
  return out;
}

}  // namespace

TEST_CASE("a remote model on serve gives the local model's vectors, from several threads at once") {
  const auto dir = test::models_root() / "tiny";
  ModelOptions mo;
  mo.threads = 1;
  std::shared_ptr<Model> local = Model::load(dir, mo);
  std::shared_ptr<Tokenizer> tokenizer = Tokenizer::from_file(dir / "tokenizer.json");

  ServeOptions so;
  so.port = 0;
  so.model_name = "tiny";
  so.model_workers = 2;
  so.batch_size = 8;
  so.truncate = true;
  EmbeddingServer server(local, tokenizer, so);
  std::thread loop([&] { server.run(); });

  RemoteOptions ro;
  ro.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1";
  ro.model = "tiny";
  ro.concurrency = 4;
  std::shared_ptr<Model> remote = connect_remote_model(ro);
  const std::uint32_t dims = local->info().dimensions;
  CHECK(remote->info().dimensions == dims);
  CHECK(remote->wants_texts());

  std::atomic<int> checked{0}, wrong{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 5; ++round) {
        const auto texts = sample_texts(6 + c, c * 10 + round);
        const TokenBatch b = texts_batch(texts, *tokenizer);
        std::vector<float> got(b.batch * dims), want(b.batch * dims);
        remote->embed(b, got);
        {
          static std::mutex local_mu;  // the local reference, one call at a time
          std::lock_guard lock(local_mu);
          local->embed(b, want);
        }
        for (std::uint32_t r = 0; r < b.batch; ++r) {
          if (test::cosine(got.data() + r * dims, want.data() + r * dims, dims) < 0.9999) ++wrong;
          ++checked;
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  CHECK(wrong.load() == 0);
  CHECK(checked.load() == 5 * (6 + 7 + 8 + 9));

  // interrupt() ends a call at once, and every later one.
  remote->interrupt();
  const auto last = sample_texts(2, 99);  // the batch's texts are views of these
  const TokenBatch b = texts_batch(last, *tokenizer);
  std::vector<float> out(2 * dims);
  CHECK_THROWS_AS(remote->embed(b, out), Error);

  server.stop();
  loop.join();
  const ServeCounts counts = server.counts();
  CHECK(counts.ok >= 20);
  CHECK(counts.inputs >= static_cast<std::uint64_t>(checked.load()));
}

TEST_CASE("a server on a port already taken says so, and closes what it opened") {
  const auto dir = test::models_root() / "tiny";
  std::shared_ptr<Model> local = Model::load(dir, {});
  std::shared_ptr<Tokenizer> tokenizer = Tokenizer::from_file(dir / "tokenizer.json");
  ServeOptions so;
  so.port = 0;
  EmbeddingServer first(local, tokenizer, so);
  so.port = first.port();
  CHECK_THROWS_AS(EmbeddingServer(local, tokenizer, so), Error);
  first.stop();
  first.run();  // stopped before it ran: returns at once
}
