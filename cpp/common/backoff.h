#pragma once
// Polling without burning a core: yield (stay hot) for a while after activity, so traffic
// that keeps flowing sees no sleep at all, then sleep with pauses doubling up to
// `max_sleep`, so an idle poller costs almost nothing.
//
// Why time-based: MPI moves a large message in chunks, and each chunk needs a progress
// call on both sides; a poller that sleeps between calls (a Linux sleep lasts at least the
// thread's timer slack, 50 us by default) stretches a 4 MB transfer from ~3 ms to ~50 ms.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>
#include <thread>

#include "common/tuning.h"
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace reverie {

class Backoff {
 public:
  using Clock = std::chrono::steady_clock;

  // Yields for `spin_for` after construction or reset(), then sleeps from `min_sleep`
  // doubling up to `max_sleep`.
  Backoff(std::chrono::microseconds max_sleep, std::chrono::microseconds spin_for,
          std::chrono::microseconds min_sleep = tuning::kDefaultMinSleep)
      : max_sleep_(max_sleep), spin_for_(spin_for), min_sleep_(min_sleep) {
    reset();
  }

  void reset() { reset(spin_for_); }

  // Starts a new round with a different hot window (e.g. longer while requests come in a burst).
  void reset(std::chrono::microseconds spin_for) {
    spin_until_ = Clock::now() + spin_for;
    sleep_ = min_sleep_;
  }

  void pause() {
    if (const auto sleep = next_sleep()) {
      std::this_thread::sleep_for(*sleep);
      return;
    }
    std::this_thread::yield();
  }

  // The sleep the next pause takes (doubling it for the one after), or nullopt while hot:
  // for callers that sleep in a way that can be interrupted.
  std::optional<std::chrono::microseconds> next_sleep() {
    if (Clock::now() < spin_until_) return std::nullopt;
    const auto sleep = sleep_;
    sleep_ = std::min(sleep_ * 2, max_sleep_);
    return sleep;
  }

  // Lets the calling thread's short sleeps end on time (Linux pads every sleep by the
  // thread's timer slack, 50 us by default). Call once from a polling thread.
  static void tighten_timer_slack() {
#ifdef __linux__
    prctl(PR_SET_TIMERSLACK, tuning::kTimerSlackNs, 0, 0, 0);  // 1 us
#endif
  }

  // Lowers the calling thread's scheduling priority (nice +5 relative to the process), so
  // that a background thread waking up to poll does not preempt the training thread on a
  // busy core (each wake-up preemption costs the preempted thread its cache, tens of us
  // in a VM); it still gets the CPU at once on an idle core, and its fair share on a busy
  // one. Call once from a background thread; best effort.
  static void lower_priority() {
#ifdef __linux__
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    errno = 0;
    const int nice_now = getpriority(PRIO_PROCESS, tid);
    if (errno == 0) setpriority(PRIO_PROCESS, tid, std::min(nice_now + tuning::kBackgroundNice, 19));
#endif
  }

 private:
  std::chrono::microseconds max_sleep_;
  std::chrono::microseconds spin_for_;
  std::chrono::microseconds min_sleep_;
  Clock::time_point spin_until_;
  std::chrono::microseconds sleep_;
};

}  // namespace reverie
