#pragma once
// One zero-initialised, 64-byte aligned allocation owned by RAII; size() is the usable bytes.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace reverie {

class AlignedBlock {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr size_t kHugePage = size_t{2} << 20;

  AlignedBlock() = default;
  explicit AlignedBlock(size_t bytes) : bytes_(round_up(bytes)) {
    if (bytes_ == 0) return;
    // Large blocks (buffers of many samples) are aligned to 2 MiB and asked for transparent
    // huge pages: draws read rows at random, and fewer TLB misses make those reads faster.
    const bool huge = bytes_ >= kHugePage;
    const size_t alloc = huge ? (bytes_ + kHugePage - 1) / kHugePage * kHugePage : bytes_;
    void* p = std::aligned_alloc(huge ? kHugePage : kAlignment, alloc);
    if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p, alloc, MADV_HUGEPAGE);  // advisory: ignored where unsupported
#endif
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
