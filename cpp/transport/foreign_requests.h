#pragma once
// Requests that carried another job's token: a rank of a different job, or one whose token
// changed after bootstrap. They are answered kBadToken; this counts them and names the
// senders, so the split is loud on the owner's side too (the requester sees kBadToken).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <vector>

namespace reverie {

class ForeignRequests {
 public:
  // peer: the sender's rank, or -1 when the engine cannot tell. Warns once per sender.
  void record(int peer) {
    std::lock_guard lock(mu_);
    count_.fetch_add(1, std::memory_order_release);
    if (!senders_.insert(peer).second) return;
    if (peer >= 0) {
      std::fprintf(stderr, "reverie: rejected a request from rank %d carrying another job's token; "
                           "excluding it from this rank's draws\n", peer);
    } else {
      std::fprintf(stderr, "reverie: rejected a request carrying another job's token\n");
    }
  }
  // Lock-free: the engine reads it on every draw to see whether peers() changed.
  uint64_t count() const { return count_.load(std::memory_order_acquire); }
  // Senders with a known rank.
  std::vector<int> peers() const {
    std::lock_guard lock(mu_);
    std::vector<int> out;
    for (int p : senders_)
      if (p >= 0) out.push_back(p);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::atomic<uint64_t> count_{0};
  std::set<int> senders_;
};

}  // namespace reverie
