#include "store/slot_arena.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace reverie {
namespace {

// Throws instead of wrapping around when capacity x sample bytes does not fit in size_t.
size_t arena_bytes(const SampleLayout& layout, size_t capacity) {
  size_t total = 0;
  for (size_t c = 0; c < layout.num_columns(); ++c) {
    const size_t row = layout.row_bytes(c);
    if (capacity != 0 && row > (SIZE_MAX - AlignedBlock::kAlignment) / capacity / (layout.num_columns() + 1))
      throw std::invalid_argument("capacity: capacity x sample bytes overflows the address space");
    total += AlignedBlock::round_up(row * capacity);
  }
  return total;
}

}  // namespace

SlotArena::SlotArena(SampleLayout layout, size_t capacity)
    : layout_(std::move(layout)), capacity_(capacity), block_(arena_bytes(layout_, capacity)) {
  if (capacity == 0) throw std::invalid_argument("capacity: expected at least 1 slot");
  std::byte* next = block_.data();
  for (size_t c = 0; c < layout_.num_columns(); ++c) {
    columns_.base[c] = next;
    next += AlignedBlock::round_up(layout_.row_bytes(c) * capacity_);
  }
  columns_.rows = capacity_;
}

void SlotArena::copy_in(size_t slot, const ConstColumns& src, size_t src_row) {
  for (size_t c = 0; c < layout_.num_columns(); ++c) {
    std::byte* dst = columns_.at(layout_, c, slot);
    if (src.base[c] == nullptr) {
      const float one = 1.0f;
      std::memcpy(dst, &one, sizeof one);
      continue;
    }
    std::memcpy(dst, src.at(layout_, c, src_row), layout_.row_bytes(c));
  }
}

void SlotArena::copy_out(size_t slot, const Columns& dst, size_t dst_row) const {
  for (size_t c = 0; c < layout_.num_columns(); ++c)
    std::memcpy(dst.at(layout_, c, dst_row), columns_.at(layout_, c, slot), layout_.row_bytes(c));
}

}  // namespace reverie
