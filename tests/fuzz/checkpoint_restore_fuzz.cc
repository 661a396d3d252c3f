// libFuzzer target: the checkpoint loader's last line of defence. Whatever a rank file holds
// after Python's type checks (class list, member slots, counters, RNG words, row labels),
// LocalBuffer::restore either rejects it with std::invalid_argument, leaving the buffer as
// it was, or accepts it, and then the buffer is consistent: its size matches the members,
// every draw ends and returns stored rows, and inserts keep working.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "buffer/local_buffer.h"

namespace {

using reverie::Columns;
using reverie::ConstColumns;
using reverie::LocalBuffer;

// Reads the fuzzer's bytes as a stream of small integers (zeros once exhausted).
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t next(uint64_t bound) {  // in [0, bound)
    uint64_t v = 0;
    for (int i = 0; i < 2 && pos_ < size_; ++i) v = (v << 8) | data_[pos_++];
    return bound == 0 ? 0 : v % bound;
  }
  uint64_t word() {
    uint64_t v = 0;
    for (int i = 0; i < 8 && pos_ < size_; ++i) v = (v << 8) | data_[pos_++];
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

struct Rows {
  explicit Rows(size_t n) : x(n), labels(n), weights(n, 1.0f) {}
  ConstColumns in() const {
    ConstColumns c;
    c.base[0] = reinterpret_cast<const std::byte*>(x.data());
    c.base[1] = reinterpret_cast<const std::byte*>(labels.data());
    c.base[2] = reinterpret_cast<const std::byte*>(weights.data());
    c.rows = x.size();
    return c;
  }
  Columns out() {
    Columns c;
    c.base[0] = reinterpret_cast<std::byte*>(x.data());
    c.base[1] = reinterpret_cast<std::byte*>(labels.data());
    c.base[2] = reinterpret_cast<std::byte*>(weights.data());
    c.rows = x.size();
    return c;
  }
  std::vector<uint32_t> x;
  std::vector<int64_t> labels;
  std::vector<float> weights;
};

LocalBuffer::State decode_state(Bytes& in, size_t capacity, size_t& rows) {
  LocalBuffer::State state;
  const size_t classes = in.next(12);
  rows = 0;
  for (size_t c = 0; c < classes; ++c) {
    reverie::ReservoirPolicy::ClassState cs;
    cs.label = static_cast<int64_t>(in.next(16)) - 2;
    cs.seen = in.next(40);
    const size_t members = in.next(capacity + 3);
    for (size_t m = 0; m < members; ++m) cs.members.push_back(static_cast<uint32_t>(in.next(capacity + 4)));
    rows += cs.members.size();
    state.classes.push_back(std::move(cs));
  }
  for (auto& w : state.insert_rng) w = in.next(4) == 0 ? 0 : in.word();
  for (auto& w : state.sample_rng) w = in.next(4) == 0 ? 0 : in.word();
  state.saturated = in.next(8) == 0;
  return state;
}

void check_consistent(LocalBuffer& buf, size_t rows) {
  if (buf.size() != rows) std::abort();
  size_t counted = 0;
  for (const auto& [label, n] : buf.class_counts()) counted += n;
  if (counted != rows) std::abort();
  Rows out(8);
  const size_t k = buf.sample(8, out.out());
  if (k != std::min<size_t>(8, rows)) std::abort();
  for (size_t i = 0; i < k; ++i)
    if (out.x[i] >= rows) std::abort();  // x holds the row's index: only restored rows come back
  Rows more(4);
  for (size_t i = 0; i < 4; ++i) more.labels[i] = static_cast<int64_t>(i);
  if (buf.check_labels(more.labels.data(), 4).empty()) buf.add(more.in());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  const size_t capacity = 1 + in.next(16);
  const bool fixed = in.next(2) == 0;
  const auto classes = fixed ? std::optional<uint32_t>(1 + in.next(capacity)) : std::nullopt;
  LocalBuffer buf(reverie::SampleLayout({sizeof(uint32_t)}), reverie::BufferOptions{capacity, classes, 0, 7});
  size_t rows = 0;
  const LocalBuffer::State state = decode_state(in, capacity, rows);
  Rows table(rows);
  for (size_t i = 0; i < rows; ++i) {
    table.x[i] = static_cast<uint32_t>(i);
    table.labels[i] = static_cast<int64_t>(in.next(16)) - 2;
  }
  try {
    buf.restore(state, table.in());
  } catch (const std::invalid_argument&) {
    if (buf.size() != 0) std::abort();  // rejected: nothing changed
    return 0;
  }
  check_consistent(buf, rows);
  return 0;
}
