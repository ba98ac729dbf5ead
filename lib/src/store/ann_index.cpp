// The approximate index: hnswlib's HNSW over the table's vectors, normalised (inner product is
// then cosine). Two files: the hnswlib index (`path`), and `path`.meta: one JSON line (format,
// table, its version when built, the index file's size, recall) then each label's row id,
// length-prefixed. A meta file that does not match the table or the index file means a rebuild.

#include <sluice/store.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <simdjson.h>

// hnswlib's own SSE/AVX code prefetches one link past the end of a node's list, a read past the
// end of its allocation (AddressSanitizer reports it): without it, hnswlib takes the distance
// of the space given, ours below, built for each instruction set like search's.
#define NO_MANUAL_VECTORIZATION
#include <hnswlib/hnswlib.h>

#include "io/output_format.hpp"
#include "store_backend.hpp"

namespace sluice {

namespace {

constexpr int kMetaFormat = 1;

// Inner product distance, 1 - a · b (vectors of unit length: 1 - cosine).
class DotSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit DotSpace(std::size_t dim) : dim_(dim) {}
  std::size_t get_data_size() override { return dim_ * sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &distance; }
  void* get_dist_func_param() override { return &dim_; }

 private:
  static float distance(const void* a, const void* b, const void* dim) {
    return 1.0f - store::dot(static_cast<const float*>(a), static_cast<const float*>(b),
                             *static_cast<const std::size_t*>(dim));
  }
  std::size_t dim_;
};

class HnswIndex final : public ApproximateIndex {
 public:
  HnswIndex(const StoreOptions& store, const ApproximateIndexOptions& options)
      : store_(store), options_(options), backend_(store::connect(read_only(store))) {
    auto meta = backend_->read_meta(store.table);
    if (!meta) throw Error(ErrorCode::invalid_argument, fmt::format("{}: no such table of sluice's", backend_->name()));
    meta_ = *meta;
    space_ = std::make_unique<DotSpace>(meta_.dimensions);
    info_.table_version = backend_->table_version(store.table);
    if (!load()) build();
  }

  const ApproximateIndexInfo& info() const override { return info_; }

  std::vector<std::vector<SearchHit>> search(std::span<const std::vector<float>> queries, std::size_t k) override {
    index_->setEf(std::max(options_.ef_search, k));
    std::vector<std::vector<SearchHit>> out;
    for (const auto& query : queries) {
      const std::vector<float> q = store::query_as_stored(query, meta_.type, meta_.dimensions);
      auto found = index_->searchKnn(q.data(), std::min<std::size_t>(k, ids_.size()));
      std::vector<std::pair<float, std::size_t>> best;
      while (!found.empty()) {
        best.emplace_back(found.top());
        found.pop();
      }
      std::vector<SearchHit> hits;
      std::vector<std::string> ids;
      for (auto it = best.rbegin(); it != best.rend(); ++it) {
        hits.push_back({ids_[it->second], 1.0 - double{it->first}, {}});
        ids.push_back(ids_[it->second]);
      }
      // Best first, equal scores by id, as the exact search orders them.
      std::stable_sort(hits.begin(), hits.end(), [](const SearchHit& a, const SearchHit& b) {
        return a.score != b.score ? a.score > b.score : a.id < b.id;
      });
      for (auto& [id, record] : backend_->fetch_records(store_.table, ids)) {
        for (auto& h : hits) {
          if (h.id == id) h.record = record;
        }
      }
      out.push_back(std::move(hits));
    }
    return out;
  }

 private:
  static StoreOptions read_only(StoreOptions s) {
    s.read_only = true;
    return s;
  }

  std::string meta_path() const { return options_.path + ".meta"; }

  std::string header(std::uint64_t index_bytes) const {
    std::string table;
    append_json_string(table, store_.table);
    std::string version;
    append_json_string(version, info_.table_version);
    std::string identity;
    append_json_string(identity, meta_.model_identity);
    return fmt::format(
        "{{\"format\":{},\"table\":{},\"version\":{},\"identity\":{},\"dimensions\":{},\"m\":{},\"ef_construction\":{},"
        "\"index_bytes\":{},\"rows\":{},\"recall_at_10\":{},\"recall_queries\":{}}}",
        kMetaFormat, table, version, identity, meta_.dimensions, options_.m, options_.ef_construction, index_bytes,
        info_.rows, info_.recall_at_10, info_.recall_queries);
  }

  // The index on disk, when it is the table's as it is now.
  bool load() {
    std::ifstream in(meta_path(), std::ios::binary);
    if (!in) return false;
    std::string line;
    if (!std::getline(in, line)) return false;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(line).get(doc) != simdjson::SUCCESS) return false;
    std::uint64_t format = 0, index_bytes = 0, rows = 0, dims = 0, m = 0, efc = 0, queries = 0;
    std::string_view table, version, identity;
    double recall = 0;
    if (doc["format"].get(format) || doc["table"].get(table) || doc["version"].get(version) ||
        doc["identity"].get(identity) || doc["dimensions"].get(dims) || doc["m"].get(m) ||
        doc["ef_construction"].get(efc) || doc["index_bytes"].get(index_bytes) || doc["rows"].get(rows) ||
        doc["recall_at_10"].get(recall) || doc["recall_queries"].get(queries)) {
      return false;
    }
    std::error_code ec;
    if (format != kMetaFormat || table != store_.table || version != info_.table_version ||
        identity != meta_.model_identity || dims != meta_.dimensions || m != options_.m ||
        efc != options_.ef_construction || std::filesystem::file_size(options_.path, ec) != index_bytes || ec) {
      return false;  // another table, or the table changed since: rebuilt
    }
    std::vector<std::string> ids;
    for (std::uint64_t i = 0; i < rows; ++i) {
      std::uint32_t n = 0;
      if (!in.read(reinterpret_cast<char*>(&n), sizeof n)) return false;
      std::string id(n, '\0');
      if (!in.read(id.data(), n)) return false;
      ids.push_back(std::move(id));
    }
    try {
      index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), options_.path);
    } catch (const std::exception&) {
      return false;
    }
    if (index_->cur_element_count != rows) return false;
    ids_ = std::move(ids);
    info_.rows = rows;
    info_.recall_at_10 = recall;
    info_.recall_queries = queries;
    return true;
  }

  void build() {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t expected = backend_->count_rows(store_.table);
    std::size_t capacity = std::max<std::size_t>(expected + expected / 16 + 16, 16);
    index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), capacity, options_.m,
                                                                options_.ef_construction, 100);
    ids_.clear();
    // Held-out queries for recall: every stride-th row's vector, kept as the scan goes.
    const std::size_t stride = std::max<std::uint64_t>(1, expected / std::max<std::size_t>(1, options_.recall_sample));
    std::vector<std::vector<float>> sample;
    std::vector<std::string> sample_ids;
    std::vector<float> v;
    backend_->scan(store_.table, meta_.type, meta_.dimensions,
                   [&](std::string_view id, std::string_view, std::span<const float> vector) {
                     if (vector.size() != meta_.dimensions) return;
                     v.assign(vector.begin(), vector.end());
                     store::normalise(v);
                     if (ids_.size() >= capacity) {
                       capacity *= 2;
                       index_->resizeIndex(capacity);
                     }
                     index_->addPoint(v.data(), ids_.size());
                     if (ids_.size() % stride == 0 && sample.size() < options_.recall_sample) {
                       sample.push_back(v);
                       sample_ids.emplace_back(id);
                     }
                     ids_.emplace_back(id);
                   });
    info_.rows = ids_.size();
    info_.built_now = true;
    measure_recall(sample, sample_ids);
    save();
    info_.build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void measure_recall(const std::vector<std::vector<float>>& sample, const std::vector<std::string>& sample_ids) {
    if (sample.empty()) return;
    // Exact top 11 (one scan for all), each row itself left out: the 10 nearest others.
    const auto exact = search_store(store_, sample, 11);
    const auto approx = search(sample, 11);
    double sum = 0;
    for (std::size_t i = 0; i < sample.size(); ++i) {
      auto top10 = [&](const std::vector<SearchHit>& hits) {
        std::set<std::string> s;
        for (const auto& h : hits) {
          if (h.id != sample_ids[i] && s.size() < 10) s.insert(h.id);
        }
        return s;
      };
      const auto want = top10(exact[i]);
      const auto got = top10(approx[i]);
      if (want.empty()) continue;
      std::size_t common = 0;
      for (const auto& id : got) common += want.count(id);
      sum += static_cast<double>(common) / static_cast<double>(want.size());
    }
    info_.recall_queries = sample.size();
    info_.recall_at_10 = sum / static_cast<double>(sample.size());
  }

  void save() {
    // The index first, then its meta: a meta file names only an index written whole.
    const std::string tmp = options_.path + ".tmp";
    index_->saveIndex(tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, options_.path, ec);
    if (ec) {
      throw Error(ErrorCode::io_error, fmt::format("{}: cannot write the index: {}", options_.path, ec.message()));
    }
    const std::uint64_t bytes = std::filesystem::file_size(options_.path, ec);
    std::ofstream out(meta_path() + ".tmp", std::ios::binary | std::ios::trunc);
    out << header(bytes) << '\n';
    for (const std::string& id : ids_) {
      const auto n = static_cast<std::uint32_t>(id.size());
      out.write(reinterpret_cast<const char*>(&n), sizeof n);
      out.write(id.data(), n);
    }
    out.close();
    if (!out) throw Error(ErrorCode::io_error, fmt::format("{}: cannot write", meta_path()));
    std::filesystem::rename(meta_path() + ".tmp", meta_path(), ec);
    if (ec) throw Error(ErrorCode::io_error, fmt::format("{}: cannot write: {}", meta_path(), ec.message()));
  }

  StoreOptions store_;
  ApproximateIndexOptions options_;
  std::unique_ptr<store::Backend> backend_;
  store::TableMeta meta_;
  std::unique_ptr<DotSpace> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
  std::vector<std::string> ids_;  // label -> row id
  ApproximateIndexInfo info_;
};

}  // namespace

std::unique_ptr<ApproximateIndex> ApproximateIndex::open(const StoreOptions& store,
                                                         const ApproximateIndexOptions& options) {
  if (options.path.empty()) throw Error(ErrorCode::invalid_argument, "the approximate index needs a file path");
  if (options.m < 2 || options.m > 1000 || options.ef_construction < 1) {
    throw Error(ErrorCode::invalid_argument, "the index needs m from 2 to 1000 and ef_construction of 1 or more");
  }
  return std::make_unique<HnswIndex>(store, options);
}

}  // namespace sluice
