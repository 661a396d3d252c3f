#include "engine/rehearsal_engine.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/backoff.h"
#include "common/tuning.h"
#include "engine/engine_timing.h"

// The rehearsal engine's draws: which thread owns a draw (worker, caller, parked), its
// plan and fetch, the rows of peers that failed, and retired receive blocks.

namespace reverie {

using namespace engine_detail;
using namespace tuning::engine;

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

void RehearsalEngine::learned(int peer, uint64_t size, bool full) {
  // Growing: first heard, or its size changed since a hearing at an earlier draw.
  if (heard_at_[peer] == kNever) {
    growing_[peer] = true;
  } else if (heard_at_[peer] < draws_begun_) {
    growing_[peer] = size != sizes_[peer];
  } else {
    growing_[peer] = growing_[peer] || size != sizes_[peer];
  }
  sizes_[peer] = size;
  full_[peer] = full;
  heard_at_[peer] = draws_begun_;
}

void RehearsalEngine::absorb_heard_sizes() {
  if (!transport_) return;
  const PeerSizes& heard = transport_->peer_sizes();
  const uint64_t changes = heard.changes();
  if (changes == seen_changes_) return;
  seen_changes_ = changes;
  for (int p = 0; p < world_size(); ++p) {
    const PeerSizes::Heard h = heard.get(p);
    if (p == self_ || h.stamp == seen_stamp_[p]) continue;
    seen_stamp_[p] = h.stamp;
    learned(p, h.size, h.full);
  }
}

bool RehearsalEngine::take_reply(const PeerReply& reply, bool& timed_out) {
  if (reply.status == wire::Status::kOk) {
    learned(reply.peer, reply.owner_size, reply.owner_full);
    return true;
  }
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
    learned(reply.peer, reply.owner_size, reply.owner_full);
  }
  return false;
}

void RehearsalEngine::learn_unknown_sizes(size_t block) {
  requests_.clear();
  {
    std::lock_guard lock(mu_);
    for (int p = 0; p < world_size(); ++p)
      if (p != self_ && !excluded_[p] && heard_at_[p] == kNever) requests_.push_back(PeerRequest{p, nullptr, 0, 0});
    stats_.size_messages += requests_.size();
  }
  if (requests_.empty()) return;
  transport_->fetch(requests_, blocks_[block].columns(), Clock::now() + options_.timeout, replies_);
  std::lock_guard lock(mu_);
  bool timed_out = false;
  for (const PeerReply& reply : replies_) stats_.failed_requests += take_reply(reply, timed_out) ? 0 : 1;
}

bool RehearsalEngine::begin_draw(const Draw& draw, bool split) {
  draw_started_ = Clock::now();
  draw_local_ns_ = 0;
  const int world = world_size();
  {
    std::lock_guard lock(mu_);
    ++draws_begun_;
    exclude_foreign_senders();
    absorb_heard_sizes();
  }
  // A rank's first draw is not blind to its peers: it learns every size first (once).
  if (transport_) learn_unknown_sizes(draw.block);
  {
    std::lock_guard lock(mu_);
    plan_counts_ = sizes_;
    for (int p = 0; p < world; ++p) {
      if (excluded_[p]) plan_counts_[p] = 0;
      ask_size_[p] = p != self_ && !excluded_[p] && (refresh_all_ || size_stale(p));
    }
    refresh_all_ = false;
  }
  plan_counts_[self_] = buffer_->size();
  plan_.plan(plan_counts_, draw.r, draw_rng_, options_.passes ? &pass_ : nullptr);
  // Requests go only to the owners the plan takes rows from (an excluded peer has no rows),
  // plus size queries to the peers whose size is stale (EngineOptions::size_refresh).
  requests_.clear();
  draw_sent_ = draw_queries_ = 0;
  for (int p = 0; p < world; ++p) {
    const auto count = static_cast<uint32_t>(plan_.count(p));
    if (p == self_ || (count == 0 && !ask_size_[p])) continue;
    requests_.push_back(PeerRequest{p, plan_.slots().data() + plan_.offset(p), count, plan_.offset(p)});
    (count > 0 ? draw_sent_ : draw_queries_) += 1;
  }

  const Columns& dest = blocks_[draw.block].columns();
  keep_.assign(world, true);
  // The local rows, copied in chunks of about kCopyChunkBytes; between chunks the peers'
  // waiting requests are answered (see Transport::serve_all_waiting), so none waits for
  // the whole copy. A small draw's local rows are one chunk.
  auto gather_local = [&] {
    const auto copy_started = Clock::now();
    const uint32_t* slots = plan_.slots().data() + plan_.offset(self_);
    const size_t count = plan_.count(self_);
    const size_t chunk = std::max<size_t>(1, kCopyChunkBytes / buffer_->layout().sample_bytes());
    bool kept = true;
    for (size_t first = 0; first < count; first += chunk) {
      if (first > 0 && transport_) transport_->serve_all_waiting();
      kept = buffer_->gather(slots + first, std::min(chunk, count - first), dest, plan_.offset(self_) + first) && kept;
    }
    keep_[self_] = kept;
    draw_local_ns_ = elapsed_ns(copy_started);
  };
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
  std::vector<bool>& keep = keep_;

  uint64_t failed = 0;
  uint64_t remote_rows = 0;
  bool timed_out = false;
  {
    std::lock_guard lock(mu_);
    for (const PeerReply& reply : replies_) {
      if (take_reply(reply, timed_out)) {
        remote_rows += plan_.count(reply.peer);
        continue;
      }
      keep[reply.peer] = false;
      failed += 1;
    }
  }
  if (timed_out) retire_block(draw.block, keep);
  const size_t rows = compact(draw.block, keep);
  const FetchWaits waits = transport_ ? transport_->take_fetch_waits() : FetchWaits{};
  std::lock_guard lock(mu_);
  stats_.draws += 1;
  stats_.local_ns += draw_local_ns_;
  stats_.answer_wait_ns += waits.answer_ns;
  stats_.rows_wait_ns += waits.rows_ns;
  stats_.rows_drawn += rows;
  stats_.rows_remote += remote_rows;
  stats_.bytes_remote += remote_rows * buffer_->layout().sample_bytes();
  stats_.failed_requests += failed;
  stats_.requests_sent += draw_sent_;
  stats_.size_messages += draw_queries_;
  stats_.fetch_ns += elapsed_ns(draw_started_);
  return rows;
}

void RehearsalEngine::retire_block(size_t block, const std::vector<bool>& keep_rank) {
  const SampleLayout& layout = buffer_->layout();
  StagingBlock fresh(layout, options_.max_representatives);
  const Columns& from = blocks_[block].columns();
  for (size_t p = 0; p < keep_rank.size(); ++p) {
    const size_t first = plan_.offset(p), n = plan_.count(p);
    if (!keep_rank[p] || n == 0) continue;
    for (size_t c = 0; c < layout.num_columns(); ++c)
      std::memcpy(fresh.columns().at(layout, c, first), from.at(layout, c, first), n * layout.row_bytes(c));
  }
  retired_blocks_.push_back(std::move(blocks_[block]));
  blocks_[block] = std::move(fresh);
  block_generation_[block].fetch_add(1);
}

size_t RehearsalEngine::compact(size_t block, const std::vector<bool>& keep_rank) {
  size_t out = 0;
  for (size_t p = 0; p < keep_rank.size(); ++p) {
    const size_t n = plan_.count(p);
    if (!keep_rank[p] || n == 0) continue;
    if (out != plan_.offset(p)) blocks_[block].move_rows(out, plan_.offset(p), n);
    for (size_t i = 0; i < n; ++i) ranks_[block][out + i] = static_cast<int32_t>(p);
    out += n;
  }
  return out;
}

}  // namespace reverie
