#pragma once
// Internal to the rehearsal engine's files: the short hot wait before sleeping on a
// condition variable, and the stopwatch behind EngineStats.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/tuning.h"
#include "transport/transport.h"

namespace reverie::engine_detail {

using namespace tuning::engine;
// Waits for `ready` (mu_ held by `lock`): yields for kHotWait, then returns; the caller
// goes on to sleep on the condition variable if needed.
template <typename Ready>
inline void wait_hot(std::unique_lock<std::mutex>& lock, Ready ready) {
  const auto until = Clock::now() + kHotWait;
  while (!ready() && Clock::now() < until) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
}

inline uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

}  // namespace reverie::engine_detail
