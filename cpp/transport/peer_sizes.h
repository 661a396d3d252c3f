#pragma once
// Peers' buffer sizes as this rank hears them, from any thread: its server records the size
// each request carries (wire::RequestHeader::sender_size), its draws the size each reply
// carries. The engine reads what changed when it plans a draw. Lock-free, so a server
// thread or an RPC handler never waits for a planner.
#include <atomic>
#include <cstdint>
#include <memory>

namespace reverie {

class PeerSizes {
 public:
  struct Heard {
    uint64_t size = 0;
    bool full = false;
    uint64_t stamp = 0;  // bumped on every hearing; 0: never heard
  };

  void reset(int world) {
    world_ = world;
    value_ = std::make_unique<std::atomic<uint64_t>[]>(world);
    stamp_ = std::make_unique<std::atomic<uint64_t>[]>(world);
    for (int p = 0; p < world; ++p) {
      value_[p].store(0, std::memory_order_relaxed);
      stamp_[p].store(0, std::memory_order_relaxed);
    }
  }

  // Ignores a peer outside [0, world): a request's rank field is the sender's word.
  void heard(int peer, uint64_t size, bool full) {
    if (peer < 0 || peer >= world_) return;
    value_[peer].store(size << 1 | (full ? 1 : 0), std::memory_order_relaxed);
    stamp_[peer].fetch_add(1, std::memory_order_release);
    changes_.fetch_add(1, std::memory_order_release);
  }

  // Hearings so far, over all peers: a planner skips the per-peer scan while it is unchanged.
  uint64_t changes() const { return changes_.load(std::memory_order_acquire); }

  Heard get(int peer) const {
    Heard out;
    if (peer < 0 || peer >= world_) return out;
    out.stamp = stamp_[peer].load(std::memory_order_acquire);
    const uint64_t v = value_[peer].load(std::memory_order_relaxed);
    out.size = v >> 1;
    out.full = (v & 1) != 0;
    return out;
  }

 private:
  int world_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> value_;
  std::unique_ptr<std::atomic<uint64_t>[]> stamp_;
  std::atomic<uint64_t> changes_{0};
};

}  // namespace reverie
