#pragma once
// One zero-initialised, 64-byte aligned allocation owned by RAII.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace reverie {

class AlignedBlock {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBlock() = default;
  explicit AlignedBlock(size_t bytes) : bytes_(round_up(bytes)) {
    if (bytes_ == 0) return;
    void* p = std::aligned_alloc(kAlignment, bytes_);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes_);
    data_.reset(static_cast<std::byte*>(p));
  }

  std::byte* data() const { return data_.get(); }
  size_t size() const { return bytes_; }

  static size_t round_up(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  size_t bytes_ = 0;
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace reverie
