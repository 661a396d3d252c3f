#pragma once
// The background side of a distributed buffer. add() copies the chosen candidates into a
// bounded queue and returns; request() schedules a global draw into one of two receive
// blocks. One worker thread applies inserts and runs draws (draws first: they are on the
// training loop's critical path); a caller waiting for a draw the worker has not started
// runs it itself. Draws run one at a time. Every blocking call has a deadline.
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "buffer/local_buffer.h"
#include "engine/staging_block.h"
#include "sampling/draw_plan.h"
#include "transport/transport.h"

namespace reverie {

struct EngineOptions {
  uint32_t max_representatives = 64;
  uint32_t candidates = 0;   // rows offered per add(); 0: all
  size_t queue_blocks = 8;   // back-pressure: add() waits when this many adds are queued
  size_t queue_rows = 256;   // rows per queued block; larger adds use several blocks
  std::chrono::milliseconds timeout{30000};
  uint64_t seed = 0;
};

// What a checkpoint needs besides the buffer to replay the same draws after a restore.
struct EngineState {
  Rng::State select_rng{};
  Rng::State draw_rng{};
  std::vector<uint64_t> sizes;  // peers' sizes as last learnt
};

struct EngineStats {
  uint64_t draws = 0;
  uint64_t rows_drawn = 0;
  uint64_t rows_remote = 0;
  uint64_t bytes_remote = 0;
  uint64_t inserts = 0;          // add() calls applied
  uint64_t rows_offered = 0;
  uint64_t fetch_ns = 0;         // time spent in draws (worker or waiting caller)
  uint64_t insert_ns = 0;        // worker time spent applying inserts
  uint64_t add_wait_ns = 0;      // caller time blocked by a full queue
  uint64_t failed_requests = 0;
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

  // Schedules a draw of up to r samples; returns its ticket. Receive blocks alternate, so
  // a draw's rows stay valid until the ticket after next. Waits for that block's
  // previous draw to finish first (bounded by the timeout).
  uint64_t request(uint32_t r);
  bool done(uint64_t ticket) const;
  // Waits for the draw; returns false on timeout. Throws for an unknown or stale ticket.
  // When the worker has not started the draw yet, no insert is queued and `timeout` covers
  // the engine's, the calling thread runs the draw itself: no hand-off to the worker and back.
  bool wait(uint64_t ticket, std::chrono::milliseconds timeout);
  size_t rows(uint64_t ticket) const;
  const Columns& block(uint64_t ticket) const { return blocks_[ticket % 2].columns(); }
  const int32_t* ranks(uint64_t ticket) const { return ranks_[ticket % 2].data(); }

  std::vector<uint64_t> known_sizes() const;
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
    bool finished = false;
    size_t rows = 0;
  };

  void run();
  // The draw to run next (lowest ticket first, one at a time), or nullptr. mu_ held.
  Draw* next_draw();
  // Runs `slot` on the calling thread (mu_ held by `lock`, released meanwhile).
  void execute_draw(std::unique_lock<std::mutex>& lock, Draw& slot);
  void run_draw(Draw& draw);
  void apply_insert(size_t block);
  size_t compact(size_t slot, const std::vector<bool>& keep_rank);
  void stop_worker();

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
  Draw draws_[2];
  uint64_t next_ticket_ = 0;
  Clock::time_point last_request_at_{};
  bool requests_back_to_back_ = false;  // the last two requests came within kBackToBack
  bool drawing_ = false;  // a draw is running, on the worker or on a waiting caller

  // Planning state of the one running draw (sizes_ and excluded_ are read under mu_).
  Rng draw_rng_;
  DrawPlan plan_;
  std::vector<uint64_t> sizes_;
  std::vector<bool> excluded_;
  std::vector<PeerRequest> requests_;
  std::vector<PeerReply> replies_;
  std::vector<uint64_t> plan_counts_;
  std::vector<bool> keep_;

  EngineStats stats_;
  bool stopping_ = false;
  bool closed_ = false;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::thread worker_;
};

}  // namespace reverie
