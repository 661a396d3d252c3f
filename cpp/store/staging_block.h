#pragma once
// Preallocated rows in the sample layout: receive memory for draws and queued inserts.
// Allocated once; the memory never moves, so peers and CUDA can register it once.
#include <cstring>

#include "common/columns.h"
#include "store/aligned_block.h"

namespace reverie {

class StagingBlock {
 public:
  StagingBlock(const SampleLayout& layout, size_t rows) : layout_(&layout), rows_(rows), block_(bytes(layout, rows)) {
    std::byte* next = block_.data();
    for (size_t c = 0; c < layout.num_columns(); ++c) {
      columns_.base[c] = next;
      next += AlignedBlock::round_up(layout.row_bytes(c) * rows);
    }
    columns_.rows = rows;
  }

  const Columns& columns() const { return columns_; }
  size_t rows() const { return rows_; }

  // Moves rows [from, from + n) to start at row `to` in every column (to < from).
  void move_rows(size_t to, size_t from, size_t n);

 private:
  static size_t bytes(const SampleLayout& layout, size_t rows) {
    size_t total = 0;
    for (size_t c = 0; c < layout.num_columns(); ++c) total += AlignedBlock::round_up(layout.row_bytes(c) * rows);
    return total;
  }

  const SampleLayout* layout_;
  size_t rows_;
  AlignedBlock block_;
  Columns columns_;
};

inline void StagingBlock::move_rows(size_t to, size_t from, size_t n) {
  for (size_t c = 0; c < layout_->num_columns(); ++c)
    std::memmove(columns_.at(*layout_, c, to), columns_.at(*layout_, c, from), n * layout_->row_bytes(c));
}

}  // namespace reverie
