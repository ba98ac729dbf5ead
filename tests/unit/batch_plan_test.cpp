#include "engine/batch_plan.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

using namespace sluice;

TEST_CASE("padded lengths: exact to 32, then less than 1/16 more, 16 shapes per doubling") {
  CHECK(padded_length(0) == 1);
  CHECK(padded_length(1) == 1);
  CHECK(padded_length(17) == 17);
  CHECK(padded_length(32) == 32);
  CHECK(padded_length(33) == 34);
  CHECK(padded_length(65) == 68);
  CHECK(padded_length(129) == 136);
  CHECK(padded_length(256) == 256);
  CHECK(padded_length(257) == 272);
  CHECK(padded_length(512) == 512);
  std::set<std::size_t> shapes;
  for (std::size_t n = 1; n <= 8192; ++n) {
    const std::size_t p = padded_length(n);
    REQUIRE(p >= n);
    REQUIRE(double(p - n) < double(n) / 16.0);
    REQUIRE(padded_length(p) == p);  // a padded length is its own bucket
    shapes.insert(p);
  }
  CHECK(shapes.size() == 32 + 16 * 8);  // 1..32, then 16 per doubling from 32 to 8192
}

TEST_CASE("without a token budget, windows are cut in input order by batch size") {
  std::vector<std::uint32_t> lengths{5, 50, 3, 7, 9};
  WindowPlan plan = plan_window(lengths, BatchLimits{2, 0});
  CHECK(plan.order == std::vector<std::size_t>{0, 1, 2, 3, 4});
  REQUIRE(plan.batches.size() == 3);
  CHECK(plan.batches[0].first == 0);
  CHECK(plan.batches[0].rows == 2);
  CHECK(plan.batches[0].seq_len == 50);
  CHECK(plan.batches[2].rows == 1);
  CHECK(plan.batches[2].seq_len == 9);
}

TEST_CASE("with a token budget, rows are sorted by length (stable) and no batch goes over it") {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> dist(4.0, 1.0);  // heavy tail, like source files
  std::vector<std::uint32_t> lengths(1000);
  for (auto& l : lengths) l = std::min<std::uint32_t>(512, 1 + static_cast<std::uint32_t>(dist(rng)));
  const BatchLimits limits{256, 4096};
  WindowPlan plan = plan_window(lengths, limits);
  REQUIRE(plan.order.size() == lengths.size());
  std::size_t covered = 0, real = 0, padded = 0;
  for (std::size_t b = 0; b < plan.batches.size(); ++b) {
    const PlannedBatch& batch = plan.batches[b];
    CHECK(batch.first == covered);
    covered += batch.rows;
    CHECK(batch.rows <= limits.batch_size);
    CHECK(batch.rows * batch.seq_len <= limits.max_batch_tokens);
    for (std::size_t i = batch.first; i < batch.first + batch.rows; ++i) {
      CHECK(padded_length(lengths[plan.order[i]]) <= batch.seq_len);
      real += lengths[plan.order[i]];
    }
    padded += batch.rows * batch.seq_len;
  }
  CHECK(covered == lengths.size());
  for (std::size_t i = 1; i < plan.order.size(); ++i) {
    const auto a = plan.order[i - 1], b = plan.order[i];
    CHECK((lengths[a] < lengths[b] || (lengths[a] == lengths[b] && a < b)));
  }
  // Sorted inside a window of 1000 heavy-tailed lengths, padding is small.
  CHECK(double(real) / double(padded) > 0.9);
}

TEST_CASE("a row longer than the budget goes alone") {
  std::vector<std::uint32_t> lengths{10, 600, 12};
  WindowPlan plan = plan_window(lengths, BatchLimits{256, 512});
  REQUIRE(plan.batches.size() == 2);
  CHECK(plan.batches[0].rows == 2);  // 10 and 12
  CHECK(plan.batches[1].rows == 1);
  CHECK(plan.batches[1].seq_len == 608);
}
