#include "engine/rehearsal_engine.h"

#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/backoff.h"
#include "common/errors.h"
#include "common/thread_name.h"
#include "policy/candidate_selection.h"

namespace reverie {
namespace {

// Worker and waiter stay hot this long before sleeping on the condition variable, so
// back-to-back draws skip the wake-up of a sleeping thread (several us each way). Short:
// in training the next request comes a whole step later, and a yield loop on a box with
// fewer cores than threads takes that time from the step.
constexpr std::chrono::microseconds kHotWait{20};
// Requests closer together than this are back-to-back draws: only then does the worker
// stay hot after a draw (in training the next request comes a step later).
constexpr std::chrono::microseconds kBackToBack{1000};

// Waits for `ready` (mu_ held by `lock`): yields for kHotWait, then returns; the caller
// goes on to sleep on the condition variable if needed.
template <typename Ready>
void wait_hot(std::unique_lock<std::mutex>& lock, Ready ready) {
  const auto until = Clock::now() + kHotWait;
  while (!ready() && Clock::now() < until) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
}

uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

}  // namespace

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
  if (worker_.joinable()) worker_.join();
}

void RehearsalEngine::add(const ConstColumns& rows, bool wake) {
  const SampleLayout& layout = buffer_->layout();
  const auto* labels = reinterpret_cast<const int64_t*>(rows.base[layout.label_column()]);
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
    if (wake || 2 * queue_count_ >= queue_.size()) cv_.notify_all();
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
  cv_.notify_all();  // inserts queued without waking the worker
  return cv_.wait_for(lock, timeout, [&] { return queue_count_ == 0 && !applying_; });
}

uint64_t RehearsalEngine::request(uint32_t r) {
  if (r > options_.max_representatives)
    throw std::invalid_argument("r: expected at most max_representatives=" +
                                std::to_string(options_.max_representatives) + ", got " + std::to_string(r));
  std::unique_lock lock(mu_);
  if (stopping_) throw std::runtime_error("get_remote_samples: the buffer is closed");
  Draw& draw = draws_[next_ticket_ % 2];
  if (!cv_.wait_for(lock, options_.timeout, [&] { return !draw.pending || draw.finished; }))
    throw TimeoutError("get_remote_samples: the previous draw into this receive block did not finish in time");
  draw = Draw{next_ticket_, r, true, false, 0};
  const auto now = Clock::now();
  requests_back_to_back_ = now - last_request_at_ < kBackToBack;
  last_request_at_ = now;
  cv_.notify_all();
  return next_ticket_++;
}

bool RehearsalEngine::done(uint64_t ticket) const {
  std::lock_guard lock(mu_);
  const Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.pending) throw std::invalid_argument("ticket: unknown or superseded draw");
  return draw.finished;
}

bool RehearsalEngine::wait(uint64_t ticket, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  Draw& draw = draws_[ticket % 2];
  if (draw.ticket != ticket || !draw.pending) throw std::invalid_argument("ticket: unknown or superseded draw");
  // A draw may run as long as the engine's timeout: only a caller willing to wait that long
  // runs it. Not while inserts are queued: then the caller sleeps and the worker (at lower
  // priority) gets the CPU for them; a caller that never slept could starve it on a busy box.
  if (timeout >= options_.timeout && queue_count_ == 0 && !applying_ && next_draw() == &draw) {
    execute_draw(lock, draw);
    return true;
  }
  const auto ready = [&] { return draw.ticket != ticket || draw.finished; };
  wait_hot(lock, ready);
  return cv_.wait_for(lock, timeout, ready) && draw.ticket == ticket;
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
  const auto has_work = [&] { return stopping_ || queue_count_ > 0 || next_draw() != nullptr; };
  while (true) {
    cv_.wait(lock, has_work);
    if (Draw* todo = next_draw()) {
      execute_draw(lock, *todo);
      if (requests_back_to_back_) wait_hot(lock, has_work);
      continue;
    }
    if (queue_count_ > 0) {
      const size_t block = queue_head_;
      applying_ = true;
      lock.unlock();
      apply_insert(block);
      lock.lock();
      applying_ = false;
      queue_head_ = (queue_head_ + 1) % queue_.size();
      --queue_count_;
      cv_.notify_all();
      continue;
    }
    if (stopping_) return;
  }
}

RehearsalEngine::Draw* RehearsalEngine::next_draw() {
  if (drawing_) return nullptr;
  Draw* todo = nullptr;
  for (Draw& d : draws_)
    if (d.pending && !d.finished && (todo == nullptr || d.ticket < todo->ticket)) todo = &d;
  return todo;
}

void RehearsalEngine::execute_draw(std::unique_lock<std::mutex>& lock, Draw& slot) {
  drawing_ = true;
  Draw draw = slot;
  // Marks the draw finished (its rows: none, if it threw) and wakes the waiters either way.
  struct Finish {
    std::unique_lock<std::mutex>& lock;
    RehearsalEngine& engine;
    Draw& slot;
    const Draw& draw;
    ~Finish() {
      lock.lock();
      slot.rows = draw.rows;
      slot.finished = true;
      engine.drawing_ = false;
      engine.cv_.notify_all();
    }
  } finish{lock, *this, slot, draw};
  lock.unlock();
  run_draw(draw);
}

void RehearsalEngine::apply_insert(size_t block) {
  const auto start = Clock::now();
  ConstColumns rows = as_const(queue_[block].columns());
  rows.rows = queue_fill_[block];
  buffer_->add(rows);
  const uint64_t ns = elapsed_ns(start);
  std::lock_guard lock(mu_);
  stats_.insert_ns += ns;
  stats_.inserts += 1;
  stats_.rows_offered += rows.rows;
}

void RehearsalEngine::run_draw(Draw& draw) {
  const auto start = Clock::now();
  const size_t slot = draw.ticket % 2;
  const int world = world_size();
  {
    std::lock_guard lock(mu_);
    plan_counts_ = sizes_;
    for (int p = 0; p < world; ++p)
      if (excluded_[p]) plan_counts_[p] = 0;
  }
  plan_counts_[self_] = buffer_->size();
  plan_.plan(plan_counts_, draw.r, draw_rng_);

  const Columns& dest = blocks_[slot].columns();
  keep_.assign(world, true);
  auto gather_local = [&] {
    keep_[self_] = buffer_->gather(plan_.slots().data() + plan_.offset(self_), plan_.count(self_), dest,
                                   plan_.offset(self_));
  };
  requests_.clear();
  for (int p = 0; p < world; ++p) {
    if (p == self_ || excluded_[p]) continue;
    requests_.push_back(
        PeerRequest{p, plan_.slots().data() + plan_.offset(p), static_cast<uint32_t>(plan_.count(p)), plan_.offset(p)});
  }
  replies_.clear();
  if (requests_.empty()) {
    gather_local();
  } else {
    // The local rows are copied while the peers' rows travel.
    transport_->fetch_overlapped(requests_, dest, Clock::now() + options_.timeout, replies_, gather_local);
  }
  std::vector<bool>& keep = keep_;

  uint64_t failed = 0;
  uint64_t remote_rows = 0;
  {
    std::lock_guard lock(mu_);
    for (const PeerReply& reply : replies_) {
      if (reply.status == wire::Status::kOk) {
        sizes_[reply.peer] = reply.owner_size;
        remote_rows += plan_.count(reply.peer);
        continue;
      }
      keep[reply.peer] = false;
      failed += 1;
      if (reply.status == wire::Status::kTimeout || reply.status == wire::Status::kClosing) {
        excluded_[reply.peer] = true;
        std::fprintf(stderr, "reverie: rank %d: peer %d %s; excluding it from future draws\n", self_, reply.peer,
                     wire::to_string(reply.status));
      } else {
        sizes_[reply.peer] = reply.owner_size;
      }
    }
  }
  draw.rows = compact(slot, keep);
  std::lock_guard lock(mu_);
  stats_.draws += 1;
  stats_.rows_drawn += draw.rows;
  stats_.rows_remote += remote_rows;
  stats_.bytes_remote += remote_rows * buffer_->layout().sample_bytes();
  stats_.failed_requests += failed;
  stats_.fetch_ns += elapsed_ns(start);
}

size_t RehearsalEngine::compact(size_t slot, const std::vector<bool>& keep_rank) {
  size_t out = 0;
  for (size_t p = 0; p < keep_rank.size(); ++p) {
    const size_t n = plan_.count(p);
    if (!keep_rank[p] || n == 0) continue;
    if (out != plan_.offset(p)) blocks_[slot].move_rows(out, plan_.offset(p), n);
    for (size_t i = 0; i < n; ++i) ranks_[slot][out + i] = static_cast<int32_t>(p);
    out += n;
  }
  return out;
}

std::vector<uint64_t> RehearsalEngine::known_sizes() const {
  std::lock_guard lock(mu_);
  std::vector<uint64_t> sizes = sizes_;
  for (size_t p = 0; p < sizes.size(); ++p)
    if (excluded_[p]) sizes[p] = 0;
  sizes[self_] = buffer_->size();
  return sizes;
}

std::vector<int> RehearsalEngine::excluded_peers() const {
  std::lock_guard lock(mu_);
  std::vector<int> out;
  for (size_t p = 0; p < excluded_.size(); ++p)
    if (excluded_[p]) out.push_back(static_cast<int>(p));
  return out;
}

EngineStats RehearsalEngine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
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

}  // namespace reverie

namespace reverie {

void RehearsalEngine::abandon() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  stop_worker();
  if (transport_) transport_->abandon();
}

}  // namespace reverie

namespace reverie {

EngineState RehearsalEngine::quiesce_and_snapshot() {
  std::unique_lock lock(mu_);
  cv_.notify_all();  // inserts queued without waking the worker
  const bool quiet = cv_.wait_for(lock, options_.timeout, [&] {
    const auto busy = [](const Draw& d) { return d.pending && !d.finished; };
    return queue_count_ == 0 && !applying_ && !busy(draws_[0]) && !busy(draws_[1]);
  });
  if (!quiet) throw TimeoutError("save: pending adds and draws did not finish within the timeout");
  return EngineState{select_rng_.state(), draw_rng_.state(), sizes_};
}

void RehearsalEngine::restore(const EngineState& state) {
  std::lock_guard lock(mu_);
  if (state.sizes.size() != sizes_.size())
    throw std::invalid_argument("state: sizes are for " + std::to_string(state.sizes.size()) + " ranks, not " +
                                std::to_string(sizes_.size()));
  select_rng_.set_state(state.select_rng);
  draw_rng_.set_state(state.draw_rng);
  sizes_ = state.sizes;
}

}  // namespace reverie
