#pragma once
// The portable engine: MPI from the job (MPI_THREAD_MULTIPLE), on a duplicated
// communicator. A server thread answers requests.
//
// Messages of one request (tags from the request id; MPI keeps same-tag messages from one
// sender in order):
//   requester -> owner  request tag:  wire::RequestHeader + slots
//   owner -> requester  header tag:   wire::Reply, then count labels (int64) and count
//                                     weights (float32) of the rows that follow
//   owner -> requester  payload tag:  per field, in field order: one message per row when
//                                     the field's rows are past the eager limit (sent
//                                     straight from the slots), else one message of the
//                                     rows packed
// Every message is contiguous on both sides: MPI libraries move large contiguous messages
// with single-copy (CMA/XPMEM) or RDMA, while derived datatypes fall back to chunked
// pipelines (with MPICH over shared memory, a send-side hindexed type over the slots was
// ~3x slower than one message per row). A row past the eager limit moves by rendezvous
// anyway, so as its own message it only skips the owner's packing copy: for 602 KB rows
// that halved the transfer time, and for 12 KB rows a draw of 28 took 40 instead of 54 us
// (2 ranks); rows under the limit are cheaper packed than sent one message each. The
// requester posts every receive before sending the request, sized exactly (a longer
// message is an error, never an overrun), and withdraws the payload receives when the
// reply is an error.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "buffer/local_buffer.h"
#include "common/backoff.h"
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
  size_t splittable_fetch_bytes() const override { return eager_bytes_; }
  bool start_fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                   std::vector<PeerReply>& replies, const std::function<void()>& local_work) override;
  bool poll_fetch() override;
  bool drive_fetch(const std::function<bool()>& give_up) override;
  void serve_waiting() override;
  bool close(Clock::time_point deadline) override;
  void abandon() override { stop_server(); }

  uint64_t requests_served() const { return served_.load(); }

  // Test hook (fault tests only): sends `bytes` verbatim as a request to `peer`'s server and
  // waits until `deadline` for its reply, on the tag of the id in the header or, for a
  // request whose header the server cannot read, the anonymous reply tag. Returns nullopt
  // when no reply came. Must not run while a draw is in flight on this rank.
  struct RawReply {
    wire::Reply reply{};
    bool anonymous = false;       // answered on the anonymous tag (no readable request id)
    size_t reply_bytes = 0;       // size of the header message (reply + labels + weights)
    size_t payload_messages = 0;  // payload messages received (0 for an error reply)
    size_t payload_bytes = 0;     // their total size
  };
  std::optional<RawReply> send_raw_request(int peer, const std::vector<std::byte>& bytes,
                                           Clock::time_point deadline);

 private:
  enum class Stage : uint8_t { kHeader, kPayload, kDone, kFinished };  // kFinished: send done too

  void serve_loop();
  // A request matched (MPI_Improbe) but not yet received.
  struct Waiting {
    MPI_Message message = MPI_MESSAGE_NULL;
    int source = -1;
    int bytes = 0;
    std::chrono::microseconds burst{0};  // gap to the source's previous request if < kBurstGap, else 0
  };
  // Matches the next waiting request (from `source`), if any. serve_mu_ held.
  bool match_request(Waiting& out, int source = MPI_ANY_SOURCE);
  // Whether the reply to a request of `bytes` goes out without waiting for the requester
  // (every message at most eager_bytes_).
  bool reply_is_small(int bytes) const;
  // `burst`: the requester's previous request came less than kBurstGap ago (it is drawing
  // back to back, so it polls hot and the reply's sends may too).
  void serve_one(MPI_Message message, int source, int bytes, bool burst);
  void send_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                  const Columns* slots_from, bool burst);
  // Header message size for `count` rows: the reply, then labels and weights.
  size_t reply_message_bytes(uint32_t count) const {
    return sizeof(wire::Reply) + count * (sizeof(int64_t) + sizeof(float));
  }
  // Whether field f's rows travel one message each (else packed into one message).
  bool row_messages(size_t f) const { return buffer_->layout().row_bytes(f) > eager_bytes_; }
  size_t payload_messages(uint32_t count) const {
    if (count == 0) return 0;
    size_t n = 0;
    for (size_t f = 0; f < buffer_->layout().num_fields(); ++f) n += row_messages(f) ? count : 1;
    return n;
  }
  // Bytes of the largest payload message for `count` rows.
  size_t largest_payload_message(uint32_t count) const {
    size_t most = 0;
    for (size_t f = 0; f < buffer_->layout().num_fields(); ++f)
      most = std::max(most, buffer_->layout().row_bytes(f) * (row_messages(f) ? 1 : count));
    return most;
  }
  // Client side of fetch_overlapped(): scratch sized for `requests`, request i posted, polled.
  void prepare_fetch(const std::vector<PeerRequest>& requests, std::vector<PeerReply>& replies);
  void post_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply);
  bool poll_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply);
  bool take_header(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& out);
  void fail_request(size_t i, wire::Status status, PeerReply& reply);
  // Posts the payload receives of `req` (rows land in `dest` at `first_row`).
  void post_payload(const PeerRequest& req, uint64_t id, const Columns& dest, MPI_Request* out);
  void stop_server();
  void wake_server();
  // The server's pause between empty probes: yields while hot, else sleeps unless woken.
  void idle_pause(Backoff& backoff);

  std::shared_ptr<const LocalBuffer> buffer_;
  MpiTransportOptions options_;
  // Messages of at most this many bytes go out eagerly (shm_eager_bytes()); larger ones
  // need the receiver's progress calls while they move.
  size_t eager_bytes_ = 0;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  uint64_t next_request_id_ = 1;
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
  };
  OpenFetch open_;

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
  std::vector<std::byte> server_reply_;   // reply + labels + weights
  std::vector<std::byte> server_packed_;  // the requested rows of the packed fields, field by field
  std::vector<MPI_Request> server_sends_;
  std::vector<Clock::time_point> last_request_;  // per source
  // Held while receiving or answering a request (server thread, or a caller of serve_waiting()).
  std::mutex serve_mu_;
  // Sent (never modified) to a request whose header cannot be read: no id, so no reply tag.
  const wire::Reply anonymous_reply_ = wire::make_reply(wire::Status::kMalformed, 0, 0, 0);

  std::atomic<bool> stop_{false};
  // A caller that finds a large request waiting wakes the server (see wake_server).
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  std::atomic<uint64_t> served_{0};
  std::thread server_;
};

}  // namespace reverie
