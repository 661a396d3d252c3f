#pragma once
// The portable engine: MPI from the job (MPI_THREAD_MULTIPLE), on a duplicated
// communicator. A server thread answers requests.
//
// Messages of one request (tags from the request id; MPI keeps same-tag messages from one
// sender in order):
//   requester -> owner  request tag:  wire::RequestHeader + slots
//   owner -> requester  header tag:   wire::Reply, then count labels (int64) and count
//                                     weights (float32) of the rows that follow
//   owner -> requester  payload tag:  per field, in field order: one message of the rows,
//                                     read straight from the slots where the library
//                                     gathers in place (MPICH's CMA, see shm_protocol.h);
//                                     elsewhere one message per row when the field's rows
//                                     are past the eager limit (sent straight from the
//                                     slots; over UCX a row a few times the limit in
//                                     eager-sized pieces), else one message of the rows packed
// Which of these, and the eager limit, is settled per pair of ranks at start-up (the path
// between them, shm_protocol.h): shared memory between ranks of one node, the library's
// network module between nodes or when the library is told to keep shared memory out.
// The requester receives every message contiguously, straight into its destination rows.
// The owner only posts a reply's sends and goes on (the requester reads the rows itself);
// the rows stay read-locked until the sends complete, which whoever polls next notices.
// Before, the server waited for each reply to be read, so on 4 ranks sharing 2 cores every
// requester queued behind the one being served: 602 KB draws of 7 took 2.0-2.5 ms, now
// 1.5-1.9 ms (raw MPI doing the same exchange: ~1.0 ms).
// With MPICH over shared memory a send-side hindexed type over the slots is one
// process_vm_readv of all rows: 12 KB rows, r = 28, one-way took 40 us against 82 us as
// one message per row (every row its own rendezvous), and 602 KB rows 1.75 ms against
// 1.85-1.92 ms. Only the sender's side may scatter: with both sides non-contiguous MPICH
// reads into a bounce buffer and unpacks (2x slower). Libraries that pack a scattered send
// (Open MPI's ob1) get one message per row past the eager limit instead: a row that
// moves by rendezvous anyway skips the owner's packing copy as its own message (for
// 602 KB rows that halved the transfer time); rows under the limit are cheaper packed.
// The requester posts every receive before sending the request, sized exactly (a longer
// message is an error, never an overrun), and withdraws the payload receives when the
// reply is an error.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "buffer/local_buffer.h"
#include "common/backoff.h"
#include "common/tuning.h"
#include "transport/mpi/shm_protocol.h"
#include "transport/transport.h"

namespace reverie {

struct MpiTransportOptions {
  uint64_t token = 0;
  uint32_t max_rows = 64;                 // most slots one request may name
  std::chrono::milliseconds send_timeout{30000};
};

class MpiTransport final : public Transport {
 public:
  MpiTransport(std::shared_ptr<const LocalBuffer> buffer, MPI_Comm parent, MpiTransportOptions options);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
             std::vector<PeerReply>& replies) override;
  void fetch_overlapped(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                        std::vector<PeerReply>& replies, const std::function<void()>& local_work) override;
  size_t splittable_fetch_bytes() const override { return least_eager_bytes_; }
  bool start_fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                   std::vector<PeerReply>& replies, const std::function<void()>& local_work) override;
  bool poll_fetch() override;
  bool drive_fetch(const std::function<bool()>& give_up) override;
  void serve_waiting() override { serve_waiting_up_to(true); }
  void serve_all_waiting() override { serve_waiting_up_to(false); }
  bool close(Clock::time_point deadline) override;
  void abandon() override { stop_server(); }

  FetchWaits take_fetch_waits() override { return std::exchange(waits_, FetchWaits{}); }
  uint64_t requests_served() const override { return served_.load(); }
  size_t reply_staging_bytes() const override { return staging_bytes_.load(std::memory_order_relaxed); }
  // Whether each field's rows go to a peer as hindexed_block messages over the slots (read
  // in place where the library can): for every peer (a job of one rank: whether a
  // shared-memory peer would).
  bool gathers_rows() const;
  // The path to each rank (this rank's own entry: what a shared-memory peer would get).
  const std::vector<PeerPath>& peer_paths() const { return paths_; }

  // Test hook (fault tests only): sends `bytes` verbatim as a request to `peer`'s server and
  // waits until `deadline` for its reply, on the tag of the id in the header or, for a
  // request whose header the server cannot read, the anonymous reply tag. Returns nullopt
  // when no reply came. Must not run while a draw is in flight on this rank.
  struct RawReply {
    wire::Reply reply{};
    bool anonymous = false;       // answered on the anonymous tag (no readable request id)
    size_t reply_bytes = 0;       // size of the header message (reply + labels + weights)
    size_t payload_messages = 0;  // payload messages received (0 for an error reply or a whole one)
    size_t payload_bytes = 0;     // their total size (whole: the rows' bytes in the reply)
    bool whole = false;           // the rows came in the reply's message (fuses())
  };
  // With read_payload false it returns once the header is in, leaving the payload unread
  // (a requester that stalls mid-transfer).
  std::optional<RawReply> send_raw_request(int peer, const std::vector<std::byte>& bytes,
                                           Clock::time_point deadline, bool read_payload = true);

 private:
  enum class Stage : uint8_t { kHeader, kPayload, kDone, kFinished };  // kFinished: send done too

  // Reads shm_protocol() and every rank's view of it and its node, and settles the path to
  // each peer (paths_): both ranks of a pair compute the same.
  void agree_on_protocol();
  void serve_loop();
  // A request matched (MPI_Improbe) but not yet received.
  struct Waiting {
    MPI_Message message = MPI_MESSAGE_NULL;
    int source = -1;
    int bytes = 0;
    // The source's pause since it last asked or read its last reply, if < kBurstGap, else 0.
    std::chrono::microseconds burst{0};
  };
  // Matches the next waiting request (from `source`), if any. serve_mu_ held.
  bool match_request(Waiting& out, int source = MPI_ANY_SOURCE);
  // A reply whose sends are open. The requester reads the rows itself (single copy), so
  // answering only posts the sends; the rows stay read-locked until they complete.
  struct OpenReply {
    LocalBuffer::ReadAccess rows;    // released when the reply is over
    std::vector<std::byte> header;   // reply + labels + weights, sent from here
    std::vector<std::byte> packed;   // rows of the packed fields, or the whole reply (fuses()); from spare_staging_
    std::vector<MPI_Request> sends;  // the header, then the payload messages
    Clock::time_point deadline{};
    size_t payload_open = 0;  // payload messages not yet complete, as last seen
    bool open = false;
  };
  // Receives a matched request and posts its reply (serve_mu_ held). Returns whether its
  // sender said it draws back to back (wire::kFlagBackToBack).
  bool serve_one(MPI_Message message, int source, int bytes);
  // Answers waiting requests (with eager_only: those whose reply messages each go out
  // eagerly on the path to their requester; a larger one is left to the server thread,
  // woken for it).
  void serve_waiting_up_to(bool eager_only);
  // The largest message of the reply to a request of `bytes` from `peer`.
  size_t largest_reply_message(int peer, int bytes) const;
  void post_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                  const Columns* slots_from, OpenReply& reply);
  // Copies field f's requested rows from their slots to `to`, one after another; returns
  // the end of what it wrote.
  std::byte* pack_rows(std::byte* to, const wire::DecodedRequest& req, const Columns& slots_from, size_t f) const;
  // Sends the reply whose header is in reply.header as one message (fuses()).
  void send_whole(int dest, const wire::DecodedRequest& req, const Columns& slots_from, OpenReply& reply);
  // Sends field f's requested rows in messages of kGatherRows that the library reads in place.
  void send_gathered(int dest, int tag, const wire::DecodedRequest& req, const Columns& slots_from, size_t f,
                     OpenReply& reply);
  // Open replies (serve_mu_ held): step_reply tests one once and says whether it is over;
  // progress_replies steps all, releases those that are over, and says whether any message
  // completed; finish_reply waits for one; settle_replies ends all when the server stops.
  bool step_reply(int source);
  void release_reply(int source);
  // A staging buffer of packed_bytes_ for an open reply: a spare one, else a new one.
  std::vector<std::byte> take_staging();
  // Hands a reply's staging (if any) to `to`: spare_staging_ once its sends are over,
  // retired_staging_ when they were withdrawn (the library may still read it).
  static void move_staging(OpenReply& reply, std::vector<std::vector<std::byte>>& to);
  bool progress_replies();
  void finish_reply(int source);
  void settle_replies();
  // Header message size for `count` rows: the reply, then labels and weights.
  size_t reply_message_bytes(uint32_t count) const {
    return sizeof(wire::Reply) + count * (sizeof(int64_t) + sizeof(float));
  }
  // Rows of field f per payload message between this rank and `peer`: kGatherRows when the
  // library reads them in place, all of them (packed) when a row goes eagerly or, over
  // shared memory, is at most kPackRowBytes; else 1 (each row alone, its own rendezvous).
  // REVERIE_MPI_REPLY, where set, decides instead (shm_protocol.h).
  size_t rows_per_message(int peer, size_t f) const {
    const PeerPath& path = paths_[peer];
    if (gathers(peer)) return kGatherRows;
    const size_t rb = buffer_->layout().row_bytes(f);
    if (path.way == ReplyWay::kRows) return 1;
    // Packed replies are one message per field, whose size MPI counts in an int.
    if (path.way == ReplyWay::kPacked) return rb * options_.max_rows <= kMostMessageBytes ? SIZE_MAX : 1;
    if (rb <= path.eager_bytes || (path.shared_memory && rb <= kPackRowBytes)) return SIZE_MAX;
    return 1;
  }
  // Whether a reply's rows go to `peer` as hindexed_block messages over the slots.
  bool gathers(int peer) const {
    const PeerPath& path = paths_[peer];
    return path.way == ReplyWay::kGathered || (path.way == ReplyWay::kAuto && path.gathers_in_place);
  }
  // Bytes of a reply of `count` rows sent whole: its header message, then every field's rows.
  size_t whole_reply_bytes(uint32_t count) const {
    size_t n = reply_message_bytes(count);
    for (size_t f = 0; f < buffer_->layout().num_fields(); ++f) n += buffer_->layout().row_bytes(f) * count;
    return n;
  }
  // Whether a reply of `count` rows to or from `peer` travels whole in one message (header,
  // labels, weights, then each field's rows, packed): where all of it goes out eagerly,
  // unless REVERIE_MPI_REPLY names a way. One message instead of a header and a payload:
  // 2 ranks drawing 7 x 12 KB took 1.33-1.35x the raw exchange instead of 1.49-1.53x over
  // MPICH's OFI module, 1.27-1.50x instead of 1.53-1.56x over Open MPI's tcp BTL (medians
  // of two sets of runs, 2-core VM; docs/benchmarks.md, "Whole replies").
  bool fuses(int peer, uint32_t count) const {
    const PeerPath& path = paths_[peer];
    return count > 0 && path.way == ReplyWay::kAuto && whole_reply_bytes(count) <= path.eager_bytes;
  }
  // Messages one row of field f goes to or from `peer` in: where the path splits rows
  // (PeerPath::splits_rows, way auto), a row sent alone is past the eager limit by at most
  // kMostRowPieces pieces, and UCX_RNDV_THRESH does not send it eagerly whole (with rows
  // eager whole, 28 x 12 KB took 1.32-1.38x the raw exchange, in pieces 1.51-1.63x), that
  // many pieces of at most the limit; else 1.
  size_t pieces_per_row(int peer, size_t f) const {
    const PeerPath& path = paths_[peer];
    const size_t rb = buffer_->layout().row_bytes(f);
    if (!path.splits_rows || path.way != ReplyWay::kAuto || rows_per_message(peer, f) != 1 ||
        rb <= path.eager_bytes || rb > kMostRowPieces * path.eager_bytes || rb < path.ucx_rndv_bytes)
      return 1;
    return (rb + path.eager_bytes - 1) / path.eager_bytes;
  }
  // Bytes of each piece of a row of field f (the last may be shorter).
  size_t piece_bytes(int peer, size_t f) const {
    const size_t pieces = pieces_per_row(peer, f);
    return (buffer_->layout().row_bytes(f) + pieces - 1) / pieces;
  }
  size_t messages_of(int peer, size_t f, uint32_t count) const {
    const size_t per = rows_per_message(peer, f);
    return count == 0 ? 0 : ((count - 1) / per + 1) * pieces_per_row(peer, f);
  }
  size_t payload_messages(int peer, uint32_t count) const {
    if (fuses(peer, count)) return 0;
    size_t n = 0;
    for (size_t f = 0; f < buffer_->layout().num_fields(); ++f) n += messages_of(peer, f, count);
    return n;
  }
  // Bytes of the largest payload message for `count` rows to or from `peer` (the whole
  // reply where it travels in one message). A row split in pieces counts whole: a caller
  // answering such replies (serve_waiting) posts several sends per row, and the drawing
  // thread polls it hot; caller-answered, 2 ranks drawing 28 x 12 KB over UCX took 3.2x the
  // raw exchange instead of 1.6x.
  size_t largest_payload_message(int peer, uint32_t count) const {
    if (fuses(peer, count)) return whole_reply_bytes(count);
    size_t most = 0;
    for (size_t f = 0; f < buffer_->layout().num_fields(); ++f)
      most = std::max(most, buffer_->layout().row_bytes(f) * std::min<size_t>(count, rows_per_message(peer, f)));
    return most;
  }
  // Whether a payload of `count` rows to or from `peer` moves past the eager limit.
  bool payload_past_eager(int peer, uint32_t count) const {
    return largest_payload_message(peer, count) > paths_[peer].eager_bytes;
  }
  // Client side of fetch_overlapped(): scratch sized for `requests`, request i posted, polled.
  void prepare_fetch(const std::vector<PeerRequest>& requests, std::vector<PeerReply>& replies);
  void post_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply);
  bool poll_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply);
  bool take_header(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& out);
  void fail_request(size_t i, wire::Status status, PeerReply& reply);
  // Posts the receive of the reply to `req`: its header into reply_bufs_, and, where the
  // reply travels whole (fuses()), its rows straight into `dest` by one struct datatype.
  void post_reply_receive(size_t i, const PeerRequest& req, uint64_t id, const Columns& dest);
  // Posts the payload receives of `req` (rows land in `dest` at `first_row`).
  void post_payload(const PeerRequest& req, uint64_t id, const Columns& dest, MPI_Request* out);
  void stop_server();
  void wake_server();
  // The server's pause between empty probes: yields while hot, else sleeps unless woken.
  void idle_pause(Backoff& backoff);
  // Cores of this node per rank on it (for the idle sleep: tuning::mpi::idle_max_sleep).
  double cores_per_rank() const;

  std::shared_ptr<const LocalBuffer> buffer_;
  MpiTransportOptions options_;
  // MPICH reads a scattered send in place only while its flattened datatype fits the
  // active-message header: hindexed_block sends of 40 rows did, of 44 or more fell back to
  // a pipeline that needs the sender's progress for every chunk (seconds with a sleeping
  // server). Messages of at most this many rows keep a margin.
  static constexpr size_t kGatherRows = tuning::mpi::kGatherRows;
  static constexpr size_t kPackRowBytes = tuning::mpi::kPackRowBytes;
  static constexpr size_t kMostRowPieces = tuning::mpi::kMostRowPieces;
  static constexpr size_t kMostMessageBytes = static_cast<size_t>(std::numeric_limits<int>::max());
  // The path to each peer (shm_protocol.h): its eager limit (messages of at most this many
  // bytes go out eagerly; larger ones need the receiver's progress calls while they move)
  // and whether the library reads a send's scattered rows in place (then every field's rows
  // go as one message). Both ranks of a pair hold the same (both must expect the same
  // messages).
  std::vector<PeerPath> paths_;
  size_t least_eager_bytes_ = 0;  // over the peers: a draw this small needs nobody's polling
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  uint64_t next_request_id_ = 1;
  wire::Sender sender_;  // what this rank's requests say of its buffer (set per fetch)
  Clock::time_point last_fetch_end_{};
  bool closed_ = false;

  // The fetch between start_fetch() and the poll_fetch() that completes it.
  struct OpenFetch {
    const std::vector<PeerRequest>* requests = nullptr;  // nullptr: none open
    Columns dest{};
    std::vector<PeerReply>* replies = nullptr;
    Clock::time_point deadline{};
    size_t count = 0;  // requests not finished
    bool hot = false;  // a large payload is moving: poll without sleeping
    Backoff backoff{std::chrono::microseconds(0), std::chrono::microseconds(0)};
    Clock::time_point waiting_since{};  // the end of the requester's local work
    Clock::time_point last_answer{};    // when the last owner's answer was seen
  };
  OpenFetch open_;
  FetchWaits waits_;  // of the fetches completed since take_fetch_waits()
  // Adds the waits of the open_ fetch, now over, to waits_.
  void count_waits(bool all_answered);

  // Client side scratch, sized once (vectors indexed by request, or by peer for buffers).
  std::vector<std::vector<std::byte>> request_bufs_;
  std::vector<std::vector<std::byte>> reply_bufs_;
  std::vector<MPI_Request> sends_;
  std::vector<MPI_Request> headers_;
  std::vector<MPI_Request> payloads_;     // all requests' payload receives, back to back
  std::vector<size_t> payload_first_;
  std::vector<uint64_t> ids_;
  std::vector<Stage> stages_;

  // Server side scratch, sized once.
  std::vector<std::byte> server_request_;
  std::vector<OpenReply> replies_;  // by requester: a requester's next request waits for its last reply
  std::vector<int> open_replies_;   // requesters whose reply is open
  size_t packed_bytes_ = 0;         // the packed fields' rows of one reply, or a whole one
  // Staging of replies that are over, for the next ones: as many as replies were ever open
  // at once (about r in training, however many ranks ask), not one per requester, which at
  // 1024 ranks and 64 KB rows would be 4 GB per rank.
  std::vector<std::vector<std::byte>> spare_staging_;
  // Staging of withdrawn replies: the library may still read it, so it is never reused.
  std::vector<std::vector<std::byte>> retired_staging_;
  std::atomic<size_t> staging_bytes_{0};  // all staging buffers: spare, in use or retired
  std::vector<MPI_Aint> displs_;    // the requested rows' offsets in a column (send_gathered)
  // Per source: when it last asked, or its last reply was over, whichever came later.
  std::vector<Clock::time_point> last_heard_;
  // Held while receiving or answering a request (server thread, or a caller of serve_waiting()).
  std::mutex serve_mu_;
  // Sent (never modified) to a request whose header cannot be read: no id, so no reply tag.
  const wire::Reply anonymous_reply_ = wire::make_reply(wire::Status::kMalformed, 0, 0, 0);

  std::atomic<bool> stop_{false};
  std::chrono::microseconds idle_sleep_{tuning::mpi::kIdleMaxSleep};  // the server's longest idle sleep
  // A caller that finds a large request waiting wakes the server (see wake_server).
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  std::atomic<uint64_t> served_{0};
  std::thread server_;
};

}  // namespace reverie
