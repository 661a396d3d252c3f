#pragma once
// Polling without burning a core: yield for a short burst after activity (low latency
// while traffic flows), then sleep with exponentially growing pauses up to `max_sleep`.
#include <algorithm>
#include <chrono>
#include <thread>

namespace reverie {

class Backoff {
 public:
  explicit Backoff(std::chrono::microseconds max_sleep, int spins = 64) : max_sleep_(max_sleep), spins_(spins) {}

  void reset() {
    polls_ = 0;
    sleep_ = std::chrono::microseconds(2);
  }

  void pause() {
    if (polls_++ < spins_) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(sleep_);
    sleep_ = std::min(sleep_ * 2, max_sleep_);
  }

 private:
  std::chrono::microseconds max_sleep_;
  int spins_;
  int polls_ = 0;
  std::chrono::microseconds sleep_{2};
};

}  // namespace reverie
