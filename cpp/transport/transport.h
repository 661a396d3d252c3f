#pragma once
// What an engine must do to make every rank's buffer part of one global buffer: serve its
// own slots to peers, and fetch named slots from peers straight into destination rows.
// Engines: transport/mpi (portable) and transport/thallium (HPC fabrics).
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "common/columns.h"
#include "transport/foreign_requests.h"
#include "transport/peer_sizes.h"
#include "transport/wire_format.h"

namespace reverie {

using Clock = std::chrono::steady_clock;

struct PeerRequest {
  int peer = 0;
  const uint32_t* slots = nullptr;
  uint32_t count = 0;      // 0: only ask how many samples the peer holds (a size query)
  size_t first_row = 0;    // rows [first_row, first_row + count) of the destination
};

// Where a requester's waits went, summed over its fetches (ns): waiting for its owners'
// answers (a request's trip, the owner noticing it and posting the reply, the answer's
// trip), then for the rows that follow them. Each counts only time the requester waited
// after its own local work, so a reply that came during that work costs nothing here.
struct FetchWaits {
  uint64_t answer_ns = 0;
  uint64_t rows_ns = 0;
};

struct PeerReply {
  int peer = 0;
  wire::Status status = wire::Status::kTimeout;
  uint64_t owner_size = 0;
  bool owner_full = false;  // the owner's buffer is at capacity: its size is final
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const char* name() const = 0;

  // Sends every request, then blocks until each has a reply or `deadline` passes.
  // replies[i] answers requests[i]. Rows of a failed request are left unspecified.
  // Called by one thread at a time; `dest` must stay valid until it returns.
  virtual void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                     std::vector<PeerReply>& replies) = 0;

  // As fetch(), and runs `local_work` on the calling thread once every request is on its
  // way, so the requester's own copies overlap the peers' transfers. Engines that cannot
  // overlap keep this default: local_work first, then fetch().
  virtual void fetch_overlapped(const std::vector<PeerRequest>& requests, const Columns& dest,
                                Clock::time_point deadline, std::vector<PeerReply>& replies,
                                const std::function<void()>& local_work) {
    local_work();
    fetch(requests, dest, deadline, replies);
  }

  // Split form of fetch_overlapped(), for callers that must not wait on the network: sends
  // every request and runs `local_work`, then returns true if every reply is already in.
  // Otherwise the fetch stays open: poll_fetch() moves it on without blocking and returns
  // true once it is complete (replies in, or failed at `deadline`). Only for fetches of
  // at most splittable_fetch_bytes() when the caller leaves it open while doing other work
  // (larger ones need polling while they move: drive_fetch() them). One thread at a time
  // may start or poll; requests, dest and replies must stay valid until it completes.
  // Fetches of at most this many row bytes may be split: their replies travel without
  // this side's help (small, eager messages), so an open fetch needs no polling to move.
  virtual size_t splittable_fetch_bytes() const { return 0; }
  virtual bool start_fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                           std::vector<PeerReply>& replies, const std::function<void()>& local_work) {
    fetch_overlapped(requests, dest, deadline, replies, local_work);
    return true;
  }
  virtual bool poll_fetch() { return true; }
  // Moves an open fetch on, with the transport's own polling policy, until it completes
  // (true) or give_up() returns true (false: the fetch stays open, to be moved on later).
  virtual bool drive_fetch(const std::function<bool()>& give_up) {
    while (!poll_fetch()) {
      if (give_up()) return false;
      std::this_thread::yield();
    }
    return true;
  }

  // Answers peers' requests that are waiting, on the calling thread, when their replies
  // are small enough to go out without waiting; cheap when none is waiting. In lockstep
  // training a peer's request is often here by the time this rank reaches its step
  // boundary, and answering it there saves a server thread's wake-up. Engines whose own
  // progress threads serve do nothing.
  virtual void serve_waiting() {}
  // As serve_waiting(), and answers large requests too, where answering only posts the
  // reply (the requester moves it): for a caller in the middle of a long local copy, whose
  // peers would otherwise wait for its server thread to get a core.
  virtual void serve_all_waiting() { serve_waiting(); }

  // Collective: stops serving once every rank has stopped fetching, or at `deadline`
  // (a dead peer cannot hang it). Returns false when the deadline cut it short.
  virtual bool close(Clock::time_point deadline) = 0;

  // Not collective: stops serving at once (process exit without close()).
  virtual void abandon() = 0;

  // The waits of the fetches completed since the last call (then reset). Engines whose
  // replies do not come in two steps report none.
  virtual FetchWaits take_fetch_waits() { return {}; }

  // Requests this rank's server answered (errors included).
  virtual uint64_t requests_served() const { return 0; }

  // Bytes this rank's server holds to stage replies (copies of rows sent packed), kept for
  // reuse; 0 for engines that send every row from its slot.
  virtual size_t reply_staging_bytes() const { return 0; }

  // Peers' requests this rank's server rejected for another job's token.
  const ForeignRequests& foreign_requests() const { return foreign_; }

  // Sizes the peers' requests to this rank's server carried (their own buffers').
  const PeerSizes& peer_sizes() const { return peer_sizes_; }

 protected:
  ForeignRequests foreign_;
  PeerSizes peer_sizes_;  // reset(world) by each transport's constructor, before its server starts
};

}  // namespace reverie
