#include "engine/rehearsal_engine.h"

#include <chrono>

#include "common/backoff.h"
#include "common/tuning.h"
#include "engine/engine_timing.h"

// The rehearsal engine's insert queue: queued adds applied to the buffer by the worker,
// or inline by a caller, without blocking peers that read the buffer.

namespace reverie {

using namespace engine_detail;
using namespace tuning::engine;

bool RehearsalEngine::apply_insert(size_t block, bool try_only) {
  const auto start = Clock::now();
  ConstColumns rows = as_const(queue_[block].columns());
  rows.rows = queue_fill_[block];
  if (try_only) {
    if (!buffer_->try_add(rows)) return false;
  } else {
    // Open replies keep the rows read-locked until their requesters have read them; this
    // thread moves them on rather than waiting for the server thread's next probe.
    Backoff backoff(kInsertMaxSleep, std::chrono::microseconds(0), kInsertMinSleep);
    while (!buffer_->try_add(rows)) {
      serve_peers();
      backoff.pause();
    }
  }
  const uint64_t ns = elapsed_ns(start);
  std::lock_guard lock(mu_);
  stats_.insert_ns += ns;
  stats_.inserts += 1;
  stats_.rows_offered += rows.rows;
  return true;
}

void RehearsalEngine::pop_insert() {
  queue_head_ = (queue_head_ + 1) % queue_.size();
  --queue_count_;
  cv_.notify_all();
}

void RehearsalEngine::apply_inline(std::unique_lock<std::mutex>& lock) {
  const size_t sample_bytes = buffer_->layout().sample_bytes();
  while (queue_count_ > 0 && !applying_ && queue_fill_[queue_head_] * sample_bytes <= kLocalInlineBytes) {
    const size_t block = queue_head_;
    applying_ = true;
    lock.unlock();
    bool applied = false;
    try {
      applied = apply_insert(block, true);
    } catch (...) {
      lock.lock();
      applying_ = false;
      throw;
    }
    lock.lock();
    applying_ = false;
    if (!applied) break;  // the worker waits for the lock instead
    pop_insert();
  }
  if (queue_count_ > 0 && !applying_) worker_cv_.notify_one();
}

}  // namespace reverie
