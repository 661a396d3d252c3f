#pragma once
// A sample is a row across columns: the user's fields, then the label (int64) and the
// weight (float32). Storage, staging and wire transfers all use this columnar layout, so
// a draw lands field by field directly in the tensors the caller reads.
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace reverie {

inline constexpr size_t kMaxFields = 16;
inline constexpr size_t kMaxColumns = kMaxFields + 2;

class SampleLayout {
 public:
  explicit SampleLayout(std::vector<size_t> field_bytes) : field_bytes_(std::move(field_bytes)) {
    if (field_bytes_.empty() || field_bytes_.size() > kMaxFields)
      throw std::invalid_argument("fields: expected between 1 and 16 fields");
    for (size_t b : field_bytes_)
      if (b == 0) throw std::invalid_argument("fields: every field needs at least one byte");
  }

  size_t num_fields() const { return field_bytes_.size(); }
  size_t num_columns() const { return field_bytes_.size() + 2; }
  size_t label_column() const { return field_bytes_.size(); }
  size_t weight_column() const { return field_bytes_.size() + 1; }

  size_t row_bytes(size_t column) const {
    if (column < field_bytes_.size()) return field_bytes_[column];
    return column == label_column() ? sizeof(int64_t) : sizeof(float);
  }

  size_t sample_bytes() const {
    size_t total = 0;
    for (size_t c = 0; c < num_columns(); ++c) total += row_bytes(c);
    return total;
  }

  const std::vector<size_t>& field_bytes() const { return field_bytes_; }

 private:
  std::vector<size_t> field_bytes_;
};

// Base pointers of every column of a block of rows; holds no memory.
template <typename Byte>
struct ColumnsOf {
  std::array<Byte*, kMaxColumns> base{};
  size_t rows = 0;

  Byte* at(const SampleLayout& layout, size_t column, size_t row) const {
    return base[column] + row * layout.row_bytes(column);
  }
};

using Columns = ColumnsOf<std::byte>;
using ConstColumns = ColumnsOf<const std::byte>;

inline ConstColumns as_const(const Columns& c) {
  ConstColumns out;
  for (size_t i = 0; i < kMaxColumns; ++i) out.base[i] = c.base[i];
  out.rows = c.rows;
  return out;
}

}  // namespace reverie
