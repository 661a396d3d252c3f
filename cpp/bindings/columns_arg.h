#pragma once
// Column pointers handed over from Python as integers (tensor.data_ptr()). Python has
// already checked shapes, dtypes, devices and contiguity; this only checks the count.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/columns.h"

namespace reverie {

template <typename Cols>
Cols columns_arg(const SampleLayout& layout, const std::vector<uintptr_t>& ptrs, size_t rows) {
  if (ptrs.size() != layout.num_columns())
    throw std::invalid_argument("columns: expected " + std::to_string(layout.num_columns()) + " pointers, got " +
                                std::to_string(ptrs.size()));
  Cols cols;
  using Ptr = std::remove_reference_t<decltype(cols.base[0])>;
  for (size_t c = 0; c < ptrs.size(); ++c) cols.base[c] = reinterpret_cast<Ptr>(ptrs[c]);
  cols.rows = rows;
  return cols;
}

}  // namespace reverie
