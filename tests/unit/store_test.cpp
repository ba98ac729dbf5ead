// The store sink and search in-process, on SQLite (a file in a temporary folder) and the tiny
// test model: what tests/e2e/test_stores.py checks through the binary, here where the
// sanitizers see the store's thread and its callbacks.

#include <doctest/doctest.h>

#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include <sluice/event_stream.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/record_stream.hpp>
#include <sluice/store.hpp>

#include "store/store_backend.hpp"

namespace fs = std::filesystem;
using namespace sluice;

namespace {

struct TempDir {
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-store-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

fs::path tiny_dir() {
  const char* env = std::getenv("SLUICE_TEST_MODELS");
  REQUIRE_MESSAGE(env != nullptr, "SLUICE_TEST_MODELS is not set (run through meson test)");
  return fs::path(env) / "tiny";
}

std::shared_ptr<Model> tiny_model() {
  static std::shared_ptr<Model> m = [] {
    ModelOptions mo;
    mo.threads = 1;
    return std::shared_ptr<Model>(Model::load(tiny_dir(), mo));
  }();
  return m;
}

std::shared_ptr<Tokenizer> tiny_tokenizer() {
  return std::shared_ptr<Tokenizer>(Tokenizer::from_file(tiny_dir() / "tokenizer.json"));
}

PipelineOptions options(const TempDir& dir, int n) {
  PipelineOptions o;
  o.input = (dir.path / "in.jsonl").string();
  std::ofstream in(o.input);
  for (int i = 0; i < n; ++i) in << fmt::format("{{\"id\": {}, \"text\": \"record {} on rivers and plains {}\"}}\n", i, i, i % 9);
  o.batch_size = 8;
  o.sort_window = 32;
  o.progress_interval_s = 0;
  return o;
}

std::uint64_t rows(const fs::path& db) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, "SELECT count(*) FROM embeddings", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const auto n = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(h);
  return n;
}

}  // namespace

TEST_CASE("a SQLite store: stopped, resumed, every row once; exact and approximate search find a row's neighbours") {
  TempDir dir;
  const fs::path db = dir.path / "store.db";
  StoreOptions store;
  store.uri = "sqlite:" + db.string();
  auto opts = options(dir, 400);
  // Two windows in flight at most: when record 100 completes, most of the input is not read
  // yet, so the stop always falls in the middle (a busy machine once completed all 400 first).
  opts.max_in_flight_records = 64;
  {
    Pipeline pipeline(opts, tiny_model(), tiny_tokenizer());
    pipeline.set_sink(make_store_sink(store));
    pipeline.subscribe(EventFilter::of<DocumentCompleted>(), [&](const PipelineEvent& e) {
      if (std::get<DocumentCompleted>(e.payload).index == 100) pipeline.stop();
    });
    const RunSummary s = pipeline.run();
    CHECK(s.status == RunStatus::stopped);
  }
  CHECK(rows(db) < 400);
  opts.resume = true;
  {
    Pipeline pipeline(opts, tiny_model(), tiny_tokenizer());
    pipeline.set_sink(make_store_sink(store));
    const RunSummary s = pipeline.run();
    CHECK(s.status == RunStatus::completed);
    CHECK(s.completed == 400);
    REQUIRE(s.verified.has_value());
    CHECK(*s.verified == 400);
  }
  CHECK(rows(db) == 400);
  const StoreTableInfo info = describe_store(store);
  CHECK(info.exists);
  CHECK(info.rows == 400);
  CHECK(info.dimensions == 32);

  // The vectors of three records, as a run into memory gives them: each is its own nearest row.
  std::vector<Record> three;
  for (int i : {7, 150, 399}) {
    three.push_back({fmt::format("{{\"id\": {}, \"text\": \"record {} on rivers and plains {}\"}}", i, i, i % 9),
                     std::nullopt, 1, 0});
  }
  auto mem_opts = opts;
  mem_opts.resume = false;
  Pipeline mem(mem_opts, tiny_model(), tiny_tokenizer());
  mem.set_source(RecordStream::from_records(three).into_source());
  const Collected got = collect(mem);
  std::vector<std::vector<float>> queries;
  for (const auto& r : got.records) queries.push_back(r.embedding);
  const auto exact = search_store(store, queries, 5);
  REQUIRE(exact.size() == 3);
  CHECK(exact[0][0].id == "7");
  CHECK(exact[1][0].id == "150");
  CHECK(exact[2][0].id == "399");
  CHECK(exact[0][0].score == doctest::Approx(1.0).epsilon(1e-5));

  ApproximateIndexOptions io;
  io.path = (dir.path / "index.hnsw").string();
  auto index = ApproximateIndex::open(store, io);
  CHECK(index->info().built_now);
  CHECK(index->info().rows == 400);
  CHECK(index->info().recall_at_10 >= 0.9);
  const auto approx = index->search(queries, 5);
  CHECK(approx[1][0].id == "150");
  CHECK(approx[1][0].record.find("record 150") != std::string::npos);
  CHECK_FALSE(ApproximateIndex::open(store, io)->info().built_now);  // the table did not change

  // Each instruction set's products (those this machine has; the others are said) give the same
  // neighbours: nine queries, eight scored at once and one alone.
  std::vector<std::vector<float>> nine;
  for (int i = 0; i < 3; ++i) nine.insert(nine.end(), queries.begin(), queries.end());
  std::vector<std::vector<std::vector<SearchHit>>> by_isa;
  for (const char* isa : {"base", "avx2", "avx512"}) {
    if (!store::limit_search_isa(isa)) {
      MESSAGE("search's " << isa << " products not run: this CPU lacks " << isa);
      continue;
    }
    by_isa.push_back(search_store(store, nine, 5));
  }
  store::limit_search_isa("avx512");  // no limit
  REQUIRE_FALSE(by_isa.empty());
  for (const auto& hits : by_isa) {
    for (std::size_t q = 0; q < nine.size(); ++q) {
      REQUIRE(hits[q].size() == by_isa[0][q].size());
      for (std::size_t i = 0; i < hits[q].size(); ++i) {
        CHECK(hits[q][i].score == doctest::Approx(by_isa[0][q][i].score).epsilon(1e-5));
      }
      CHECK(hits[q][0].id == by_isa[0][q][0].id);
    }
  }
}

TEST_CASE("store URIs: what is a store, and passwords never shown") {
  CHECK(is_store_uri("sqlite:x.db"));
  CHECK(is_store_uri("postgresql://u@h/db"));
  CHECK(is_store_uri("postgres://u@h/db"));
  CHECK_FALSE(is_store_uri("out.jsonl"));
  CHECK_FALSE(is_store_uri("sqlite"));
  CHECK(redact_uri("postgresql://me:s3cret@host:5432/db") == "postgresql://me:***@host:5432/db");
  CHECK(redact_uri("postgresql://host/db?user=me&password=s3cret&sslmode=require") ==
        "postgresql://host/db?user=me&password=***&sslmode=require");
  CHECK(redact_uri("postgresql://me@host/db") == "postgresql://me@host/db");
  StoreOptions bad;
  bad.uri = "sqlite:/nonexistent-folder-of-sluice/x.db";
  bad.read_only = true;
  CHECK_THROWS_AS(describe_store(bad), Error);
  bad.uri = "sqlite:x.db";
  bad.table = "Mixed";
  CHECK_THROWS_AS(describe_store(bad), Error);
}
