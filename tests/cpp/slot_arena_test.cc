// SlotArena: layout of the single allocation, alignment, copy in/out per column, and the
// default weight when the caller passes no weight column.
#include "store/slot_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "store/aligned_block.h"

namespace reverie {
namespace {

// Rows of a [n] batch with the given field sizes; field bytes are (row * 31 + column + byte).
struct Batch {
  Batch(const SampleLayout& layout, size_t n) : rows(n) {
    for (size_t c = 0; c < layout.num_fields(); ++c) {
      data.emplace_back(layout.row_bytes(c) * n);
      for (size_t i = 0; i < data.back().size(); ++i) data.back()[i] = std::byte(uint8_t(i * 7 + c));
    }
    labels.resize(n);
    weights.resize(n);
    for (size_t i = 0; i < n; ++i) {
      labels[i] = static_cast<int64_t>(100 + i);
      weights[i] = 0.5f + static_cast<float>(i);
    }
  }

  ConstColumns columns(const SampleLayout& layout, bool with_weights = true) const {
    ConstColumns cols;
    for (size_t c = 0; c < layout.num_fields(); ++c) cols.base[c] = data[c].data();
    cols.base[layout.label_column()] = reinterpret_cast<const std::byte*>(labels.data());
    cols.base[layout.weight_column()] = with_weights ? reinterpret_cast<const std::byte*>(weights.data()) : nullptr;
    cols.rows = rows;
    return cols;
  }

  size_t rows;
  std::vector<std::vector<std::byte>> data;
  std::vector<int64_t> labels;
  std::vector<float> weights;
};

TEST(SampleLayoutTest, ColumnsAndBytes) {
  SampleLayout layout({12, 3});
  EXPECT_EQ(layout.num_fields(), 2u);
  EXPECT_EQ(layout.num_columns(), 4u);
  EXPECT_EQ(layout.label_column(), 2u);
  EXPECT_EQ(layout.weight_column(), 3u);
  EXPECT_EQ(layout.row_bytes(0), 12u);
  EXPECT_EQ(layout.row_bytes(1), 3u);
  EXPECT_EQ(layout.row_bytes(2), sizeof(int64_t));
  EXPECT_EQ(layout.row_bytes(3), sizeof(float));
  EXPECT_EQ(layout.sample_bytes(), 12u + 3u + 8u + 4u);
}

TEST(SampleLayoutTest, RejectsBadFieldLists) {
  EXPECT_THROW(SampleLayout(std::vector<size_t>{}), std::invalid_argument);
  EXPECT_THROW(SampleLayout(std::vector<size_t>(kMaxFields + 1, 4)), std::invalid_argument);
  EXPECT_THROW(SampleLayout({4, 0}), std::invalid_argument);
  EXPECT_NO_THROW(SampleLayout(std::vector<size_t>(kMaxFields, 1)));
}

TEST(AlignedBlockTest, AlignedZeroedAndRounded) {
  AlignedBlock block(100);
  EXPECT_EQ(block.size(), 128u);
  ASSERT_NE(block.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(block.data()) % AlignedBlock::kAlignment, 0u);
  for (size_t i = 0; i < block.size(); ++i) EXPECT_EQ(block.data()[i], std::byte{0});
  AlignedBlock empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.data(), nullptr);
}

TEST(SlotArenaTest, RejectsZeroCapacity) { EXPECT_THROW(SlotArena(SampleLayout({4}), 0), std::invalid_argument); }

TEST(SlotArenaTest, RejectsSizesThatOverflowInsteadOfWrapping) {
  const size_t huge_row = size_t{1} << 40;
  EXPECT_THROW(SlotArena(SampleLayout({huge_row}), size_t{1} << 30), std::invalid_argument);
}

TEST(SlotArenaTest, OneAllocationWithAlignedColumns) {
  const SampleLayout layout({3 * 4, 5});
  SlotArena arena(layout, 10);
  EXPECT_EQ(arena.capacity(), 10u);
  const Columns& cols = arena.columns();
  EXPECT_EQ(cols.rows, 10u);
  size_t expected = 0;
  for (size_t c = 0; c < layout.num_columns(); ++c) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(cols.base[c]) % AlignedBlock::kAlignment, 0u) << "column " << c;
    if (c > 0) {
      EXPECT_EQ(cols.base[c], cols.base[c - 1] + AlignedBlock::round_up(layout.row_bytes(c - 1) * 10));
    }
    expected += AlignedBlock::round_up(layout.row_bytes(c) * 10);
  }
  EXPECT_EQ(arena.nbytes(), expected);
  EXPECT_GE(arena.nbytes(), layout.sample_bytes() * 10);
  EXPECT_LE(arena.nbytes(), layout.sample_bytes() * 10 + layout.num_columns() * AlignedBlock::kAlignment);
}

TEST(SlotArenaTest, CopyInThenOutRoundTrips) {
  const SampleLayout layout({16, 3});
  SlotArena arena(layout, 8);
  Batch batch(layout, 5);
  const ConstColumns src = batch.columns(layout);
  // Row i goes to slot 7 - i.
  for (size_t i = 0; i < 5; ++i) arena.copy_in(7 - i, src, i);

  Batch out(layout, 5);
  Columns dst;
  for (size_t c = 0; c < layout.num_fields(); ++c) dst.base[c] = out.data[c].data();
  dst.base[layout.label_column()] = reinterpret_cast<std::byte*>(out.labels.data());
  dst.base[layout.weight_column()] = reinterpret_cast<std::byte*>(out.weights.data());
  dst.rows = 5;
  for (size_t i = 0; i < 5; ++i) arena.copy_out(7 - i, dst, 4 - i);  // reversed destination rows

  for (size_t i = 0; i < 5; ++i) {
    const size_t j = 4 - i;
    for (size_t c = 0; c < layout.num_fields(); ++c)
      EXPECT_EQ(std::memcmp(out.data[c].data() + j * layout.row_bytes(c), batch.data[c].data() + i * layout.row_bytes(c),
                            layout.row_bytes(c)),
                0)
          << "row " << i << " column " << c;
    EXPECT_EQ(out.labels[j], batch.labels[i]);
    EXPECT_EQ(out.weights[j], batch.weights[i]);
  }
}

TEST(SlotArenaTest, NullWeightColumnMeansOne) {
  const SampleLayout layout({4});
  SlotArena arena(layout, 2);
  Batch batch(layout, 1);
  arena.copy_in(1, batch.columns(layout, /*with_weights=*/false), 0);
  float w = 0;
  std::memcpy(&w, arena.columns().at(layout, layout.weight_column(), 1), sizeof w);
  EXPECT_EQ(w, 1.0f);
  int64_t label = 0;
  std::memcpy(&label, arena.columns().at(layout, layout.label_column(), 1), sizeof label);
  EXPECT_EQ(label, 100);
}

TEST(SlotArenaTest, OverwriteReplacesEveryColumn) {
  const SampleLayout layout({8});
  SlotArena arena(layout, 1);
  Batch a(layout, 2);
  a.weights[1] = 9.0f;
  arena.copy_in(0, a.columns(layout), 0);
  arena.copy_in(0, a.columns(layout), 1);
  EXPECT_EQ(std::memcmp(arena.columns().base[0], a.data[0].data() + 8, 8), 0);
  int64_t label = 0;
  float w = 0;
  std::memcpy(&label, arena.columns().base[1], sizeof label);
  std::memcpy(&w, arena.columns().base[2], sizeof w);
  EXPECT_EQ(label, 101);
  EXPECT_EQ(w, 9.0f);
}

}  // namespace
}  // namespace reverie
