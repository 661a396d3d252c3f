#include "transport/mpi/mpi_transport.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

#include "common/backoff.h"
#include "common/thread_name.h"
#include "common/tuning.h"
#include "transport/mpi/mpi_requests.h"
#include "transport/mpi/shm_protocol.h"

// The MPI engine's life cycle: construction, the protocol every rank agrees on, the server
// thread's start, wake-ups and pauses, the raw-request test hook, close.
//
// Waiting policy (see common/backoff.h). Every poller yields for a short window, then
// sleeps with pauses doubling (timer slack 1 us, so short sleeps end on time). Only a
// large payload that is known to be moving stays hot: the requester, once the owner's
// header arrived (from the start for back-to-back draws, whose owners are awake), polls
// without sleeping (each rendezvous chunk or single-copy read needs its progress calls);
// the owner polls its open replies hot once one of their payload messages completed.
// Before that, nobody spins long: an owner or requester that is descheduled on a busy box
// answers late however hard the other side polls, and a requester that spun up to 50 ms
// for a late owner took ~12 ms of CPU per 250 ms training step from the step itself (4
// ranks on 2 cores). Small replies are single eager messages: polling them hot buys
// microseconds of latency with CPU that the training step needs (a draw is prefetched
// while a step computes, so its latency is hidden anyway).
//
// Server: the engine's callers answer small requests themselves at every call (see
// serve_waiting), and any request between the chunks of a long local copy: in lockstep
// training a peer's request is usually waiting when this rank reaches its step boundary.
// Answering only posts a reply's sends (an open reply; the requester reads the rows). The
// server thread answers the rest: large replies (a caller that finds one wakes it) and
// requests that arrive while this rank computes, and moves open replies on. It is hot
// for a short window after each request (back-to-back draws see no wake-up delay), then
// sleeps from 1 ms up to 12 ms between probes, so an idle server costs ~0.2% of a core.
// Waking it on every draw of this rank, as an earlier release did, took ~280 us of CPU per
// 5 ms training step (2 ranks on 2 cores) against ~50 us now: during training requests
// come once per step, and every wake-up costs ~5-25 us of CPU (the most in a VM) that the
// step itself needs on a box with fewer cores than threads.
// The hot windows and sleeps (kHotSpin, kShortSpin, kIdleSpin, kBurstGap, server_min_sleep,
// ...), each with the measurement that chose it, are in common/tuning.h.

namespace reverie {

using namespace mpi_detail;
using namespace tuning::mpi;

MpiTransport::MpiTransport(std::shared_ptr<const LocalBuffer> buffer, MPI_Comm parent, MpiTransportOptions options)
    : buffer_(std::move(buffer)), options_(options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw std::runtime_error("engine='mpi': MPI is not initialised (import mpi4py.MPI first)");
  int level = 0;
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_MULTIPLE)
    throw std::runtime_error("engine='mpi': MPI must be initialised with MPI_THREAD_MULTIPLE (got level " +
                             std::to_string(level) + "); set mpi4py.rc.thread_level = 'multiple'");
  check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  peer_sizes_.reset(size_);
  agree_on_protocol();
  idle_sleep_ = tuning::idle_max_sleep(cores_per_rank());

  const SampleLayout& layout = buffer_->layout();
  const uint32_t max_rows = options_.max_rows;
  request_bufs_.assign(size_, std::vector<std::byte>(wire::request_bytes(max_rows)));
  reply_bufs_.assign(size_, std::vector<std::byte>(reply_message_bytes(max_rows)));
  sends_.reserve(size_);
  headers_.reserve(size_);
  payload_first_.reserve(size_ + 1);
  ids_.reserve(size_);
  stages_.reserve(size_);
  size_t most_messages = 0;
  for (int peer = 0; peer < size_; ++peer) most_messages = std::max(most_messages, payload_messages(peer, max_rows));
  payloads_.reserve(most_messages);  // rows of one draw, split over peers
  for (size_t f = 0; f < layout.num_fields(); ++f) {
    bool packed = false;  // for some peer
    for (int peer = 0; peer < size_; ++peer) packed = packed || rows_per_message(peer, f) == SIZE_MAX;
    if (packed) packed_bytes_ += layout.row_bytes(f) * max_rows;
  }
  for (int peer = 0; peer < size_; ++peer)  // whole replies are at most an eager message
    if (fuses(peer, 1)) packed_bytes_ = std::max(packed_bytes_, paths_[peer].eager_bytes);
  server_request_.resize(wire::request_bytes(max_rows));
  replies_.resize(size_);
  open_replies_.reserve(size_);
  last_heard_.assign(size_, Clock::now() - kBurstGap);
  server_ = std::thread([this] { serve_loop(); });
}

MpiTransport::~MpiTransport() { stop_server(); }

// Both ranks of a pair must pick the same reply messages: each computes the pair's path
// from both ranks' views (the limits come from each process's environment) and whether
// they share a node (a node: the ranks of one MPI_COMM_TYPE_SHARED communicator, named by
// its lowest rank here). Ranks on different nodes, or any two when the library keeps
// shared memory out, take the network path: no in-place gathers, the network eager limit.
void MpiTransport::agree_on_protocol() {
  const ShmProtocol mine = shm_protocol();
  MPI_Comm node = MPI_COMM_NULL;
  int node_id = rank_;
  if (MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node) == MPI_SUCCESS &&
      node != MPI_COMM_NULL) {
    check(MPI_Allreduce(MPI_IN_PLACE, &node_id, 1, MPI_INT, MPI_MIN, node), "MPI_Allreduce(node)");
    MPI_Comm_free(&node);
  }
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_len = 0;
  MPI_Get_processor_name(host, &host_len);
  const auto host_id = static_cast<int64_t>(std::hash<std::string>{}(std::string(host, host_len)));
  constexpr int kFields = 10;
  const int64_t view[kFields] = {node_id,
                                 static_cast<int64_t>(mine.eager_bytes),
                                 mine.gathers_in_place ? 1 : 0,
                                 static_cast<int64_t>(mine.net_eager_bytes),
                                 mine.shared_memory ? 1 : 0,
                                 static_cast<int64_t>(mine.reply_way),
                                 mine.net_splits_rows ? 1 : 0,
                                 static_cast<int64_t>(mine.ucx_intra_rndv_bytes),
                                 static_cast<int64_t>(mine.ucx_inter_rndv_bytes),
                                 host_id};
  std::vector<int64_t> all(static_cast<size_t>(kFields) * size_);
  check(MPI_Allgather(view, kFields, MPI_INT64_T, all.data(), kFields, MPI_INT64_T, comm_),
        "MPI_Allgather(protocol)");
  auto protocol_of = [&](int r) {
    const int64_t* v = &all[static_cast<size_t>(kFields) * r];
    return ShmProtocol{static_cast<size_t>(v[1]), v[2] != 0, static_cast<size_t>(v[3]), v[4] != 0, v[6] != 0,
                       static_cast<size_t>(v[7]), static_cast<size_t>(v[8]), static_cast<ReplyWay>(v[5])};
  };
  // Every rank sees every rank's setting, so all refuse together (none is left waiting).
  for (int r = 0; r < size_; ++r) {
    const ReplyWay way = protocol_of(r).reply_way;
    if (way == ReplyWay::kInvalid || way != protocol_of(0).reply_way) {
      MPI_Comm_free(&comm_);
      const std::string rank = "rank " + std::to_string(r);
      throw std::invalid_argument(
          way == ReplyWay::kInvalid
              ? std::string(kReplyWayEnv) + ": expected auto, rows, packed or gathered; " + rank + " has another value"
              : std::string(kReplyWayEnv) + ": must be the same on every rank; " + rank + " has " +
                    reply_way_name(way) + ", rank 0 " + reply_way_name(protocol_of(0).reply_way));
    }
  }
  paths_.resize(size_);
  least_eager_bytes_ = SIZE_MAX;
  for (int peer = 0; peer < size_; ++peer) {
    const int64_t* view_of_peer = &all[static_cast<size_t>(kFields) * peer];
    paths_[peer] = peer_path(mine, protocol_of(peer), view_of_peer[0] == node_id, view_of_peer[9] == host_id);
    if (peer != rank_) least_eager_bytes_ = std::min(least_eager_bytes_, paths_[peer].eager_bytes);
  }
  if (size_ == 1) least_eager_bytes_ = paths_[rank_].eager_bytes;
}

bool MpiTransport::gathers_rows() const {
  bool all = true;
  for (int peer = 0; peer < size_; ++peer)
    if (peer != rank_ || size_ == 1) all = all && gathers(peer);
  return all;
}

// Cores of this node per rank on it: the ranks sharing the node (MPI_COMM_TYPE_SHARED) split
// the cores this process may run on, unless the launcher bound each rank to its own.
double MpiTransport::cores_per_rank() const {
  MPI_Comm node = MPI_COMM_NULL;
  int local = 1;
  if (MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
  }
  const unsigned online = std::max(1u, std::thread::hardware_concurrency());
  unsigned mine = online;
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) mine = static_cast<unsigned>(CPU_COUNT(&set));
#endif
  if (mine < online) return mine;  // bound by the launcher: these cores are this rank's
  return static_cast<double>(online) / std::max(1, local);
}

void MpiTransport::stop_server() {
  stop_.store(true);
  wake_server();
  if (server_.joinable()) server_.join();
}

void MpiTransport::wake_server() {
  {
    std::lock_guard lock(wake_mu_);
    woken_ = true;
  }
  wake_cv_.notify_one();
}

// A caller that finds a large request waiting wakes the server (wake_server): it probes at
// once and restarts its ladder of sleeps from the shortest.
void MpiTransport::idle_pause(Backoff& backoff) {
  const auto sleep = backoff.next_sleep();
  if (!sleep) {
    std::this_thread::yield();
    return;
  }
  std::unique_lock lock(wake_mu_);
  if (wake_cv_.wait_for(lock, *sleep, [&] { return woken_; })) {
    woken_ = false;
    backoff.reset(std::chrono::microseconds(0));
  }
}

std::optional<MpiTransport::RawReply> MpiTransport::send_raw_request(int peer, const std::vector<std::byte>& bytes,
                                                                     Clock::time_point deadline, bool read_payload) {
  if (closed_) throw std::runtime_error("mpi transport: send_raw_request after close");
  if (peer < 0 || peer >= size_ || peer == rank_) throw std::invalid_argument("peer: expected another rank");
  uint64_t id = 0;
  const bool has_id = bytes.size() >= offsetof(wire::RequestHeader, request_id) + sizeof id;
  if (has_id) std::memcpy(&id, bytes.data() + offsetof(wire::RequestHeader, request_id), sizeof id);
  MPI_Request send = MPI_REQUEST_NULL;
  check(MPI_Isend(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, peer, kRequestTag, comm_, &send),
        "MPI_Isend(raw request)");
  // Receives the next message from `peer` with `tag` into `out`, if one is there.
  auto take = [&](int tag, std::vector<std::byte>& out) {
    int flag = 0;
    MPI_Message message;
    MPI_Status status;
    if (MPI_Improbe(peer, tag, comm_, &flag, &message, &status) != MPI_SUCCESS || !flag) return false;
    int n = 0;
    MPI_Get_count(&status, MPI_BYTE, &n);
    out.resize(n);
    MPI_Mrecv(out.data(), n, MPI_BYTE, &message, MPI_STATUS_IGNORE);
    return true;
  };
  RawReply result;
  std::vector<std::byte> header;
  std::vector<std::byte> payload;
  size_t expected_payload = 0;
  enum { kHeader, kPayload, kDone } stage = kHeader;
  int sent = 0;
  Backoff backoff(kHotMaxSleep, kHotSpin);
  while (Clock::now() < deadline) {
    if (!sent) MPI_Test(&send, &sent, MPI_STATUS_IGNORE);
    if (stage == kHeader) {
      if (take(kAnonymousReplyTag, header)) {
        result.anonymous = true;
        stage = kDone;
      } else if (has_id && take(header_tag(id), header)) {
        stage = kPayload;
      }
      if (stage != kHeader) {
        result.reply_bytes = header.size();
        std::memcpy(&result.reply, header.data(), std::min(header.size(), sizeof(wire::Reply)));
        if (result.reply.status == static_cast<uint16_t>(wire::Status::kOk)) {
          expected_payload = payload_messages(peer, result.reply.count);
          const size_t head = reply_message_bytes(result.reply.count);
          result.whole = fuses(peer, result.reply.count) && header.size() > head;
          if (result.whole) {
            result.reply_bytes = head;
            result.payload_bytes = header.size() - head;
          }
        }
        if (expected_payload == 0 || !read_payload) stage = kDone;
      }
    }
    while (stage == kPayload && take(payload_tag(id), payload)) {
      result.payload_messages += 1;
      result.payload_bytes += payload.size();
      if (result.payload_messages == expected_payload) stage = kDone;
    }
    if (stage == kDone && sent) return result;
    backoff.pause();
  }
  if (!sent) {
    MPI_Cancel(&send);
    MPI_Request_free(&send);
  }
  return std::nullopt;
}

bool MpiTransport::close(Clock::time_point deadline) {
  if (closed_) return true;
  closed_ = true;
  MPI_Request barrier = MPI_REQUEST_NULL;
  bool all_arrived = MPI_Ibarrier(comm_, &barrier) == MPI_SUCCESS;
  Backoff backoff(kIdleMaxSleep, kIdleSpin, kIdleMinSleep);
  int done = 0;
  while (all_arrived && !done && Clock::now() < deadline) {
    MPI_Test(&barrier, &done, MPI_STATUS_IGNORE);
    if (!done) backoff.pause();
  }
  stop_server();
  if (!done) return false;  // a peer never arrived: keep the communicator rather than hang freeing it
  MPI_Comm_free(&comm_);
  return true;
}

}  // namespace reverie
