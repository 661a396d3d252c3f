// uniform_subset (Floyd) and DrawPlan: distinct draws, bounds, per-rank split, marks
// scratch restored, rough uniformity, and no reallocation once reserved. PassOrder: every
// index once per pass, a new pass when n changes, state round trip.
#include "sampling/draw_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "sampling/uniform_subset.h"

namespace reverie {
namespace {

TEST(UniformSubsetTest, DistinctAndInRangeWithAndWithoutMarks) {
  Rng rng(1);
  for (bool use_marks : {false, true}) {
    for (uint64_t n : {1u, 2u, 7u, 100u}) {
      for (uint64_t k : {0u, 1u, 5u, 100u, 1000u}) {
        std::vector<uint64_t> out(std::max<uint64_t>(k, 1), ~0ULL);
        std::vector<uint8_t> marks(n, 0);
        const uint64_t got = uniform_subset(n, k, rng, out.data(), use_marks ? marks.data() : nullptr);
        ASSERT_EQ(got, std::min(n, k));
        std::set<uint64_t> distinct(out.begin(), out.begin() + got);
        EXPECT_EQ(distinct.size(), got);
        for (uint64_t v : distinct) EXPECT_LT(v, n);
        for (uint8_t m : marks) ASSERT_EQ(m, 0) << "marks must be cleared on return";
      }
    }
  }
}

TEST(PassOrderTest, EveryIndexOncePerPassThenANewOrder) {
  Rng rng(3);
  PassOrder pass;
  for (uint64_t n : {1u, 2u, 5u, 37u, 64u, 1000u}) {
    const uint64_t k = std::max<uint64_t>(1, n / 4);
    std::vector<uint64_t> out(k);
    std::vector<uint64_t> first_pass;
    std::set<uint64_t> seen;
    for (uint64_t d = 0; d < n / k; ++d) {  // whole draws of one pass
      ASSERT_EQ(pass.next(n, k, rng, out.data()), k);
      for (uint64_t v : out) {
        ASSERT_LT(v, n);
        EXPECT_TRUE(seen.insert(v).second) << "index " << v << " twice in one pass (n=" << n << ")";
        first_pass.push_back(v);
      }
    }
    if (n % k == 0) {
      EXPECT_EQ(seen.size(), n);
    }
    ASSERT_EQ(pass.next(n, k, rng, out.data()), k);  // fewer than k left (or none): a new pass
    EXPECT_EQ(pass.state().position, k);
  }
}

TEST(PassOrderTest, NewPassWhenTheDomainChangesAndStateRoundTrips) {
  Rng rng(4);
  PassOrder pass;
  uint64_t out[8];
  pass.next(100, 8, rng, out);
  EXPECT_EQ(pass.state().n, 100u);
  pass.next(101, 8, rng, out);
  EXPECT_EQ(pass.state().n, 101u);
  EXPECT_EQ(pass.state().position, 8u);
  PassOrder twin;
  twin.set_state(pass.state());
  Rng rng_twin = rng;
  uint64_t a[8], b[8];
  for (int i = 0; i < 20; ++i) {
    pass.next(101, 8, rng, a);
    twin.next(101, 8, rng_twin, b);
    ASSERT_TRUE(std::equal(a, a + 8, b));
  }
  EXPECT_NE(PassOrder::check({1, 5, 4}), nullptr);
  EXPECT_EQ(PassOrder::check({1, 4, 4}), nullptr);
}

TEST(PassOrderTest, EachIndexEquallyOftenOverManyPasses) {
  Rng rng(5);
  PassOrder pass;
  const uint64_t n = 10, k = 3;  // 3 draws per pass, one index skipped per pass
  std::vector<uint64_t> counts(n, 0);
  uint64_t out[3];
  for (int d = 0; d < 30000; ++d) {
    pass.next(n, k, rng, out);
    for (uint64_t v : out) ++counts[v];
  }
  for (uint64_t c : counts) EXPECT_NEAR(static_cast<double>(c), 9000.0, 400.0);
}

TEST(UniformSubsetTest, EmptyPopulation) {
  Rng rng(2);
  uint64_t out[1] = {99};
  EXPECT_EQ(uniform_subset(0, 5, rng, out, nullptr), 0u);
  EXPECT_EQ(out[0], 99u);
}

TEST(UniformSubsetTest, MarksAndScanGiveTheSameDraws) {
  Rng a(3), b(3);
  std::vector<uint64_t> x(20), y(20);
  std::vector<uint8_t> marks(50, 0);
  for (int t = 0; t < 50; ++t) {
    uniform_subset(50, 20, a, x.data(), marks.data());
    uniform_subset(50, 20, b, y.data(), nullptr);
    ASSERT_EQ(x, y);
  }
}

TEST(UniformSubsetTest, ElementsAndFirstPositionRoughlyUniform) {
  Rng rng(4);
  const int n = 10, k = 3, trials = 20000;
  std::vector<int> member(n, 0), first(n, 0);
  std::vector<uint64_t> out(k);
  for (int t = 0; t < trials; ++t) {
    uniform_subset(n, k, rng, out.data(), nullptr);
    for (uint64_t v : out) member[v] += 1;
    first[out[0]] += 1;  // shuffled: the first entry is uniform too
  }
  const double em = trials * double(k) / n, ef = trials / double(n);
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(member[i], em, 6 * std::sqrt(em)) << i;
    EXPECT_NEAR(first[i], ef, 6 * std::sqrt(ef)) << i;
  }
}

TEST(DrawPlanTest, SplitsDrawsByRank) {
  DrawPlan plan(16);
  Rng rng(5);
  const std::vector<uint64_t> counts = {3, 0, 5, 2};
  plan.plan(counts, 16, rng);  // more than held: takes everything
  EXPECT_EQ(plan.total(), 10u);
  ASSERT_EQ(plan.num_ranks(), 4u);
  size_t next = 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    EXPECT_EQ(plan.offset(p), next);
    EXPECT_EQ(plan.count(p), counts[p]);
    std::set<uint32_t> slots(plan.slots().begin() + plan.offset(p),
                             plan.slots().begin() + plan.offset(p) + plan.count(p));
    EXPECT_EQ(slots.size(), counts[p]);
    for (uint32_t s : slots) EXPECT_LT(s, counts[p]);
    next += plan.count(p);
  }
}

TEST(DrawPlanTest, EmptyAndZero) {
  DrawPlan plan(4);
  Rng rng(6);
  plan.plan({0, 0}, 4, rng);
  EXPECT_EQ(plan.total(), 0u);
  EXPECT_EQ(plan.count(0), 0u);
  EXPECT_EQ(plan.count(1), 0u);
  plan.plan({5, 5}, 0, rng);
  EXPECT_EQ(plan.total(), 0u);
  plan.plan({}, 4, rng);
  EXPECT_EQ(plan.total(), 0u);
  EXPECT_EQ(plan.num_ranks(), 0u);
}

TEST(DrawPlanTest, RanksSupplyDrawsInProportionToTheirCounts) {
  DrawPlan plan(8);
  Rng rng(7);
  const std::vector<uint64_t> counts = {10, 30, 60};
  std::vector<double> got(3, 0);
  std::vector<std::vector<int>> slot_hits(3);
  for (size_t p = 0; p < 3; ++p) slot_hits[p].assign(counts[p], 0);
  const int trials = 5000;
  for (int t = 0; t < trials; ++t) {
    plan.plan(counts, 8, rng);
    ASSERT_EQ(plan.total(), 8u);
    for (size_t p = 0; p < 3; ++p) {
      got[p] += plan.count(p);
      for (size_t i = 0; i < plan.count(p); ++i) slot_hits[p][plan.slots()[plan.offset(p) + i]] += 1;
    }
  }
  for (size_t p = 0; p < 3; ++p) {
    const double expected = trials * 8.0 * counts[p] / 100.0;
    EXPECT_NEAR(got[p], expected, 0.03 * expected) << "rank " << p;
    const double per_slot = trials * 8.0 / 100.0;
    for (int h : slot_hits[p]) EXPECT_NEAR(h, per_slot, 6 * std::sqrt(per_slot));
  }
}

TEST(DrawPlanTest, NoReallocationOnceReserved) {
  DrawPlan plan(32);
  Rng rng(8);
  const std::vector<uint64_t> counts = {100, 100, 100, 100};
  plan.plan(counts, 32, rng);  // first call sizes the per-rank offsets
  const uint32_t* data = plan.slots().data();
  for (int t = 0; t < 100; ++t) {
    plan.plan(counts, 1 + t % 32, rng);
    EXPECT_EQ(plan.slots().data(), data);
  }
}

TEST(DrawPlanTest, SameSeedSamePlan) {
  auto run = [](uint64_t seed) {
    DrawPlan plan(10);
    Rng rng(seed);
    std::vector<uint32_t> all;
    for (int t = 0; t < 20; ++t) {
      plan.plan({50, 20, 30}, 10, rng);
      all.insert(all.end(), plan.slots().begin(), plan.slots().end());
    }
    return all;
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

}  // namespace
}  // namespace reverie
