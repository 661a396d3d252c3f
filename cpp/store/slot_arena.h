#pragma once
// Fixed-size slots for `capacity` samples in one aligned allocation, one region per column.
// No policy and no locking: the owner decides which slot to touch and serialises access.
#include <cstddef>

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

 private:
  SampleLayout layout_;
  size_t capacity_;
  AlignedBlock block_;
  Columns columns_;
};

}  // namespace reverie
