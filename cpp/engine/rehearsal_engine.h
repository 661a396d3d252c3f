#pragma once
// The background side of a distributed buffer. add() copies the chosen candidates into a
// bounded queue and returns; request() schedules a global draw into one of two receive
// blocks. One worker thread applies inserts and runs draws (draws first: they are on the
// training loop's critical path); a caller waiting for a draw the worker has not started
// runs it itself. Draws run one at a time. Every blocking call has a deadline.
//
// A small draw (replies that travel without polling, see Transport::splittable_fetch_bytes)
// starts on the caller of request(): its requests go out and its local rows are copied
// there and then (a few us, no waiting), and the draw is left "parked" while the replies
// travel. done() and wait() finish it on their caller; the worker only finishes parked
// draws that somebody else waits for (close, checkpoint, the next draw). In training this
// saves the worker's wake-up and its polling every step: on a box with fewer cores than
// threads, CPU taken from the training step itself.
//
// A caller that waits for a large draw the worker is running takes it over: the worker
// leaves it parked at its next poll and the caller finishes it. The worker runs at nice +5
// so that it does not preempt the training thread; a caller waiting for it, with nothing
// else to do, finishes the transfer at its own priority (with MPI the requester's polls
// do the copying: single-copy reads happen inside them). A caller that waits for each
// draw right after requesting it runs its draws itself, and request() then stops waking
// the worker for them (caller_claims_) until a caller leaves one to it.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "buffer/local_buffer.h"
#include "common/tuning.h"
#include "sampling/draw_plan.h"
#include "store/staging_block.h"
#include "transport/transport.h"

namespace reverie {

struct EngineOptions {
  uint32_t max_representatives = 64;
  uint32_t candidates = 0;   // rows offered per add(); 0: all
  size_t queue_blocks = 8;   // back-pressure: add() waits when this many adds are queued
  size_t queue_rows = 256;   // rows per queued block; larger adds use several blocks
  std::chrono::milliseconds timeout{30000};
  uint64_t seed = 0;
  bool passes = false;  // draws walk passes over the global buffer (PassOrder), not independent
  // A draw sends requests only to the owners its plan takes rows from, and plans with the
  // peers' sizes as last heard (from any request or reply between the two ranks). A size
  // query goes with the next draw to a peer not full and not heard from during this draw if
  // it was growing (heard once only, or its size changed between two hearings), and to any
  // peer not full that nothing was heard from for this many of this rank's draws. So a
  // growing peer's size is at most one draw old, a settled one's at most this many, a full
  // one's is final. README "How draws learn the peers' sizes".
  uint32_t size_refresh = 8;
};

// What a checkpoint needs besides the buffer to replay the same draws after a restore.
struct EngineState {
  Rng::State select_rng{};
  Rng::State draw_rng{};
  std::vector<uint64_t> sizes;  // peers' sizes as last learnt
  PassOrder::State pass{};      // with EngineOptions::passes: where the draws are in their pass
};

struct EngineStats {
  uint64_t draws = 0;
  uint64_t rows_drawn = 0;
  uint64_t rows_remote = 0;
  uint64_t bytes_remote = 0;
  uint64_t inserts = 0;          // add() calls applied
  uint64_t rows_offered = 0;
  uint64_t fetch_ns = 0;         // time spent in draws (worker or waiting caller)
  // Of fetch_ns: copying the draw's local rows, then waiting for the owners' answers and
  // for their rows (Transport::take_fetch_waits; 0 for engines that do not report them).
  uint64_t local_ns = 0;
  uint64_t answer_wait_ns = 0;
  uint64_t rows_wait_ns = 0;
  uint64_t insert_ns = 0;        // worker time spent applying inserts
  uint64_t add_wait_ns = 0;      // caller time blocked by a full queue
  uint64_t requests_sent = 0;    // draw requests to owners the plan took rows from
  uint64_t size_messages = 0;    // size queries: to a peer not heard from for size_refresh draws, or never
  uint64_t failed_requests = 0;
  uint64_t peers_timed_out = 0;     // peers excluded because they did not answer in time
  uint64_t bad_token_replies = 0;   // our requests a peer rejected for another job's token
  uint64_t bad_token_requests = 0;  // peers' requests this rank rejected for that reason
  uint64_t reply_staging_bytes = 0;  // memory this rank's server holds to stage replies (Transport)
};

class RehearsalEngine {
 public:
  RehearsalEngine(std::shared_ptr<LocalBuffer> buffer, std::shared_ptr<Transport> transport, EngineOptions options);
  ~RehearsalEngine();
  RehearsalEngine(const RehearsalEngine&) = delete;
  RehearsalEngine& operator=(const RehearsalEngine&) = delete;

  int rank() const { return transport_ ? transport_->rank() : 0; }
  int world_size() const { return transport_ ? transport_->world_size() : 1; }
  const LocalBuffer& buffer() const { return *buffer_; }

  // Validates labels (std::invalid_argument, nothing queued), then copies the chosen
  // candidates into the queue. Blocks only while the queue is full; throws TimeoutError
  // after the timeout. With wake=false the worker is not woken for it: the insert waits
  // for the worker's next wake-up (a request(), flush(), or a half-full queue), which
  // saves a thread hand-off when a draw is requested right after.
  void add(const ConstColumns& rows, bool wake = true);
  // Waits until every queued add is applied; false on timeout.
  bool flush(std::chrono::milliseconds timeout);

  // Schedules a draw of up to r samples; returns its ticket. A draw lands in the receive
  // block the previous draw did not use, so its rows stay valid until the ticket after
  // next; or, when the previous draw was released (release()), in that draw's block, which
  // the caches still hold. Waits for the previous draw of its slot to finish first
  // (bounded by the timeout).
  uint64_t request(uint32_t r);
  // The caller is done with a finished draw's rows: if no draw was requested after it, the
  // next one lands in its receive block. 28 x 602 KB draws over MPICH (2 ranks, 2-core dev
  // box, shm and UCX) took 0.61-0.70 of the raw exchange's bandwidth alternating between
  // two 17 MB blocks, 0.83-0.86 landing in one. False when a later draw was requested
  // (nothing changes); throws for an unknown ticket or a draw not finished.
  bool release(uint64_t ticket);
  // Never blocks; moves a parked draw on (answering peers' waiting requests too).
  bool done(uint64_t ticket);
  // Waits for the draw; returns false on timeout. Throws for an unknown or stale ticket.
  // When the worker has not started the draw yet, no insert is queued and `timeout` covers
  // the engine's, the calling thread runs the draw itself: no hand-off to the worker and back.
  bool wait(uint64_t ticket, std::chrono::milliseconds timeout);
  size_t rows(uint64_t ticket) const;
  // Which of the two receive blocks (0 or 1) the draw lands in; throws for an unknown or
  // superseded ticket.
  size_t block_of(uint64_t ticket) const;
  const Columns& receive_block(size_t which) const { return blocks_.at(which).columns(); }
  const int32_t* receive_ranks(size_t which) const { return ranks_.at(which).data(); }
  const Columns& block(uint64_t ticket) const { return receive_block(block_of(ticket)); }
  const int32_t* ranks(uint64_t ticket) const { return receive_ranks(block_of(ticket)); }
  // Bumped each time receive block `which` is replaced (retire_block): views of the old
  // block stay valid, but new draws land in the new one.
  uint64_t block_generation(size_t which) const { return block_generation_[which % 2].load(); }

  std::vector<uint64_t> known_sizes() const;
  // The next draw asks every peer its size (and so tells them this rank's): for a task
  // boundary, where a commit changes sizes by a whole task's rows at once.
  void refresh_sizes();
  std::vector<int> excluded_peers() const;
  EngineStats stats() const;

  // Applies queued adds, finishes draws in flight, then closes the transport
  // (collective). Returns false when a peer did not join before the timeout.
  bool close();
  // Waits (bounded by the timeout) until no add is queued and no draw is in flight, then
  // returns the planning state. Throws TimeoutError if the engine does not go quiet.
  EngineState quiesce_and_snapshot();
  // Replaces the planning state (after the buffer itself was restored).
  void restore(const EngineState& state);

  // Not collective: stops the worker and the server without waiting for peers.
  void abandon();

 private:
  struct Draw {
    uint64_t ticket = 0;
    uint32_t r = 0;
    bool pending = false;
    bool started = false;   // its requests are out
    bool finished = false;
    size_t rows = 0;
    size_t block = 0;  // the receive block it lands in
  };
  // Without a transport (one process), draws of at most this many bytes start on the
  // caller of request(); larger ones are copied by the worker. Queued inserts of at most
  // this many bytes are applied by a caller of request() that started its draw.
  static constexpr size_t kLocalInlineBytes = tuning::engine::kLocalInlineBytes;

  void run();
  // Whether a draw of r rows is small: its replies travel without polling, so it may
  // start on the caller of request() and park (see Transport::splittable_fetch_bytes).
  bool is_small(uint32_t r) const {
    const size_t split = transport_ ? transport_->splittable_fetch_bytes() : kLocalInlineBytes;
    return r * buffer_->layout().sample_bytes() <= split;
  }
  // The draw to start next (lowest ticket first, one at a time), or nullptr. mu_ held.
  Draw* next_draw();
  // The draw that is started but not finished and that nobody is moving on, or nullptr.
  Draw* parked_draw();
  // Runs `step(draw)` for `slot` owning the draw (drawing_), without mu_ (held by `lock`).
  // `step` returns the draw's rows once it completed, else nullopt (the draw stays parked);
  // a throw finishes it with no rows. Returns whether it completed.
  template <typename Step>
  bool own_draw(std::unique_lock<std::mutex>& lock, Draw& slot, Step step);
  // Runs `slot` on the calling thread (mu_ held by `lock`, released meanwhile).
  void execute_draw(std::unique_lock<std::mutex>& lock, Draw& slot);
  // Runs `slot` on the worker; leaves it parked when a waiting caller takes it over.
  void worker_draw(std::unique_lock<std::mutex>& lock, Draw& slot);
  // Hands draws that are waiting to start back to the worker (see caller_claims_). mu_ held.
  void release_claim();
  // Asks the worker to park the draw it is running (see worker_draw), so that the caller
  // can finish it; waits until it is parked or finished, or `until`. mu_ held by `lock`.
  void ask_worker_to_park(std::unique_lock<std::mutex>& lock, Draw& slot, Clock::time_point until);
  // Starts `slot` on the caller of request() and leaves it parked unless it completes at once.
  void start_inline(std::unique_lock<std::mutex>& lock, Draw& slot);
  // Moves the parked `slot` on until it completes or `until` passes (polling at most
  // once when `once`); true when it completed. A large draw left unfinished goes back to
  // the worker: its transfer moves only while somebody polls.
  bool drive_parked(std::unique_lock<std::mutex>& lock, Draw& slot, Clock::time_point until, bool once);
  // Plans the draw, sends its requests and copies its local rows; with `split`, returns
  // before the replies are in (false: poll the transport until it completes).
  bool begin_draw(const Draw& draw, bool split);
  // Takes the sizes the server heard from peers' requests since the last draw (mu_ held).
  void absorb_heard_sizes();
  // Before the first plan: asks every peer never heard from for its size and waits.
  void learn_unknown_sizes(size_t block);
  // Records what a reply says of its owner; false for a reply that failed (mu_ held).
  bool take_reply(const PeerReply& reply, bool& timed_out);
  // `peer` holds `size` samples (final when `full`), heard during this draw (mu_ held).
  void learned(int peer, uint64_t size, bool full);
  // Whether the next draw must ask `peer` for its size (mu_ held).
  bool size_stale(int peer) const {
    if (heard_at_[peer] == kNever) return true;
    if (full_[peer]) return false;
    const uint64_t age = draws_begun_ - heard_at_[peer];
    return (growing_[peer] && age >= 1) || age >= options_.size_refresh;
  }
  // Reads the replies of a completed fetch, compacts the rows and counts the draw.
  size_t end_draw(const Draw& draw);
  // Marks `slot` finished with `rows` and wakes every waiter (mu_ held).
  void finish(Draw& slot, size_t rows);
  // Applies queued block `block` to the buffer; with `try_only`, only if the buffer's writer
  // lock is free at once (else false, nothing done).
  bool apply_insert(size_t block, bool try_only);
  // Removes the applied head block from the queue (mu_ held).
  void pop_insert();
  // Applies small queued inserts on the calling thread, as long as the buffer's writer lock
  // is free (never waits for it); the worker applies the rest. mu_ held by `lock`.
  void apply_inline(std::unique_lock<std::mutex>& lock);
  size_t compact(size_t block, const std::vector<bool>& keep_rank);
  // A peer that timed out may still write its rows late (a bulk push already on its way, a
  // receive the MPI library could not cancel), into memory a later draw would reuse. The
  // block is retired instead (kept, never reused, until the engine is destroyed) and the
  // rows of the ranks in keep_rank are copied to a fresh one.
  void retire_block(size_t block, const std::vector<bool>& keep_rank);
  // Marks peers whose requests carried another job's token as excluded (mu_ held); a
  // count compare per draw unless a new one came.
  void exclude_foreign_senders();
  uint64_t foreign_seen_ = 0;
  void stop_worker();
  // Answers peers' waiting requests from the calling thread (see Transport::serve_waiting).
  void serve_peers() {
    if (transport_) transport_->serve_waiting();
  }

  std::shared_ptr<LocalBuffer> buffer_;
  std::shared_ptr<Transport> transport_;
  EngineOptions options_;
  int self_ = 0;

  // Insert queue: ring of blocks, guarded by mu_.
  std::vector<StagingBlock> queue_;
  std::vector<size_t> queue_fill_;
  size_t queue_head_ = 0;
  size_t queue_count_ = 0;
  bool applying_ = false;
  Rng select_rng_;

  // Draws: two receive blocks.
  std::vector<StagingBlock> blocks_;
  std::vector<std::vector<int32_t>> ranks_;
  std::vector<StagingBlock> retired_blocks_;  // see retire_block
  std::atomic<uint64_t> block_generation_[2] = {0, 0};
  Draw draws_[2];
  size_t latest_block_ = 1;       // the receive block of the draw requested last
  bool latest_released_ = false;  // ... and whether the caller released it
  uint64_t next_ticket_ = 0;
  Clock::time_point last_request_at_{};
  bool requests_back_to_back_ = false;  // the last two requests came within kBackToBack
  bool drawing_ = false;  // a thread is starting or moving on a draw (owns the transport's fetch)
  bool drive_parked_ = false;  // somebody waits for the parked draw: the worker finishes it
  bool worker_drawing_ = false;  // the worker owns the draw in flight
  // The last draw was run by a caller that waited for it right after requesting it: new
  // draws are left to it (the worker is not woken for them) until a caller leaves one.
  bool caller_claims_ = false;
  std::atomic<bool> take_over_{false};  // a caller asks the worker to park its draw
  Clock::time_point draw_started_{};

  // Planning state of the one running draw (sizes_ and excluded_ are read under mu_).
  Rng draw_rng_;
  DrawPlan plan_;
  PassOrder pass_;
  std::vector<uint64_t> sizes_;
  std::vector<bool> excluded_;
  std::vector<bool> full_;            // the peer's buffer was full when last heard: its size is final
  std::vector<bool> growing_;         // heard once only, or its size changed between two draws' hearings
  std::vector<uint64_t> heard_at_;    // draws_begun_ when the peer's size was last heard; kNever
  std::vector<uint64_t> seen_stamp_;  // the transport's PeerSizes stamps already taken
  uint64_t seen_changes_ = 0;         // PeerSizes::changes() already taken
  uint64_t draws_begun_ = 0;          // draws planned so far
  bool refresh_all_ = false;          // see refresh_sizes()
  std::vector<bool> ask_size_;        // this draw sends the peer a size query
  uint64_t draw_sent_ = 0, draw_queries_ = 0;  // this draw's requests and size queries
  uint64_t draw_local_ns_ = 0;                 // this draw's local copy
  static constexpr uint64_t kNever = UINT64_MAX;
  std::vector<PeerRequest> requests_;
  std::vector<PeerReply> replies_;
  std::vector<uint64_t> plan_counts_;
  std::vector<bool> keep_;

  EngineStats stats_;
  bool stopping_ = false;
  bool closed_ = false;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;         // callers waiting for draws, queue room, quiet
  mutable std::condition_variable worker_cv_;  // the worker waiting for work
  std::thread worker_;
};

}  // namespace reverie
