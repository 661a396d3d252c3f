// LocalBuffer: add/sample/gather through columns, label validation that changes nothing,
// candidates per add, state/restore with identical future draws, and concurrent use.
#include "buffer/local_buffer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace reverie {
namespace {

// Field 0: 4 int32 values all equal to the sample's id; field 1: 3 bytes = id % 251.
const SampleLayout kLayout({4 * sizeof(int32_t), 3});

struct Rows {
  explicit Rows(size_t n) : ids(n * 4), small(n * 3), labels(n), weights(n), n(n) {}

  // Sample `id` with label `label` written to row i.
  void set(size_t i, int32_t id, int64_t label, float weight = 1.0f) {
    for (int j = 0; j < 4; ++j) ids[i * 4 + j] = id;
    for (int j = 0; j < 3; ++j) small[i * 3 + j] = static_cast<uint8_t>(id % 251);
    labels[i] = label;
    weights[i] = weight;
  }

  ConstColumns in(bool with_weights = true) const {
    ConstColumns c;
    c.base[0] = reinterpret_cast<const std::byte*>(ids.data());
    c.base[1] = reinterpret_cast<const std::byte*>(small.data());
    c.base[2] = reinterpret_cast<const std::byte*>(labels.data());
    c.base[3] = with_weights ? reinterpret_cast<const std::byte*>(weights.data()) : nullptr;
    c.rows = n;
    return c;
  }

  Columns out() {
    Columns c;
    c.base[0] = reinterpret_cast<std::byte*>(ids.data());
    c.base[1] = reinterpret_cast<std::byte*>(small.data());
    c.base[2] = reinterpret_cast<std::byte*>(labels.data());
    c.base[3] = reinterpret_cast<std::byte*>(weights.data());
    c.rows = n;
    return c;
  }

  // Every field of row i agrees with its id; label is id % modulus.
  void expect_row_consistent(size_t i, int64_t label_modulus) const {
    const int32_t id = ids[i * 4];
    for (int j = 1; j < 4; ++j) EXPECT_EQ(ids[i * 4 + j], id) << "row " << i;
    for (int j = 0; j < 3; ++j) EXPECT_EQ(small[i * 3 + j], static_cast<uint8_t>(id % 251)) << "row " << i;
    EXPECT_EQ(labels[i], id % label_modulus) << "row " << i;
  }

  std::vector<int32_t> ids;
  std::vector<uint8_t> small;
  std::vector<int64_t> labels;
  std::vector<float> weights;
  size_t n;
};

Rows batch(int32_t first_id, size_t n, int64_t classes) {
  Rows r(n);
  for (size_t i = 0; i < n; ++i) r.set(i, first_id + static_cast<int32_t>(i), (first_id + i) % classes, 0.25f * i);
  return r;
}

TEST(LocalBufferTest, AddThenSampleReturnsStoredRows) {
  LocalBuffer buf(kLayout, BufferOptions{8, 2u, 0, 1});
  EXPECT_EQ(buf.capacity(), 8u);
  EXPECT_EQ(buf.size(), 0u);
  Rows in = batch(0, 6, 2);
  EXPECT_EQ(buf.add(in.in()), 6u);
  EXPECT_EQ(buf.size(), 6u);

  Rows out(10);
  const size_t k = buf.sample(10, out.out());
  EXPECT_EQ(k, 6u);
  std::set<int32_t> ids;
  for (size_t i = 0; i < k; ++i) {
    out.expect_row_consistent(i, 2);
    EXPECT_EQ(out.weights[i], 0.25f * out.ids[i * 4]);
    ids.insert(out.ids[i * 4]);
  }
  EXPECT_EQ(ids, (std::set<int32_t>{0, 1, 2, 3, 4, 5}));

  EXPECT_EQ(buf.sample(0, out.out()), 0u);
  EXPECT_EQ(buf.sample(3, out.out()), 3u);
}

TEST(LocalBufferTest, RejectsBadOptionsBeforeAllocating) {
  // Would need ~100 GB if the arena were allocated before the capacity check.
  const SampleLayout big({24});
  EXPECT_THROW(LocalBuffer(big, BufferOptions{size_t{1} << 32, std::nullopt, 0, 1}), std::invalid_argument);
  EXPECT_THROW(LocalBuffer(big, BufferOptions{0, std::nullopt, 0, 1}), std::invalid_argument);
  EXPECT_THROW(LocalBuffer(big, BufferOptions{4, 5u, 0, 1}), std::invalid_argument);
  EXPECT_THROW(LocalBuffer(big, BufferOptions{4, 0u, 0, 1}), std::invalid_argument);
}

TEST(LocalBufferTest, SampleFromEmptyBuffer) {
  LocalBuffer buf(kLayout, BufferOptions{4, std::nullopt, 0, 1});
  Rows out(2);
  EXPECT_EQ(buf.sample(2, out.out()), 0u);
}

TEST(LocalBufferTest, MissingWeightsMeanOne) {
  LocalBuffer buf(kLayout, BufferOptions{4, std::nullopt, 0, 1});
  Rows in = batch(0, 3, 5);
  buf.add(in.in(/*with_weights=*/false));
  Rows out(3);
  ASSERT_EQ(buf.sample(3, out.out()), 3u);
  for (float w : out.weights) EXPECT_EQ(w, 1.0f);
}

TEST(LocalBufferTest, BadLabelChangesNothing) {
  LocalBuffer buf(kLayout, BufferOptions{8, 3u, 0, 1});
  Rows ok = batch(0, 3, 3);
  buf.add(ok.in());
  const auto before = buf.state();

  Rows bad = batch(10, 4, 3);
  bad.labels[2] = 3;  // out of [0, 3)
  EXPECT_NE(buf.check_labels(bad.labels.data(), bad.n).find("index 2"), std::string::npos);
  EXPECT_THROW(buf.add(bad.in()), std::invalid_argument);
  bad.labels[2] = -1;
  EXPECT_THROW(buf.add(bad.in()), std::invalid_argument);

  const auto after = buf.state();
  EXPECT_EQ(buf.size(), 3u);
  EXPECT_EQ(before.insert_rng, after.insert_rng);
  EXPECT_EQ(before.sample_rng, after.sample_rng);
  ASSERT_EQ(before.classes.size(), after.classes.size());
  for (size_t c = 0; c < before.classes.size(); ++c) {
    EXPECT_EQ(before.classes[c].seen, after.classes[c].seen);
    EXPECT_EQ(before.classes[c].members, after.classes[c].members);
  }

  LocalBuffer adaptive(kLayout, BufferOptions{8, std::nullopt, 0, 1});
  EXPECT_EQ(adaptive.check_labels(bad.labels.data(), bad.n).substr(0, 7), "labels:");
  EXPECT_THROW(adaptive.add(bad.in()), std::invalid_argument);
  EXPECT_EQ(adaptive.size(), 0u);
}

TEST(LocalBufferTest, OffersExactlyCandidatesPerAdd) {
  LocalBuffer buf(kLayout, BufferOptions{1000, std::nullopt, 5, 1});
  Rows in = batch(0, 20, 4);
  EXPECT_EQ(buf.add(in.in()), 5u);
  EXPECT_EQ(buf.add(in.in()), 5u);
  EXPECT_EQ(buf.size(), 10u);
  size_t seen = 0;
  for (const auto& c : buf.state().classes) seen += c.seen;
  EXPECT_EQ(seen, 10u);
  Rows small = batch(0, 3, 4);
  EXPECT_EQ(buf.add(small.in()), 3u);  // fewer rows than candidates: all offered
}

TEST(LocalBufferTest, ClassCounts) {
  LocalBuffer buf(kLayout, BufferOptions{6, 3u, 0, 1});
  Rows in(5);
  for (size_t i = 0; i < 5; ++i) in.set(i, static_cast<int32_t>(i), i < 4 ? 0 : 2);
  buf.add(in.in());
  const auto counts = buf.class_counts();
  // Class 0 is capped at its quota of 2; class 1 was never offered.
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0], (std::pair<int64_t, size_t>{0, 2}));
  EXPECT_EQ(counts[1], (std::pair<int64_t, size_t>{2, 1}));
}

TEST(LocalBufferTest, GatherValidatesSlots) {
  LocalBuffer buf(kLayout, BufferOptions{8, std::nullopt, 0, 1});
  Rows in = batch(0, 4, 3);
  buf.add(in.in());
  Rows out(4);
  std::fill(out.ids.begin(), out.ids.end(), -7);
  const uint32_t good[] = {3, 0};
  ASSERT_TRUE(buf.gather(good, 2, out.out(), 1));
  EXPECT_EQ(out.ids[0], -7);
  out.expect_row_consistent(1, 3);
  out.expect_row_consistent(2, 3);
  EXPECT_EQ(out.ids[4 * 1], 3);
  EXPECT_EQ(out.ids[4 * 2], 0);
  const uint32_t bad[] = {0, 4};
  std::fill(out.ids.begin(), out.ids.end(), -7);
  EXPECT_FALSE(buf.gather(bad, 2, out.out(), 0));
  for (int32_t v : out.ids) EXPECT_EQ(v, -7) << "a failed gather copies nothing";
}

TEST(LocalBufferTest, ReadExposesArenaAndSize) {
  LocalBuffer buf(kLayout, BufferOptions{8, std::nullopt, 0, 1});
  Rows in = batch(0, 5, 3);
  buf.add(in.in());
  size_t seen_size = 0;
  buf.read([&](const Columns& cols, size_t n) {
    seen_size = n;
    EXPECT_EQ(cols.rows, 8u);
    int64_t label;
    std::memcpy(&label, cols.at(kLayout, kLayout.label_column(), 4), sizeof label);
    EXPECT_EQ(label, 4 % 3);
  });
  EXPECT_EQ(seen_size, 5u);
}

TEST(LocalBufferTest, TryAddGivesUpWhileAReaderHoldsTheBuffer) {
  LocalBuffer buf(kLayout, BufferOptions{8, std::nullopt, 0, 1});
  Rows in = batch(0, 5, 3);
  std::optional<size_t> during;
  buf.read([&](const Columns&, size_t) {
    std::thread other([&] { during = buf.try_add(in.in()); });  // a reader holds the lock
    other.join();
  });
  EXPECT_FALSE(during.has_value());
  EXPECT_EQ(buf.size(), 0u) << "a try_add that gave up stores nothing";
  EXPECT_EQ(buf.try_add(in.in()), std::optional<size_t>(5));
  EXPECT_EQ(buf.size(), 5u);
  Rows bad = batch(0, 2, 3);
  bad.labels[1] = -1;
  EXPECT_THROW(buf.try_add(bad.in()), std::invalid_argument);
  EXPECT_EQ(buf.size(), 5u);
}

TEST(LocalBufferTest, ReadAccessHoldsTheRowsUntilReleased) {
  LocalBuffer buf(kLayout, BufferOptions{8, std::nullopt, 0, 1});
  buf.add(batch(0, 5, 3).in());
  LocalBuffer::ReadAccess access = buf.read_access();
  EXPECT_EQ(access.size, 5u);
  EXPECT_EQ(access.columns.rows, 8u);
  Rows more = batch(5, 2, 3);
  std::optional<size_t> during;
  std::thread([&] { during = buf.try_add(more.in()); }).join();
  EXPECT_FALSE(during.has_value()) << "an open reply's rows cannot change";
  LocalBuffer::ReadAccess moved = std::move(access);  // what an open reply keeps
  std::thread([&] { during = buf.try_add(more.in()); }).join();
  EXPECT_FALSE(during.has_value());
  moved = LocalBuffer::ReadAccess{};
  EXPECT_EQ(buf.try_add(more.in()), std::optional<size_t>(2)) << "released: inserts go ahead";
}

TEST(LocalBufferTest, NbytesIsArenaPlusSmallMetadata) {
  LocalBuffer buf(kLayout, BufferOptions{1000, std::nullopt, 0, 1});
  EXPECT_GE(buf.nbytes(), 1000 * kLayout.sample_bytes());
  EXPECT_LE(buf.nbytes(), 1000 * (kLayout.sample_bytes() + 32) + 64 * kLayout.num_columns());
}

TEST(LocalBufferTest, StateRestoreGivesIdenticalFuture) {
  LocalBuffer a(kLayout, BufferOptions{12, std::nullopt, 4, 7});
  for (int step = 0; step < 10; ++step) {
    Rows in = batch(step * 10, 10, 3 + step / 4);
    a.add(in.in());
  }
  const auto state = a.state();
  Rows snapshot(a.size());
  std::vector<uint32_t> all(a.size());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  ASSERT_TRUE(a.gather(all.data(), all.size(), snapshot.out(), 0));

  LocalBuffer b(kLayout, BufferOptions{12, std::nullopt, 4, 999});
  b.restore(state, snapshot.in());
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(b.class_counts(), a.class_counts());
  for (int step = 10; step < 20; ++step) {
    Rows in = batch(step * 10, 10, 6);
    EXPECT_EQ(a.add(in.in()), b.add(in.in()));
    Rows oa(5), ob(5);
    ASSERT_EQ(a.sample(5, oa.out()), b.sample(5, ob.out()));
    EXPECT_EQ(oa.ids, ob.ids);
    EXPECT_EQ(oa.labels, ob.labels);
    EXPECT_EQ(oa.weights, ob.weights);
  }

  // A mismatched row count is rejected and leaves the buffer as it was.
  Rows short_rows(1);
  const size_t size_before = b.size();
  EXPECT_THROW(b.restore(state, short_rows.in()), std::invalid_argument);
  EXPECT_EQ(b.size(), size_before);
}

TEST(LocalBufferTest, RestoreRefusesAllZeroGeneratorStates) {
  LocalBuffer a(kLayout, BufferOptions{12, std::nullopt, 0, 7});
  Rows in = batch(0, 6, 3);
  a.add(in.in());
  for (auto LocalBuffer::State::*rng : {&LocalBuffer::State::insert_rng, &LocalBuffer::State::sample_rng}) {
    auto state = a.state();
    state.*rng = Rng::State{};
    LocalBuffer b(kLayout, BufferOptions{12, std::nullopt, 0, 1});
    EXPECT_THROW(b.restore(state, in.in()), std::invalid_argument);
    EXPECT_EQ(b.size(), 0u);
  }
}

TEST(LocalBufferTest, ConcurrentAddAndSampleKeepRowsIntact) {
  LocalBuffer buf(kLayout, BufferOptions{64, 4u, 8, 3});
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int step = 0; step < 200; ++step) {
        Rows in = batch((t * 1000 + step) * 16, 16, 4);
        buf.add(in.in());
      }
    });
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&] {
      Rows out(16);
      for (int step = 0; step < 200; ++step) {
        const size_t k = buf.sample(16, out.out());
        for (size_t i = 0; i < k; ++i) {
          const int32_t id = out.ids[i * 4];
          bool ok = out.labels[i] == id % 4 && out.small[i * 3] == static_cast<uint8_t>(id % 251);
          for (int j = 1; j < 4; ++j) ok = ok && out.ids[i * 4 + j] == id;
          if (!ok) failed = true;
        }
        buf.class_counts();
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(buf.size(), 64u);
}

}  // namespace
}  // namespace reverie
