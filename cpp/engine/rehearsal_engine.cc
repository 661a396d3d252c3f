#include "engine/rehearsal_engine.h"

#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/backoff.h"
#include "common/errors.h"
#include "common/thread_name.h"
#include "common/tuning.h"
#include "engine/engine_timing.h"
#include "policy/candidate_selection.h"

namespace reverie {

using namespace engine_detail;
using namespace tuning::engine;

RehearsalEngine::RehearsalEngine(std::shared_ptr<LocalBuffer> buffer, std::shared_ptr<Transport> transport,
                                 EngineOptions options)
    : buffer_(std::move(buffer)),
      transport_(std::move(transport)),
      options_(options),
      self_(transport_ ? transport_->rank() : 0),
      queue_fill_(options.queue_blocks, 0),
      select_rng_(options.seed ^ 0x243f6a8885a308d3ULL),
      draw_rng_(options.seed ^ 0x13198a2e03707344ULL),
      plan_(options.max_representatives) {
  if (options_.max_representatives == 0) throw std::invalid_argument("max_representatives: expected at least 1");
  if (options_.queue_blocks == 0 || options_.queue_rows == 0)
    throw std::invalid_argument("queue: expected at least one block of one row");
  const SampleLayout& layout = buffer_->layout();
  queue_.reserve(options_.queue_blocks);
  for (size_t i = 0; i < options_.queue_blocks; ++i) queue_.emplace_back(layout, options_.queue_rows);
  for (int i = 0; i < 2; ++i) {
    blocks_.emplace_back(layout, options_.max_representatives);
    ranks_.emplace_back(options_.max_representatives, 0);
  }
  const int world = world_size();
  sizes_.assign(world, 0);
  excluded_.assign(world, false);
  full_.assign(world, false);
  growing_.assign(world, true);
  heard_at_.assign(world, kNever);
  heard_at_[self_] = 0;
  seen_stamp_.assign(world, 0);
  ask_size_.assign(world, false);
  requests_.reserve(world);
  replies_.reserve(world);
  worker_ = std::thread([this] { run(); });
}

RehearsalEngine::~RehearsalEngine() { stop_worker(); }

void RehearsalEngine::stop_worker() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void RehearsalEngine::add(const ConstColumns& rows, bool wake) {
  const SampleLayout& layout = buffer_->layout();
  const auto* labels = reinterpret_cast<const int64_t*>(rows.base[layout.label_column()]);
  serve_peers();
  if (auto error = buffer_->check_labels(labels, rows.rows); !error.empty()) throw std::invalid_argument(error);

  std::unique_lock lock(mu_);
  if (stopping_) throw std::runtime_error("add: the buffer is closed");
  size_t block = 0;
  bool open = false;
  auto open_block = [&] {
    const auto start = Clock::now();
    if (!cv_.wait_for(lock, options_.timeout, [&] { return queue_count_ < queue_.size() || stopping_; }))
      throw TimeoutError("add: the insert queue stayed full for the whole timeout (inserts arrive faster than they are applied)");
    if (stopping_) throw std::runtime_error("add: the buffer is closed");
    stats_.add_wait_ns += elapsed_ns(start);
    block = (queue_head_ + queue_count_) % queue_.size();
    queue_fill_[block] = 0;
    open = true;
  };
  auto publish = [&] {
    ++queue_count_;
    open = false;
    if (wake || 2 * queue_count_ >= queue_.size()) worker_cv_.notify_one();
  };
  // Selection and copies run under mu_: cheap (only c rows) and keeps the RNG sequence fixed.
  select_candidates(rows.rows, options_.candidates, select_rng_, [&](uint64_t i) {
    if (!open) open_block();
    for (size_t c = 0; c < layout.num_columns(); ++c) {
      std::byte* dst = queue_[block].columns().at(layout, c, queue_fill_[block]);
      if (rows.base[c] == nullptr) {
        const float one = 1.0f;
        std::memcpy(dst, &one, sizeof one);
      } else {
        std::memcpy(dst, rows.at(layout, c, i), layout.row_bytes(c));
      }
    }
    if (++queue_fill_[block] == options_.queue_rows) publish();
  });
  if (open) publish();
}

bool RehearsalEngine::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  worker_cv_.notify_one();  // inserts queued without waking the worker
  return cv_.wait_for(lock, timeout, [&] { return queue_count_ == 0 && !applying_; });
}

uint64_t RehearsalEngine::request(uint32_t r) {
  if (r > options_.max_representatives)
    throw std::invalid_argument("r: expected at most max_representatives=" +
                                std::to_string(options_.max_representatives) + ", got " + std::to_string(r));
  serve_peers();
  std::unique_lock lock(mu_);
  if (stopping_) throw std::runtime_error("get_remote_samples: the buffer is closed");
  Draw& draw = draws_[next_ticket_ % 2];
  if (parked_draw() != nullptr) {
    drive_parked_ = true;  // the new draw (and maybe its receive block) waits for it
    worker_cv_.notify_one();
  }
  release_claim();
  if (!cv_.wait_for(lock, options_.timeout, [&] { return !draw.pending || draw.finished; }))
    throw TimeoutError("get_remote_samples: the previous draw into this receive block did not finish in time");
  // The other block's last draw is this slot's previous one (or older): finished above.
  const size_t block = latest_released_ ? latest_block_ : 1 - latest_block_;
  draw = Draw{next_ticket_, r, true, false, false, 0, block};
  latest_block_ = block;
  latest_released_ = false;
  const auto now = Clock::now();
  requests_back_to_back_ = now - last_request_at_ < kBackToBack;
  last_request_at_ = now;
  const uint64_t ticket = next_ticket_++;
  if (is_small(r) && next_draw() == &draw) {
    start_inline(lock, draw);
    apply_inline(lock);  // as the worker would: the draw first, then the inserts
  } else if (!caller_claims_) {
    worker_cv_.notify_one();
  }
  return ticket;
}

bool RehearsalEngine::done(uint64_t ticket) {
  serve_peers();
  std::unique_lock lock(mu_);
  Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.pending) throw std::invalid_argument("ticket: unknown or superseded draw");
  if (parked_draw() == &draw) drive_parked(lock, draw, Clock::now(), true);
  release_claim();
  return draw.ticket == ticket && draw.finished;
}

bool RehearsalEngine::wait(uint64_t ticket, std::chrono::milliseconds timeout) {
  serve_peers();
  std::unique_lock lock(mu_);
  Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.pending) throw std::invalid_argument("ticket: unknown or superseded draw");
  // A draw may run as long as the engine's timeout: only a caller willing to wait that long
  // runs it. Not while inserts are queued: then the caller sleeps and the worker (at lower
  // priority) gets the CPU for them; a caller that never slept could starve it on a busy box.
  if (timeout >= options_.timeout && queue_count_ == 0 && !applying_ && next_draw() == &draw) {
    caller_claims_ = Clock::now() - last_request_at_ < kClaimWindow;
    execute_draw(lock, draw);
    return true;
  }
  release_claim();
  const auto until = Clock::now() + timeout;
  const auto ready = [&] { return draw.ticket != ticket || draw.finished; };
  // A parked draw nobody moves on is this caller's to finish (it may become parked while
  // this caller sleeps: whoever moved it on last gave up before it completed).
  const auto idle = [&] { return parked_draw() == &draw; };
  const auto on_worker = [&] { return worker_drawing_ && draw.started && !draw.finished; };
  const auto actionable = [&] { return ready() || idle() || on_worker(); };
  wait_hot(lock, actionable);
  while (!ready()) {
    if (idle()) {
      drive_parked(lock, draw, until, false);
    } else if (on_worker()) {
      ask_worker_to_park(lock, draw, until);
    } else if (!cv_.wait_until(lock, until, actionable)) {
      break;
    }
    if (Clock::now() >= until) break;
  }
  return ready() && draw.ticket == ticket;
}

bool RehearsalEngine::release(uint64_t ticket) {
  std::lock_guard lock(mu_);
  if (ticket >= next_ticket_) throw std::invalid_argument("ticket: unknown draw");
  const Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || ticket + 1 != next_ticket_) return false;
  if (!draw.finished) throw std::invalid_argument("release: the draw has not finished (wait for it first)");
  latest_released_ = true;
  return true;
}

size_t RehearsalEngine::block_of(uint64_t ticket) const {
  std::lock_guard lock(mu_);
  const Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.pending) throw std::invalid_argument("ticket: unknown or superseded draw");
  return draw.block;
}

size_t RehearsalEngine::rows(uint64_t ticket) const {
  std::lock_guard lock(mu_);
  const Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.finished) throw std::invalid_argument("ticket: draw not finished");
  return draw.rows;
}

void RehearsalEngine::run() {
  name_this_thread("reverie-worker");
  Backoff::lower_priority();
  std::unique_lock lock(mu_);
  const auto parked_to_finish = [&] { return (drive_parked_ || stopping_) ? parked_draw() : nullptr; };
  // Inserts being applied by a caller of request() (applying_) are not the worker's.
  const auto has_insert = [&] { return queue_count_ > 0 && !applying_; };
  const auto has_work = [&] {
    return stopping_ || has_insert() || next_draw() != nullptr || parked_to_finish() != nullptr;
  };
  while (true) {
    worker_cv_.wait(lock, has_work);
    if (Draw* todo = next_draw()) {
      worker_draw(lock, *todo);
      if (requests_back_to_back_) wait_hot(lock, has_work);
      continue;
    }
    if (Draw* parked = parked_to_finish()) {
      drive_parked(lock, *parked, Clock::time_point::max(), false);
      continue;
    }
    if (has_insert()) {
      const size_t block = queue_head_;
      applying_ = true;
      lock.unlock();
      apply_insert(block, false);
      lock.lock();
      applying_ = false;
      pop_insert();
      continue;
    }
    if (stopping_ && !applying_) return;
    if (applying_) {  // stopping: the caller applying an insert is about done
      lock.unlock();
      std::this_thread::yield();
      lock.lock();
    }
  }
}

std::vector<uint64_t> RehearsalEngine::known_sizes() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> sizes = sizes_;
  for (size_t p = 0; p < sizes.size(); ++p)
    if (excluded_[p]) sizes[p] = 0;
  sizes[self_] = buffer_->size();
  return sizes;
}

void RehearsalEngine::refresh_sizes() {
  std::lock_guard lock(mu_);
  refresh_all_ = true;
}

void RehearsalEngine::exclude_foreign_senders() {
  if (!transport_) return;
  const uint64_t count = transport_->foreign_requests().count();
  if (count == foreign_seen_) return;
  foreign_seen_ = count;  // peers() locks, so it sees every sender counted so far
  for (int p : transport_->foreign_requests().peers())
    if (p >= 0 && static_cast<size_t>(p) < excluded_.size() && p != self_) excluded_[p] = true;
}

std::vector<int> RehearsalEngine::excluded_peers() const {
  std::lock_guard lock(mu_);
  std::vector<bool> excluded = excluded_;
  if (transport_)
    for (int p : transport_->foreign_requests().peers())
      if (p >= 0 && static_cast<size_t>(p) < excluded.size() && p != self_) excluded[p] = true;
  std::vector<int> out;
  for (size_t p = 0; p < excluded.size(); ++p)
    if (excluded[p]) out.push_back(static_cast<int>(p));
  return out;
}

EngineStats RehearsalEngine::stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  if (transport_) {
    s.bad_token_requests = transport_->foreign_requests().count();
    s.reply_staging_bytes = transport_->reply_staging_bytes();
  }
  return s;
}

bool RehearsalEngine::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return true;
    closed_ = true;
  }
  stop_worker();
  if (!transport_) return true;
  return transport_->close(Clock::now() + options_.timeout);
}


void RehearsalEngine::abandon() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  stop_worker();
  if (transport_) transport_->abandon();
}

}  // namespace reverie

