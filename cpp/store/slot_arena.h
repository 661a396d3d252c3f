#pragma once
// Fixed-size slots for `capacity` samples in one aligned allocation, one region per column.
// No policy and no locking: the owner decides which slot to touch and serialises access.
#include <cstddef>
#include <cstring>

#include "common/columns.h"
#include "store/aligned_block.h"

namespace reverie {

class SlotArena {
 public:
  SlotArena(SampleLayout layout, size_t capacity);

  const SampleLayout& layout() const { return layout_; }
  size_t capacity() const { return capacity_; }
  size_t nbytes() const { return block_.size(); }

  // Columns of all slots; row i is slot i. Used by transports to expose the memory.
  const Columns& columns() const { return columns_; }

  // Copies row `src_row` of `src` into `slot`. A null weight column means weight 1.0.
  void copy_in(size_t slot, const ConstColumns& src, size_t src_row);
  // Copies `slot` into row `dst_row` of `dst`.
  void copy_out(size_t slot, const Columns& dst, size_t dst_row) const;
  // Copies slots[0, k) into rows [first_row, first_row + k) of `dst`, column by column
  // (the hot path of every draw). Slots must be < capacity().
  template <typename Slot>
  void copy_out_rows(const Slot* slots, size_t k, const Columns& dst, size_t first_row) const;

 private:
  SampleLayout layout_;
  size_t capacity_;
  AlignedBlock block_;
  Columns columns_;
};

template <typename Slot>
void SlotArena::copy_out_rows(const Slot* slots, size_t k, const Columns& dst, size_t first_row) const {
  for (size_t c = 0; c < layout_.num_columns(); ++c) {
    const size_t bytes = layout_.row_bytes(c);
    const std::byte* src = columns_.base[c];
    std::byte* out = dst.base[c] + first_row * bytes;
    // Fixed sizes let the compiler inline the label (8 bytes) and weight (4 bytes) copies.
    switch (bytes) {
      case 4:
        for (size_t i = 0; i < k; ++i) std::memcpy(out + i * 4, src + size_t(slots[i]) * 4, 4);
        break;
      case 8:
        for (size_t i = 0; i < k; ++i) std::memcpy(out + i * 8, src + size_t(slots[i]) * 8, 8);
        break;
      default:
        for (size_t i = 0; i < k; ++i) std::memcpy(out + i * bytes, src + size_t(slots[i]) * bytes, bytes);
    }
  }
}

}  // namespace reverie
