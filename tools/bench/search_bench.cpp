// search-bench: sluice's exact store search against faiss, and two approximate indexes.
//
//   search-bench DB.sqlite (--random N [--dims D] | --vectors-from sqlite:PATH [--table T])
//                [--queries 1,10,100] [--k 10] [--repeat R] [--seed S] [--threads N]
//                [--ann-queries Q] [--hnsw-m M] [--ef-construction E] [--ef-search 16,32,...] [--no-ann]
//
// The vectors: N seeded random unit vectors of D dimensions (normal components, normalised), or
// every float32 embedding of a sluice store's table (its records too; vectors that occur twice
// are kept once, so that the exact top k has no ties between copies). Q + max(--queries)
// vectors, drawn with the seed, are held out as queries; the rest is the base.
//
// The base is written into DB.sqlite (replaced) with the schema sluice's SQLite store uses
// (lib/src/store/sqlite_store.cpp: sluice_tables, sluice_runs, and a table of id TEXT PRIMARY
// KEY, record TEXT, embedding BLOB of little-endian float32, run, line), so that
// sluice::search_store() reads it as it reads any store. Then, in one process:
//
//   * exact: sluice::search_store() (one SQLite scan per call, single-threaded, all queries of
//     the call in one pass) for 1, 10, 100 queries with k = 10, against faiss::IndexFlatIP on
//     the same vectors in memory (inner product of unit vectors = cosine), with 1 thread and
//     with --threads; the median of --repeat calls each. The top-k ids of the two are compared
//     on the largest query set (same set, same order, largest score difference);
//   * approximate: faiss::IndexHNSWFlat and hnswlib::HierarchicalNSW, inner product, the same M
//     and efConstruction, both built with --threads threads; then --ann-queries queries one
//     thread, at each efSearch: microseconds per query and recall@k against faiss's exact top k
//     (which the comparison above checks against sluice's).
//
// Prints what it does on stderr and one JSON line on stdout (tools/bench/bench.py reads it).

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <sqlite3.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>

#ifndef SEARCH_BENCH_NO_HNSWLIB
#include <hnswlib/hnswlib.h>
#endif

#include <sluice/error.hpp>
#include <sluice/store.hpp>

#include "store/store_backend.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using idx_t = faiss::Index::idx_t;  // faiss 1.7.3 (Debian 12); faiss::idx_t from 1.7.4

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  std::string db;
  std::size_t random = 0;
  std::size_t dims = 384;
  std::string vectors_from;
  std::string table = "embeddings";
  std::vector<std::size_t> queries = {1, 10, 100};
  std::size_t k = 10;
  int repeat = 3;
  std::uint64_t seed = 20240601;
  int threads = 0;
  std::size_t ann_queries = 1000;
  int hnsw_m = 32;
  int ef_construction = 100;
  std::vector<std::size_t> ef_search = {16, 32, 64, 128, 256};
  bool ann = true;
};

void usage() {
  std::fprintf(stderr,
               "usage: search-bench DB.sqlite (--random N [--dims D] | --vectors-from sqlite:PATH [--table T])\n"
               "                    [--queries 1,10,100] [--k 10] [--repeat R] [--seed S] [--threads N]\n"
               "                    [--ann-queries Q] [--hnsw-m M] [--ef-construction E] [--ef-search 16,32,...]\n"
               "                    [--no-ann]\n");
}

std::vector<std::size_t> parse_list(const char* s) {
  std::vector<std::size_t> out;
  std::string_view v(s);
  while (!v.empty()) {
    const std::size_t comma = v.find(',');
    out.push_back(std::stoul(std::string(v.substr(0, comma))));
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
  }
  return out;
}

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    throw std::runtime_error(fmt::format("{}: {}", what, sqlite3_errmsg(db)));
  }
}

void normalise(float* v, std::size_t d) {
  double n = 0;
  for (std::size_t i = 0; i < d; ++i) n += double{v[i]} * v[i];
  const float inv = n > 0 ? static_cast<float>(1.0 / std::sqrt(n)) : 0.0f;
  for (std::size_t i = 0; i < d; ++i) v[i] *= inv;
}

struct Data {
  std::size_t dims = 0;
  std::vector<float> vectors;  // rows x dims
  std::vector<std::string> ids, records;
  std::size_t duplicates = 0;
  std::string source;
};

Data random_vectors(std::size_t n, std::size_t d, std::uint64_t seed) {
  Data data;
  data.dims = d;
  data.source = fmt::format("random unit vectors (normal components, seed {})", seed);
  data.vectors.resize(n * d);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) data.vectors[i * d + j] = normal(rng);
    normalise(&data.vectors[i * d], d);
    data.ids.push_back(std::to_string(i));
    data.records.push_back(fmt::format("{{\"id\":{}}}", i));
  }
  return data;
}

Data store_vectors(const std::string& uri, const std::string& table) {
  if (!uri.starts_with("sqlite:")) throw std::runtime_error("--vectors-from takes sqlite:PATH");
  std::string path = uri.substr(7);
  if (path.starts_with("//")) path = path.substr(2);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    throw std::runtime_error(fmt::format("{}: cannot open", path));
  }
  Data data;
  sqlite3_stmt* st = nullptr;
  check(db, sqlite3_prepare_v2(db, "SELECT dimensions, output_type, model_identity FROM sluice_tables WHERE name = ?1",
                               -1, &st, nullptr),
        "sluice_tables");
  sqlite3_bind_text(st, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) != SQLITE_ROW) throw std::runtime_error(fmt::format("{}: no table {} of sluice's", uri, table));
  data.dims = static_cast<std::size_t>(sqlite3_column_int64(st, 0));
  const std::string type = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
  data.source = fmt::format("{} table {}: {}", uri, table, reinterpret_cast<const char*>(sqlite3_column_text(st, 2)));
  sqlite3_finalize(st);
  if (type != "float32") throw std::runtime_error(fmt::format("{}: vectors are {}, not float32", uri, type));
  check(db, sqlite3_prepare_v2(db, fmt::format("SELECT id, record, embedding FROM \"{}\" ORDER BY rowid", table).c_str(),
                               -1, &st, nullptr),
        "select");
  std::unordered_set<std::string> seen;
  const std::size_t bytes = data.dims * 4;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* blob = static_cast<const unsigned char*>(sqlite3_column_blob(st, 2));
    if (static_cast<std::size_t>(sqlite3_column_bytes(st, 2)) != bytes) continue;
    if (!seen.emplace(reinterpret_cast<const char*>(blob), bytes).second) {
      ++data.duplicates;
      continue;
    }
    const std::size_t row = data.vectors.size();
    data.vectors.resize(row + data.dims);
    for (std::size_t j = 0; j < data.dims; ++j) {
      const std::uint32_t b = std::uint32_t{blob[j * 4]} | std::uint32_t{blob[j * 4 + 1]} << 8 |
                              std::uint32_t{blob[j * 4 + 2]} << 16 | std::uint32_t{blob[j * 4 + 3]} << 24;
      data.vectors[row + j] = std::bit_cast<float>(b);
    }
    normalise(&data.vectors[row], data.dims);
    data.ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    data.records.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
  }
  check(db, rc, "read rows");
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  return data;
}

// The base, written by sluice's own SQLite store (store_backend.hpp): its schema, its catalog
// entry and its rows, as `pipeline-run embed -o sqlite:` leaves them.
void write_store(const std::string& path, const Data& data, const std::vector<std::size_t>& base) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
  auto store = sluice::store::connect_sqlite(path, "sqlite:" + path + " table vectors", false);
  store->ensure_catalog();
  sluice::store::TableMeta meta;
  meta.model = "search-bench";
  meta.model_identity = "search-bench: " + data.source.substr(0, 200);
  meta.pooling = "none";
  meta.precision = "fp32";
  meta.dimensions = static_cast<std::uint32_t>(data.dims);
  meta.type = sluice::VectorType::float32;
  meta.normalized = true;
  store->create_table("vectors", meta);
  const std::int64_t run = store->start_run("vectors", "search-bench", "search-bench", "id");
  std::vector<sluice::store::Row> rows;
  auto commit = [&] {
    for (const auto& outcome : store->commit("vectors", run, rows, "", sluice::VectorType::float32)) {
      if (outcome) throw std::runtime_error(outcome->message);  // a duplicate id: the base is wrong
    }
    rows.clear();
  };
  for (std::size_t line = 0; line < base.size(); ++line) {
    const std::size_t i = base[line];
    sluice::store::Row row;
    row.index = line;
    row.id = data.ids[i];
    row.record = data.records[i];
    row.line = line + 1;
    sluice::store::encode_vector(std::span<const float>(&data.vectors[i * data.dims], data.dims),
                                 sluice::VectorType::float32, row.embedding, row.values);
    rows.push_back(std::move(row));
    if (rows.size() == 10000) commit();
  }
  commit();
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const std::size_t n = xs.size();
  return n % 2 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

std::string json_list(const std::vector<double>& xs) {
  std::string s = "[";
  for (std::size_t i = 0; i < xs.size(); ++i) s += fmt::format("{}{:.6g}", i ? "," : "", xs[i]);
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    usage();
    return 2;
  }
  Options o;
  o.db = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view name = argv[i];
    if (name == "--no-ann") {
      o.ann = false;
      continue;
    }
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const char* v = argv[++i];
    if (name == "--random") o.random = std::stoul(v);
    else if (name == "--dims") o.dims = std::stoul(v);
    else if (name == "--vectors-from") o.vectors_from = v;
    else if (name == "--table") o.table = v;
    else if (name == "--queries") o.queries = parse_list(v);
    else if (name == "--k") o.k = std::stoul(v);
    else if (name == "--repeat") o.repeat = std::stoi(v);
    else if (name == "--seed") o.seed = std::stoull(v);
    else if (name == "--threads") o.threads = std::stoi(v);
    else if (name == "--ann-queries") o.ann_queries = std::stoul(v);
    else if (name == "--hnsw-m") o.hnsw_m = std::stoi(v);
    else if (name == "--ef-construction") o.ef_construction = std::stoi(v);
    else if (name == "--ef-search") o.ef_search = parse_list(v);
    else {
      std::fprintf(stderr, "search-bench: unknown option %s\n", argv[i - 1]);
      usage();
      return 2;
    }
  }
  if ((o.random == 0) == o.vectors_from.empty() || o.queries.empty() || o.k == 0 || o.repeat < 1) {
    usage();
    return 2;
  }
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  try {
    const std::size_t max_q = *std::max_element(o.queries.begin(), o.queries.end());
    const std::size_t held_out = max_q + (o.ann ? o.ann_queries : 0);
    auto t0 = Clock::now();
    Data data = o.random ? random_vectors(o.random + held_out, o.dims, o.seed) : store_vectors(o.vectors_from, o.table);
    const std::size_t d = data.dims;
    const std::size_t total = data.ids.size();
    if (total <= held_out + o.k) throw std::runtime_error(fmt::format("{} vectors: too few", total));
    std::fprintf(stderr, "search-bench: %zu vectors of %zu dimensions from %s (%zu duplicates dropped) in %.1f s\n",
                 total, d, data.source.c_str(), data.duplicates, seconds_since(t0));

    // Queries held out with the seed; the base keeps the source's order.
    std::vector<std::size_t> order(total);
    for (std::size_t i = 0; i < total; ++i) order[i] = i;
    std::mt19937_64 rng(o.seed ^ 0x5eedULL);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::size_t> query_rows(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(held_out));
    std::vector<std::size_t> base(order.begin() + static_cast<std::ptrdiff_t>(held_out), order.end());
    std::sort(base.begin(), base.end());
    const std::size_t n = base.size();
    std::vector<float> xb(n * d);
    for (std::size_t r = 0; r < n; ++r) std::copy_n(&data.vectors[base[r] * d], d, &xb[r * d]);
    std::vector<float> xq(held_out * d);
    std::vector<std::vector<float>> queries(held_out);
    for (std::size_t r = 0; r < held_out; ++r) {
      std::copy_n(&data.vectors[query_rows[r] * d], d, &xq[r * d]);
      queries[r].assign(&xq[r * d], &xq[r * d] + d);
    }

    t0 = Clock::now();
    write_store(o.db, data, base);
    const double write_s = seconds_since(t0);
    const auto db_bytes = std::filesystem::file_size(o.db);
    std::fprintf(stderr, "search-bench: %zu base vectors written to %s (%.1f MB) in %.1f s; %zu queries held out\n", n,
                 o.db.c_str(), db_bytes / 1e6, write_s, held_out);
    data.vectors.clear();
    data.vectors.shrink_to_fit();

    sluice::StoreOptions store;
    store.uri = "sqlite:" + o.db;
    store.table = "vectors";
    // One call, untimed: the file into the page cache.
    (void)sluice::search_store(store, std::span(queries).first(1), o.k);

    omp_set_num_threads(threads);
    faiss::IndexFlatIP flat(static_cast<idx_t>(d));
    t0 = Clock::now();
    flat.add(static_cast<idx_t>(n), xb.data());
    const double flat_add_s = seconds_since(t0);

    std::string exact_json;
    std::vector<std::vector<sluice::SearchHit>> sluice_hits;
    std::vector<idx_t> flat_labels;
    std::vector<float> flat_scores;
    for (std::size_t qi = 0; qi < o.queries.size(); ++qi) {
      const std::size_t q = o.queries[qi];
      std::vector<double> t_sluice, t_flat1, t_flat;
      std::vector<float> dist(q * o.k);
      std::vector<idx_t> labels(q * o.k);
      for (int r = 0; r < o.repeat; ++r) {
        t0 = Clock::now();
        auto hits = sluice::search_store(store, std::span(queries).first(q), o.k);
        t_sluice.push_back(seconds_since(t0));
        omp_set_num_threads(1);
        t0 = Clock::now();
        flat.search(static_cast<idx_t>(q), xq.data(), static_cast<idx_t>(o.k), dist.data(), labels.data());
        t_flat1.push_back(seconds_since(t0));
        omp_set_num_threads(threads);
        t0 = Clock::now();
        flat.search(static_cast<idx_t>(q), xq.data(), static_cast<idx_t>(o.k), dist.data(), labels.data());
        t_flat.push_back(seconds_since(t0));
        if (q == max_q) sluice_hits = std::move(hits);
      }
      if (q == max_q) {
        flat_labels = labels;
        flat_scores = dist;
      }
      const double s = median(t_sluice), f1 = median(t_flat1), f = median(t_flat);
      std::fprintf(stderr,
                   "exact, %4zu queries: sluice::search_store %.4f s; faiss IndexFlatIP 1 thread %.4f s (%.0fx), "
                   "%d threads %.4f s (%.0fx)\n",
                   q, s, f1, s / f1, threads, f, s / f);
      exact_json += fmt::format(
          "{}{{\"queries\":{},\"sluice_s\":{:.6g},\"faiss_flat_1t_s\":{:.6g},\"faiss_flat_s\":{:.6g},"
          "\"sluice_runs\":{},\"faiss_flat_1t_runs\":{},\"faiss_flat_runs\":{}}}",
          qi ? "," : "", q, s, f1, f, json_list(t_sluice), json_list(t_flat1), json_list(t_flat));
    }

    // sluice's top k against faiss's, on the largest query set.
    std::size_t same_set = 0, same_order = 0, overlap = 0;
    double max_diff = 0;
    for (std::size_t qi = 0; qi < max_q; ++qi) {
      std::vector<std::string> a, b;
      for (const auto& h : sluice_hits[qi]) a.push_back(h.id);
      for (std::size_t j = 0; j < o.k; ++j) {
        const idx_t l = flat_labels[qi * o.k + j];
        b.push_back(l >= 0 ? data.ids[base[static_cast<std::size_t>(l)]] : std::string());
        if (j < sluice_hits[qi].size()) {
          max_diff = std::max(max_diff, std::abs(sluice_hits[qi][j].score - double{flat_scores[qi * o.k + j]}));
        }
      }
      same_order += a == b;
      std::vector<std::string> sa = a, sb = b;
      std::sort(sa.begin(), sa.end());
      std::sort(sb.begin(), sb.end());
      same_set += sa == sb;
      std::vector<std::string> common;
      std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(common));
      overlap += common.size();
    }
    std::fprintf(stderr,
                 "agreement over %zu queries: same top-%zu set %zu, same order %zu, ids in common %.2f%%, largest "
                 "score difference %.2g\n",
                 max_q, o.k, same_set, same_order, 100.0 * overlap / (max_q * o.k), max_diff);

    std::string ann_json = "null";
    if (o.ann && o.ann_queries > 0) {
      const std::size_t nq = o.ann_queries;
      const float* aq = xq.data() + max_q * d;
      // Ground truth: faiss's exact top k, all threads.
      omp_set_num_threads(threads);
      std::vector<float> gt_d(nq * o.k);
      std::vector<idx_t> gt(nq * o.k);
      flat.search(static_cast<idx_t>(nq), aq, static_cast<idx_t>(o.k), gt_d.data(), gt.data());
      auto recall = [&](const std::vector<idx_t>& got) {
        std::size_t hit = 0;
        for (std::size_t qi = 0; qi < nq; ++qi) {
          std::vector<idx_t> a(gt.begin() + qi * o.k, gt.begin() + (qi + 1) * o.k);
          std::vector<idx_t> b(got.begin() + qi * o.k, got.begin() + (qi + 1) * o.k);
          std::sort(a.begin(), a.end());
          std::sort(b.begin(), b.end());
          std::vector<idx_t> c;
          std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(c));
          hit += c.size();
        }
        return static_cast<double>(hit) / static_cast<double>(nq * o.k);
      };

      faiss::IndexHNSWFlat fh(static_cast<int>(d), o.hnsw_m, faiss::METRIC_INNER_PRODUCT);
      fh.hnsw.efConstruction = o.ef_construction;
      t0 = Clock::now();
      fh.add(static_cast<idx_t>(n), xb.data());
      const double faiss_build = seconds_since(t0);
      std::fprintf(stderr, "faiss IndexHNSWFlat M=%d efConstruction=%d: built in %.1f s (%d threads)\n", o.hnsw_m,
                   o.ef_construction, faiss_build, threads);
#ifndef SEARCH_BENCH_NO_HNSWLIB
      hnswlib::InnerProductSpace space(d);
      hnswlib::HierarchicalNSW<float> hh(&space, n, static_cast<std::size_t>(o.hnsw_m),
                                         static_cast<std::size_t>(o.ef_construction), 100);
      t0 = Clock::now();
      {
        // hnswlib's addPoint is thread-safe: the same parallel loop as its Python binding.
        hh.addPoint(xb.data(), 0);
        std::atomic<std::size_t> next{1};
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&] {
            for (std::size_t i; (i = next.fetch_add(1)) < n;) hh.addPoint(xb.data() + i * d, i);
          });
        }
        for (auto& t : pool) t.join();
      }
      const double hnswlib_build = seconds_since(t0);
      std::fprintf(stderr, "hnswlib M=%d ef_construction=%d: built in %.1f s (%d threads)\n", o.hnsw_m,
                   o.ef_construction, hnswlib_build, threads);
#else
      const double hnswlib_build = -1;
#endif
      omp_set_num_threads(1);
      std::string sweep;
      for (std::size_t ei = 0; ei < o.ef_search.size(); ++ei) {
        const std::size_t ef = o.ef_search[ei];
        std::vector<float> dd(nq * o.k);
        std::vector<idx_t> ll(nq * o.k);
        fh.hnsw.efSearch = static_cast<int>(ef);
        // One query per call, as a service answers them; 1 thread.
        t0 = Clock::now();
        for (std::size_t qi = 0; qi < nq; ++qi) {
          fh.search(1, aq + qi * d, static_cast<idx_t>(o.k), dd.data() + qi * o.k, ll.data() + qi * o.k);
        }
        const double faiss_us = seconds_since(t0) * 1e6 / static_cast<double>(nq);
        const double faiss_recall = recall(ll);
        double hl_us = -1, hl_recall = -1;
#ifndef SEARCH_BENCH_NO_HNSWLIB
        hh.setEf(ef);
        std::vector<idx_t> hl(nq * o.k, -1);
        t0 = Clock::now();
        for (std::size_t qi = 0; qi < nq; ++qi) {
          auto top = hh.searchKnn(aq + qi * d, o.k);
          for (std::size_t j = top.size(); j-- > 0;) {
            hl[qi * o.k + j] = static_cast<idx_t>(top.top().second);
            top.pop();
          }
        }
        hl_us = seconds_since(t0) * 1e6 / static_cast<double>(nq);
        hl_recall = recall(hl);
#endif
        std::fprintf(stderr, "efSearch %4zu: faiss HNSW %.1f us/query recall@%zu %.4f; hnswlib %.1f us/query recall %.4f\n",
                     ef, faiss_us, o.k, faiss_recall, hl_us, hl_recall);
        sweep += fmt::format("{}{{\"ef\":{},\"faiss_us\":{:.6g},\"faiss_recall\":{:.6g},\"hnswlib_us\":{:.6g},"
                             "\"hnswlib_recall\":{:.6g}}}",
                             ei ? "," : "", ef, faiss_us, faiss_recall, hl_us, hl_recall);
      }
      // The exact scan at one thread, one query per call, for the same queries' scale.
      t0 = Clock::now();
      const std::size_t flat_probe = std::min<std::size_t>(nq, 100);
      std::vector<float> dd(o.k);
      std::vector<idx_t> ll(o.k);
      for (std::size_t qi = 0; qi < flat_probe; ++qi) {
        flat.search(1, aq + qi * d, static_cast<idx_t>(o.k), dd.data(), ll.data());
      }
      const double flat_us = seconds_since(t0) * 1e6 / static_cast<double>(flat_probe);
      ann_json = fmt::format("{{\"queries\":{},\"m\":{},\"ef_construction\":{},\"faiss_build_s\":{:.6g},"
                             "\"hnswlib_build_s\":{:.6g},\"flat_us\":{:.6g},\"hnswlib\":{},\"sweep\":[{}]}}",
                             nq, o.hnsw_m, o.ef_construction, faiss_build, hnswlib_build, flat_us,
#ifndef SEARCH_BENCH_NO_HNSWLIB
                             "true",
#else
                             "false",
#endif
                             sweep);
    }
    std::string source = data.source;
    for (char& c : source) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    std::printf("%s\n",
                fmt::format("{{\"vectors\":{},\"dims\":{},\"source\":\"{}\",\"duplicates\":{},\"db_bytes\":{},"
                            "\"write_s\":{:.6g},\"threads\":{},\"k\":{},\"faiss_flat_add_s\":{:.6g},\"exact\":[{}],"
                            "\"agreement\":{{\"queries\":{},\"same_set\":{},\"same_order\":{},\"ids_in_common\":{:.6g},"
                            "\"max_score_diff\":{:.3g}}},\"ann\":{}}}",
                            n, d, source, data.duplicates, db_bytes, write_s, threads, o.k, flat_add_s, exact_json,
                            max_q, same_set, same_order, static_cast<double>(overlap) / (max_q * o.k), max_diff,
                            ann_json)
                    .c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "search-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
