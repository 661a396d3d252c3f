// ReservoirPolicy and candidate selection: quotas, slot order, reservoir replacement,
// adaptive eviction, restore validation and rough uniformity (the exact statistical tests
// live in tests/python/test_buffer_statistics.py).
#include "policy/reservoir_policy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include "policy/candidate_selection.h"

namespace reverie {
namespace {

size_t total_members(const ReservoirPolicy& p) {
  size_t n = 0;
  for (const auto& c : p.classes()) n += c.members.size();
  return n;
}

// Slots in use are exactly [0, size), each owned by one class, and label_of agrees.
void expect_consistent(const ReservoirPolicy& p) {
  std::set<uint32_t> seen;
  for (const auto& c : p.classes())
    for (uint32_t s : c.members) {
      EXPECT_LT(s, p.size());
      EXPECT_TRUE(seen.insert(s).second) << "slot " << s << " owned twice";
      EXPECT_EQ(p.label_of(s), c.label);
    }
  EXPECT_EQ(seen.size(), p.size());
  EXPECT_EQ(total_members(p), p.size());
}

TEST(ReservoirPolicyTest, RejectsBadConstruction) {
  EXPECT_THROW(ReservoirPolicy(0, std::nullopt), std::invalid_argument);
  EXPECT_THROW(ReservoirPolicy(10, 0u), std::invalid_argument);
  EXPECT_THROW(ReservoirPolicy(3, 4u), std::invalid_argument);
  EXPECT_NO_THROW(ReservoirPolicy(4, 4u));
}

TEST(ReservoirPolicyTest, AcceptsLabels) {
  ReservoirPolicy fixed(10, 5u);
  EXPECT_TRUE(fixed.accepts(0));
  EXPECT_TRUE(fixed.accepts(4));
  EXPECT_FALSE(fixed.accepts(5));
  EXPECT_FALSE(fixed.accepts(-1));
  ReservoirPolicy adaptive(10, std::nullopt);
  EXPECT_TRUE(adaptive.adaptive());
  EXPECT_TRUE(adaptive.accepts(0));
  EXPECT_TRUE(adaptive.accepts(int64_t{1} << 40));
  EXPECT_FALSE(adaptive.accepts(-3));
}

TEST(ReservoirPolicyTest, FixedQuotasFillSlotsInOrder) {
  ReservoirPolicy p(6, 3u);
  EXPECT_EQ(p.quota(), 2u);
  Rng rng(1);
  // Two of each class fill slots 0..5 in arrival order.
  const int64_t labels[] = {0, 1, 2, 0, 2, 1};
  for (uint32_t i = 0; i < 6; ++i) {
    auto slot = p.offer(labels[i], rng);
    ASSERT_TRUE(slot.has_value());
    EXPECT_EQ(*slot, i);
  }
  EXPECT_EQ(p.size(), 6u);
  expect_consistent(p);
  // A full class never takes another class's slot.
  for (int i = 0; i < 200; ++i) {
    auto slot = p.offer(0, rng);
    if (slot) {
      EXPECT_EQ(p.label_of(*slot), 0);
    }
  }
  EXPECT_EQ(p.classes()[0].seen, 202u);
  EXPECT_EQ(p.classes()[0].members.size(), 2u);
  EXPECT_EQ(p.classes()[1].members.size(), 2u);
  expect_consistent(p);
}

TEST(ReservoirPolicyTest, UnderfullFixedClassStillStoresWhenOthersAreFull) {
  ReservoirPolicy p(4, 2u);
  Rng rng(3);
  for (int i = 0; i < 50; ++i) p.offer(0, rng);
  EXPECT_EQ(p.size(), 2u);
  EXPECT_TRUE(p.offer(1, rng).has_value());
  EXPECT_TRUE(p.offer(1, rng).has_value());
  EXPECT_EQ(p.size(), 4u);
  expect_consistent(p);
}

TEST(ReservoirPolicyTest, ReplacementProbabilityIsQuotaOverSeen) {
  // After the class is full, candidate n (1-based) is kept with probability quota / n.
  const int trials = 20000;
  int kept = 0;
  Rng rng(11);
  for (int t = 0; t < trials; ++t) {
    ReservoirPolicy p(4, 1u);
    for (int i = 0; i < 9; ++i) p.offer(0, rng);
    kept += p.offer(0, rng).has_value();  // the 10th candidate: probability 4 / 10
  }
  const double expected = trials * 0.4;
  EXPECT_NEAR(kept, expected, 5 * std::sqrt(trials * 0.4 * 0.6));
}

TEST(ReservoirPolicyTest, AdaptiveQuotaShrinksAsClassesArrive) {
  ReservoirPolicy p(12, std::nullopt);
  Rng rng(5);
  EXPECT_EQ(p.quota(), 12u);
  for (int i = 0; i < 40; ++i) p.offer(7, rng);
  EXPECT_EQ(p.size(), 12u);
  EXPECT_EQ(p.classes().size(), 1u);
  EXPECT_EQ(p.classes()[0].label, 7);
  EXPECT_EQ(p.classes()[0].members.size(), 12u);

  for (int i = 0; i < 40; ++i) p.offer(3, rng);
  EXPECT_EQ(p.quota(), 6u);
  ASSERT_EQ(p.classes().size(), 2u);
  EXPECT_EQ(p.classes()[0].members.size(), 6u);
  EXPECT_EQ(p.classes()[1].members.size(), 6u);
  expect_consistent(p);

  for (int i = 0; i < 40; ++i) p.offer(100, rng);
  EXPECT_EQ(p.quota(), 4u);
  for (const auto& c : p.classes()) EXPECT_EQ(c.members.size(), 4u) << "label " << c.label;
  EXPECT_EQ(p.size(), 12u);
  expect_consistent(p);
}

TEST(ReservoirPolicyTest, AdaptiveNewClassEvictsFromTheClassMostOverQuota) {
  ReservoirPolicy p(6, std::nullopt);
  Rng rng(9);
  for (int i = 0; i < 6; ++i) p.offer(0, rng);
  // The new class's first candidate must evict one member of class 0.
  auto slot = p.offer(1, rng);
  ASSERT_TRUE(slot.has_value());
  EXPECT_EQ(p.label_of(*slot), 1);
  EXPECT_EQ(p.classes()[0].members.size(), 5u);
  EXPECT_EQ(p.size(), 6u);
  expect_consistent(p);
}

TEST(ReservoirPolicyTest, SameSeedSameDecisions) {
  auto run = [](uint64_t seed) {
    ReservoirPolicy p(10, std::nullopt);
    Rng rng(seed);
    std::vector<int64_t> out;
    for (int i = 0; i < 500; ++i) {
      auto s = p.offer(i % 7, rng);
      out.push_back(s ? static_cast<int64_t>(*s) : -1);
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(ReservoirPolicyTest, StoredPositionsAreRoughlyUniform) {
  // Each of 20 stream positions of one class should be stored with probability 4/20.
  const int trials = 4000;
  std::vector<int> hits(20, 0);
  for (int t = 0; t < trials; ++t) {
    ReservoirPolicy p(4, 1u);
    Rng rng(1000 + t);
    std::vector<int> slot_holds(4, -1);
    for (int i = 0; i < 20; ++i)
      if (auto s = p.offer(0, rng)) slot_holds[*s] = i;
    for (int pos : slot_holds) hits[pos] += 1;
  }
  const double expected = trials * 4.0 / 20.0;
  for (int i = 0; i < 20; ++i) EXPECT_NEAR(hits[i], expected, 6 * std::sqrt(expected)) << "position " << i;
}

TEST(ReservoirPolicyTest, RestoreRebuildsAndValidates) {
  ReservoirPolicy p(8, std::nullopt);
  Rng rng(2);
  for (int i = 0; i < 30; ++i) p.offer(i % 3 == 0 ? 5 : 9, rng);
  expect_consistent(p);

  ReservoirPolicy q(8, std::nullopt);
  q.restore(p.classes());
  EXPECT_EQ(q.size(), p.size());
  expect_consistent(q);
  Rng a(77), b(77);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p.offer(i % 4, a), q.offer(i % 4, b)) << "offer " << i;

  using CS = ReservoirPolicy::ClassState;
  ReservoirPolicy r(4, std::nullopt);
  EXPECT_THROW(r.restore({CS{0, 3, {0, 1, 1}}}), std::invalid_argument);            // duplicate slot
  EXPECT_THROW(r.restore({CS{0, 3, {0, 1, 3}}}), std::invalid_argument);            // hole: slot 3 >= size 3
  EXPECT_THROW(r.restore({CS{0, 5, {0, 1, 2}}, CS{1, 2, {3, 4}}}), std::invalid_argument);  // over capacity
  EXPECT_EQ(r.size(), 0u);
  ReservoirPolicy fixed(4, 2u);
  EXPECT_THROW(fixed.restore({CS{0, 1, {0}}}), std::invalid_argument);  // wrong class count
  EXPECT_NO_THROW(fixed.restore({CS{0, 1, {1}}, CS{1, 1, {0}}}));
  EXPECT_EQ(fixed.size(), 2u);
  EXPECT_EQ(fixed.label_of(0), 1);
}

TEST(ReservoirPolicyTest, RestoreChecksEveryFieldAgainstTheOthers) {
  using CS = ReservoirPolicy::ClassState;
  ReservoirPolicy fixed(6, 3u);
  EXPECT_THROW(fixed.restore({CS{100, 1, {0}}, CS{101, 1, {1}}, CS{102, 1, {2}}}), std::invalid_argument);
  EXPECT_THROW(fixed.restore({CS{0, 3, {0, 1, 2}}, CS{1, 0, {}}, CS{2, 0, {}}}), std::invalid_argument);  // > quota 2
  EXPECT_THROW(fixed.restore({CS{0, 0, {0}}, CS{1, 0, {}}, CS{2, 0, {}}}), std::invalid_argument);  // seen < members
  EXPECT_THROW(fixed.restore({CS{0, 1, {0}}, CS{1, 0, {}}, CS{2, 0, {}}}, true), std::invalid_argument);
  ReservoirPolicy adaptive(5, std::nullopt);
  EXPECT_THROW(adaptive.restore({CS{0, 4, {0, 1, 2, 3}}, CS{0, 1, {4}}}), std::invalid_argument);  // label twice
  EXPECT_THROW(adaptive.restore({CS{-1, 1, {0}}}), std::invalid_argument);
  std::vector<CS> six;
  for (int64_t label = 0; label < 6; ++label) six.push_back(CS{label, 0, {}});
  EXPECT_THROW(adaptive.restore(six), std::invalid_argument);  // more classes than slots
  EXPECT_EQ(fixed.size(), 0u);
  EXPECT_EQ(adaptive.size(), 0u);
  EXPECT_TRUE(adaptive.classes().empty());
}

TEST(ReservoirPolicyTest, AdaptiveBookkeepingIsBoundedByCapacity) {
  ReservoirPolicy p(10, std::nullopt);
  Rng rng(3);
  for (int64_t label = 0; label < 100000; ++label) p.offer(label, rng);
  EXPECT_EQ(p.classes().size(), 10u);
  EXPECT_TRUE(p.saturated());
  EXPECT_EQ(p.quota(), 0u);
  EXPECT_EQ(p.size(), 10u);
  expect_consistent(p);
  EXPECT_FALSE(p.offer(123456789, rng).has_value());
  EXPECT_EQ(p.classes().size(), 10u);
}

TEST(CandidateSelectionTest, SelectsExactlyWantedInRowOrder) {
  Rng rng(4);
  for (uint64_t wanted : {1u, 3u, 10u}) {
    std::vector<uint64_t> rows;
    select_candidates(10, wanted, rng, [&](uint64_t i) { rows.push_back(i); });
    EXPECT_EQ(rows.size(), wanted);
    for (size_t i = 1; i < rows.size(); ++i) EXPECT_LT(rows[i - 1], rows[i]);
  }
  std::vector<uint64_t> all;
  select_candidates(5, 0, rng, [&](uint64_t i) { all.push_back(i); });
  EXPECT_EQ(all, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  all.clear();
  select_candidates(5, 99, rng, [&](uint64_t i) { all.push_back(i); });
  EXPECT_EQ(all.size(), 5u);
  all.clear();
  select_candidates(0, 3, rng, [&](uint64_t i) { all.push_back(i); });
  EXPECT_TRUE(all.empty());
}

TEST(CandidateSelectionTest, EveryRowEquallyLikely) {
  Rng rng(8);
  std::vector<int> hits(16, 0);
  const int trials = 8000;
  for (int t = 0; t < trials; ++t) select_candidates(16, 4, rng, [&](uint64_t i) { hits[i] += 1; });
  const double expected = trials * 4.0 / 16.0;
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(hits[i], expected, 6 * std::sqrt(expected)) << "row " << i;
}

}  // namespace
}  // namespace reverie
