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
#include "policy/candidate_selection.h"

namespace reverie {
namespace {

// The hot windows, sleeps and chunk size (kHotWait, kBackToBack, kClaimWindow, kParkedSpin,
// kCopyChunkBytes, kInsertMinSleep, ...), each with the measurement that chose it, are in
// common/tuning.h.
using namespace tuning::engine;

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
  draw = Draw{next_ticket_, r, true, false, false, 0};
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

RehearsalEngine::Draw* RehearsalEngine::next_draw() {
  if (drawing_) return nullptr;
  Draw* todo = nullptr;
  for (Draw& d : draws_) {
    if (!d.pending || d.finished) continue;
    if (d.started) return nullptr;  // one at a time
    if (todo == nullptr || d.ticket < todo->ticket) todo = &d;
  }
  return todo;
}

RehearsalEngine::Draw* RehearsalEngine::parked_draw() {
  if (drawing_) return nullptr;
  for (Draw& d : draws_)
    if (d.pending && d.started && !d.finished) return &d;
  return nullptr;
}

void RehearsalEngine::finish(Draw& slot, size_t rows) {
  slot.rows = rows;
  slot.finished = true;
  drawing_ = false;
  drive_parked_ = false;
  cv_.notify_all();
  if (next_draw() != nullptr) worker_cv_.notify_one();
}

template <typename Step>
bool RehearsalEngine::own_draw(std::unique_lock<std::mutex>& lock, Draw& slot, Step step) {
  drawing_ = true;
  slot.started = true;
  const Draw draw = slot;
  lock.unlock();
  std::optional<size_t> rows;
  try {
    rows = step(draw);
  } catch (...) {
    lock.lock();
    finish(slot, 0);
    throw;
  }
  lock.lock();
  if (rows) {
    finish(slot, *rows);
    return true;
  }
  drawing_ = false;
  cv_.notify_all();  // a waiter sleeping on the parked draw takes over
  if (drive_parked_) worker_cv_.notify_one();
  return false;
}

void RehearsalEngine::execute_draw(std::unique_lock<std::mutex>& lock, Draw& slot) {
  own_draw(lock, slot, [this](const Draw& draw) -> std::optional<size_t> {
    begin_draw(draw, false);
    return end_draw(draw);
  });
}

void RehearsalEngine::release_claim() {
  // Without a claim the worker was woken for every draw requested meanwhile.
  if (!caller_claims_ || next_draw() == nullptr) return;
  caller_claims_ = false;
  worker_cv_.notify_one();
}

void RehearsalEngine::worker_draw(std::unique_lock<std::mutex>& lock, Draw& slot) {
  worker_drawing_ = true;
  struct Owner {
    bool& flag;
    ~Owner() { flag = false; }  // mu_ is held again by then, on return and on a throw
  } owner{worker_drawing_};
  own_draw(lock, slot, [this](const Draw& draw) -> std::optional<size_t> {
    if (is_small(draw.r)) {
      begin_draw(draw, false);  // eager replies: nothing worth taking over
    } else if (!begin_draw(draw, true) && !transport_->drive_fetch([this] { return take_over_.load(); })) {
      return std::nullopt;
    }
    return end_draw(draw);
  });
}

void RehearsalEngine::ask_worker_to_park(std::unique_lock<std::mutex>& lock, Draw& slot, Clock::time_point until) {
  const uint64_t ticket = slot.ticket;
  take_over_.store(true);
  cv_.wait_until(lock, until, [&] { return slot.ticket != ticket || slot.finished || parked_draw() == &slot; });
  take_over_.store(false);
}

void RehearsalEngine::start_inline(std::unique_lock<std::mutex>& lock, Draw& slot) {
  own_draw(lock, slot, [this](const Draw& draw) -> std::optional<size_t> {
    if (!begin_draw(draw, true)) return std::nullopt;
    return end_draw(draw);
  });
}

bool RehearsalEngine::drive_parked(std::unique_lock<std::mutex>& lock, Draw& slot, Clock::time_point until,
                                   bool once) {
  const bool small = is_small(slot.r);
  const bool done = own_draw(lock, slot, [&](const Draw& draw) -> std::optional<size_t> {
    if (once) return transport_->poll_fetch() ? std::optional(end_draw(draw)) : std::nullopt;
    const auto give_up = [&] { return Clock::now() >= until; };
    if (!small) return transport_->drive_fetch(give_up) ? std::optional(end_draw(draw)) : std::nullopt;
    // A small draw's replies are eager: poll for the step held up by it, hot and then gently.
    Backoff backoff(kParkedMaxSleep, kParkedSpin);
    while (!transport_->poll_fetch()) {
      if (give_up()) return std::nullopt;
      transport_->serve_waiting();
      backoff.pause();
    }
    return end_draw(draw);
  });
  if (!done && !small) {  // a large transfer moves only while polled: the worker goes on with it
    drive_parked_ = true;
    worker_cv_.notify_one();
  }
  return done;
}

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

bool RehearsalEngine::begin_draw(const Draw& draw, bool split) {
  draw_started_ = Clock::now();
  const size_t slot = draw.ticket % 2;
  const int world = world_size();
  {
    std::lock_guard lock(mu_);
    exclude_foreign_senders();
    plan_counts_ = sizes_;
    for (int p = 0; p < world; ++p)
      if (excluded_[p]) plan_counts_[p] = 0;
  }
  plan_counts_[self_] = buffer_->size();
  plan_.plan(plan_counts_, draw.r, draw_rng_);

  const Columns& dest = blocks_[slot].columns();
  keep_.assign(world, true);
  // The local rows, copied in chunks of about kCopyChunkBytes; between chunks the peers'
  // waiting requests are answered (see Transport::serve_all_waiting), so none waits for
  // the whole copy. A small draw's local rows are one chunk.
  auto gather_local = [&] {
    const uint32_t* slots = plan_.slots().data() + plan_.offset(self_);
    const size_t count = plan_.count(self_);
    const size_t chunk = std::max<size_t>(1, kCopyChunkBytes / buffer_->layout().sample_bytes());
    bool kept = true;
    for (size_t first = 0; first < count; first += chunk) {
      if (first > 0 && transport_) transport_->serve_all_waiting();
      kept = buffer_->gather(slots + first, std::min(chunk, count - first), dest, plan_.offset(self_) + first) && kept;
    }
    keep_[self_] = kept;
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
    return true;
  }
  // The local rows are copied while the peers' rows travel.
  const auto deadline = Clock::now() + options_.timeout;
  if (split) return transport_->start_fetch(requests_, dest, deadline, replies_, gather_local);
  transport_->fetch_overlapped(requests_, dest, deadline, replies_, gather_local);
  return true;
}

size_t RehearsalEngine::end_draw(const Draw& draw) {
  const size_t slot = draw.ticket % 2;
  std::vector<bool>& keep = keep_;

  uint64_t failed = 0;
  uint64_t remote_rows = 0;
  bool timed_out = false;
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
      // A peer with another job's token belongs to a different job: as loud as a dead one.
      if (reply.status == wire::Status::kTimeout || reply.status == wire::Status::kClosing ||
          reply.status == wire::Status::kBadToken) {
        excluded_[reply.peer] = true;
        stats_.peers_timed_out += reply.status == wire::Status::kTimeout;
        timed_out |= reply.status == wire::Status::kTimeout;
        stats_.bad_token_replies += reply.status == wire::Status::kBadToken;
        std::fprintf(stderr, "reverie: rank %d: peer %d %s; excluding it from future draws\n", self_, reply.peer,
                     wire::to_string(reply.status));
      } else {
        sizes_[reply.peer] = reply.owner_size;
      }
    }
  }
  if (timed_out) retire_block(slot, keep);
  const size_t rows = compact(slot, keep);
  std::lock_guard lock(mu_);
  stats_.draws += 1;
  stats_.rows_drawn += rows;
  stats_.rows_remote += remote_rows;
  stats_.bytes_remote += remote_rows * buffer_->layout().sample_bytes();
  stats_.failed_requests += failed;
  stats_.fetch_ns += elapsed_ns(draw_started_);
  return rows;
}

void RehearsalEngine::retire_block(size_t slot, const std::vector<bool>& keep_rank) {
  const SampleLayout& layout = buffer_->layout();
  StagingBlock fresh(layout, options_.max_representatives);
  const Columns& from = blocks_[slot].columns();
  for (size_t p = 0; p < keep_rank.size(); ++p) {
    const size_t first = plan_.offset(p), n = plan_.count(p);
    if (!keep_rank[p] || n == 0) continue;
    for (size_t c = 0; c < layout.num_columns(); ++c)
      std::memcpy(fresh.columns().at(layout, c, first), from.at(layout, c, first), n * layout.row_bytes(c));
  }
  retired_blocks_.push_back(std::move(blocks_[slot]));
  blocks_[slot] = std::move(fresh);
  block_generation_[slot].fetch_add(1);
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

void RehearsalEngine::exclude_foreign_senders() {
  if (!transport_) return;
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
  if (transport_) s.bad_token_requests = transport_->foreign_requests().count();
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
  drive_parked_ = parked_draw() != nullptr;
  worker_cv_.notify_one();  // inserts queued without waking the worker
  const bool quiet = cv_.wait_for(lock, options_.timeout, [&] {
    const auto busy = [](const Draw& d) { return d.pending && !d.finished; };
    return queue_count_ == 0 && !applying_ && !busy(draws_[0]) && !busy(draws_[1]);
  });
  if (!quiet) throw TimeoutError("save: pending adds and draws did not finish within the timeout");
  return EngineState{select_rng_.state(), draw_rng_.state(), sizes_};
}

void RehearsalEngine::restore(const EngineState& state) {
  if (!Rng::usable(state.select_rng)) throw std::invalid_argument("state: select_rng is all zero");
  if (!Rng::usable(state.draw_rng)) throw std::invalid_argument("state: draw_rng is all zero");
  std::lock_guard lock(mu_);
  if (state.sizes.size() != sizes_.size())
    throw std::invalid_argument("state: sizes are for " + std::to_string(state.sizes.size()) + " ranks, not " +
                                std::to_string(sizes_.size()));
  select_rng_.set_state(state.select_rng);
  draw_rng_.set_state(state.draw_rng);
  sizes_ = state.sizes;
}

}  // namespace reverie
