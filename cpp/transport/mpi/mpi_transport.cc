#include "transport/mpi/mpi_transport.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/backoff.h"
#include "common/thread_name.h"
#include "common/tuning.h"
#include "transport/mpi/shm_protocol.h"

namespace reverie {
namespace {

constexpr int kRequestTag = 1;
constexpr int kAnonymousReplyTag = 2;  // answers a request whose header (so id) is unreadable
constexpr int kReplyTagBase = 16;
constexpr uint64_t kReplyTagSpan = 8192;  // 16 + 2 * 8192 stays under the guaranteed MPI_TAG_UB

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
// The hot windows and sleeps (kHotSpin, kShortSpin, kIdleSpin, kBurstGap, kServerMinSleep,
// ...), each with the measurement that chose it, are in common/tuning.h.
using namespace tuning::mpi;

int header_tag(uint64_t id) { return kReplyTagBase + static_cast<int>(2 * (id % kReplyTagSpan)); }
int payload_tag(uint64_t id) { return header_tag(id) + 1; }

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string("mpi transport: ") + what + ": " + std::string(msg, len));
}

void tighten_timer_slack_once() {
  thread_local bool done = false;
  if (!done) Backoff::tighten_timer_slack();
  done = true;
}

// Withdraws requests still open after a failure or a timeout (receives are cancelled so
// no late message lands in memory that is reused later).
void withdraw(MPI_Request* reqs, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i] == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&reqs[i]);
    MPI_Request_free(&reqs[i]);
  }
}

size_t open_requests(const MPI_Request* reqs, size_t n) {
  return static_cast<size_t>(std::count_if(reqs, reqs + n, [](MPI_Request r) { return r != MPI_REQUEST_NULL; }));
}

// Tests every request of [reqs, reqs + n): 1 when all completed, 0 when some are open,
// -1 when one completed with an error (e.g. a message longer than its receive).
int test_all(MPI_Request* reqs, size_t n) {
  int result = 1;
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i] == MPI_REQUEST_NULL) continue;
    int flag = 0;
    MPI_Status status;
    if (MPI_Test(&reqs[i], &flag, &status) != MPI_SUCCESS) return -1;
    if (!flag) result = 0;
  }
  return result;
}

}  // namespace

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
  agree_on_protocol();

  const SampleLayout& layout = buffer_->layout();
  const uint32_t max_rows = options_.max_rows;
  request_bufs_.assign(size_, std::vector<std::byte>(wire::request_bytes(max_rows)));
  reply_bufs_.assign(size_, std::vector<std::byte>(reply_message_bytes(max_rows)));
  sends_.reserve(size_);
  headers_.reserve(size_);
  payload_first_.reserve(size_ + 1);
  ids_.reserve(size_);
  stages_.reserve(size_);
  payloads_.reserve(payload_messages(max_rows));  // rows of one draw, split over peers

  for (size_t f = 0; f < layout.num_fields(); ++f)
    if (rows_per_message(f) == SIZE_MAX) packed_bytes_ += layout.row_bytes(f) * max_rows;
  server_request_.resize(wire::request_bytes(max_rows));
  replies_.resize(size_);
  open_replies_.reserve(size_);
  last_request_.assign(size_, Clock::now() - kBurstGap);
  server_ = std::thread([this] { serve_loop(); });
}

MpiTransport::~MpiTransport() { stop_server(); }

// Every rank must pick the same reply messages: the most cautious protocol of any rank
// (the limits come from each process's environment).
void MpiTransport::agree_on_protocol() {
  const ShmProtocol mine = shm_protocol();
  int64_t agreed[2] = {static_cast<int64_t>(mine.eager_bytes), mine.gathers_in_place ? 1 : 0};
  check(MPI_Allreduce(MPI_IN_PLACE, agreed, 2, MPI_INT64_T, MPI_MIN, comm_), "MPI_Allreduce(protocol)");
  eager_bytes_ = static_cast<size_t>(agreed[0]);
  gather_rows_ = agreed[1] != 0;
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

void MpiTransport::post_payload(const PeerRequest& req, uint64_t id, const Columns& dest, MPI_Request* out) {
  const SampleLayout& layout = buffer_->layout();
  if (req.count == 0) return;
  const int tag = payload_tag(id);
  for (size_t f = 0; f < layout.num_fields(); ++f) {
    const size_t rb = layout.row_bytes(f);
    const size_t per = rows_per_message(f);
    for (size_t first = 0; first < req.count; first += per) {
      const size_t rows = std::min<size_t>(per, req.count - first);
      check(MPI_Irecv(dest.at(layout, f, req.first_row + first), static_cast<int>(rb * rows), MPI_BYTE, req.peer, tag,
                      comm_, out++),
            "MPI_Irecv(payload)");
    }
  }
}

void MpiTransport::fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                         std::vector<PeerReply>& replies) {
  fetch_overlapped(requests, dest, deadline, replies, {});
}

void MpiTransport::fetch_overlapped(const std::vector<PeerRequest>& requests, const Columns& dest,
                                    Clock::time_point deadline, std::vector<PeerReply>& replies,
                                    const std::function<void()>& local_work) {
  if (!start_fetch(requests, dest, deadline, replies, local_work)) drive_fetch([] { return false; });
}

bool MpiTransport::drive_fetch(const std::function<bool()>& give_up) {
  while (!poll_fetch()) {
    if (give_up()) return false;
    serve_waiting();
    open_.backoff.pause();
  }
  return true;
}

bool MpiTransport::start_fetch(const std::vector<PeerRequest>& requests, const Columns& dest,
                               Clock::time_point deadline, std::vector<PeerReply>& replies,
                               const std::function<void()>& local_work) {
  if (closed_) throw std::runtime_error("mpi transport: fetch after close");
  const bool back_to_back = Clock::now() - last_fetch_end_ < kBurstGap;
  const size_t n = requests.size();
  prepare_fetch(requests, replies);
  for (size_t i = 0; i < n; ++i) post_request(i, requests[i], dest, replies[i]);
  tighten_timer_slack_once();
  // Short polling until an owner answers; hot from the moment a large payload is on its
  // way (each chunk needs this side's progress calls). Hot from the start instead, a
  // requester whose owner was descheduled spun for milliseconds of the training step's CPU.
  // Back-to-back draws (this one started within kBurstGap of the last one's end) find the
  // owners awake and answering, so their large payloads are polled hot from the start.
  open_ = OpenFetch{&requests, dest, &replies, deadline, n, false,
                    Backoff(kShortMaxSleep, kShortSpin, kShortMinSleep)};
  if (back_to_back) {
    for (const PeerRequest& req : requests) open_.hot = open_.hot || largest_payload_message(req.count) > eager_bytes_;
    if (open_.hot) open_.backoff = Backoff(kHotMaxSleep, kHotSpin);
  }
  if (local_work) local_work();
  return poll_fetch();
}

bool MpiTransport::poll_fetch() {
  if (open_.requests == nullptr) return true;
  const auto& requests = *open_.requests;
  auto& replies = *open_.replies;
  const size_t n = requests.size();
  bool progressed = false;
  for (size_t i = 0; i < n; ++i) {
    if (stages_[i] == Stage::kFinished) continue;
    progressed = poll_request(i, requests[i], open_.dest, replies[i]) || progressed;
    if (stages_[i] == Stage::kFinished) --open_.count;
    if (!open_.hot && stages_[i] == Stage::kPayload && largest_payload_message(requests[i].count) > eager_bytes_) {
      open_.hot = true;
      open_.backoff = Backoff(kHotMaxSleep, kHotSpin);
    }
  }
  if (progressed) open_.backoff.reset();
  if (open_.count > 0 && Clock::now() < open_.deadline) return false;
  for (size_t i = 0; i < n; ++i) {
    if (stages_[i] == Stage::kFinished) continue;
    withdraw(&headers_[i], 1);
    withdraw(&payloads_[payload_first_[i]], payload_first_[i + 1] - payload_first_[i]);
    if (sends_[i] != MPI_REQUEST_NULL) MPI_Request_free(&sends_[i]);
    replies[i].status = wire::Status::kTimeout;
  }
  open_.requests = nullptr;
  last_fetch_end_ = Clock::now();
  return true;
}

void MpiTransport::prepare_fetch(const std::vector<PeerRequest>& requests, std::vector<PeerReply>& replies) {
  const size_t n = requests.size();
  replies.assign(n, PeerReply{});
  sends_.assign(n, MPI_REQUEST_NULL);
  headers_.assign(n, MPI_REQUEST_NULL);
  ids_.resize(n);
  stages_.assign(n, Stage::kHeader);
  payload_first_.resize(n + 1);
  payload_first_[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    if (requests[i].count > options_.max_rows) throw std::invalid_argument("mpi transport: request exceeds max rows");
    payload_first_[i + 1] = payload_first_[i] + payload_messages(requests[i].count);
  }
  payloads_.assign(payload_first_[n], MPI_REQUEST_NULL);
}

void MpiTransport::post_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply) {
  const uint64_t id = next_request_id_++;
  ids_[i] = id;
  reply.peer = req.peer;
  check(MPI_Irecv(reply_bufs_[req.peer].data(), static_cast<int>(reply_message_bytes(req.count)), MPI_BYTE, req.peer,
                  header_tag(id), comm_, &headers_[i]),
        "MPI_Irecv(reply)");
  post_payload(req, id, dest, &payloads_[payload_first_[i]]);
  const size_t len = wire::encode_request(options_.token, id, req.slots, req.count, request_bufs_[req.peer].data());
  check(MPI_Isend(request_bufs_[req.peer].data(), static_cast<int>(len), MPI_BYTE, req.peer, kRequestTag, comm_,
                  &sends_[i]),
        "MPI_Isend(request)");
}

// A request is finished once its reply (and payload, if any) arrived and its send completed.
bool MpiTransport::poll_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply) {
  bool progressed = false;
  if (stages_[i] == Stage::kHeader) progressed = take_header(i, req, dest, reply);
  if (stages_[i] == Stage::kPayload) {
    const int done = test_all(&payloads_[payload_first_[i]], payload_first_[i + 1] - payload_first_[i]);
    if (done < 0) {
      fail_request(i, wire::Status::kMalformed, reply);
    } else if (done > 0) {
      stages_[i] = Stage::kDone;
    }
  }
  if (stages_[i] == Stage::kDone) {
    int sent = 0;
    MPI_Test(&sends_[i], &sent, MPI_STATUS_IGNORE);
    if (sent) {
      stages_[i] = Stage::kFinished;
      progressed = true;
    }
  }
  return progressed;
}

void MpiTransport::fail_request(size_t i, wire::Status status, PeerReply& reply) {
  reply.status = status;
  stages_[i] = Stage::kDone;
  withdraw(&headers_[i], 1);
  withdraw(&payloads_[payload_first_[i]], payload_first_[i + 1] - payload_first_[i]);
}

// Checks request i's header message; once there, validates it and copies labels and weights.
bool MpiTransport::take_header(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& out) {
  const SampleLayout& layout = buffer_->layout();
  int flag = 0;
  MPI_Status status;
  if (MPI_Test(&headers_[i], &flag, &status) != MPI_SUCCESS) {
    fail_request(i, wire::Status::kMalformed, out);  // longer than any valid reply
    return false;
  }
  if (!flag) return false;
  int bytes = 0;
  MPI_Get_count(&status, MPI_BYTE, &bytes);
  const std::byte* msg = reply_bufs_[req.peer].data();
  wire::Reply reply{};
  std::memcpy(&reply, msg, std::min<size_t>(bytes, sizeof reply));
  const bool ok = reply.status == static_cast<uint16_t>(wire::Status::kOk);
  const size_t expected = reply_message_bytes(ok ? req.count : 0);
  if (static_cast<size_t>(bytes) != expected || !wire::reply_valid(reply, ids_[i], req.count)) {
    fail_request(i, wire::Status::kMalformed, out);
    return true;
  }
  out.owner_size = reply.owner_size;
  if (!ok) {
    fail_request(i, static_cast<wire::Status>(reply.status), out);  // no payload follows
    return true;
  }
  out.status = wire::Status::kOk;
  const size_t row = req.first_row;
  std::memcpy(dest.at(layout, layout.label_column(), row), msg + sizeof reply, req.count * sizeof(int64_t));
  std::memcpy(dest.at(layout, layout.weight_column(), row), msg + sizeof reply + req.count * sizeof(int64_t),
              req.count * sizeof(float));
  stages_[i] = Stage::kPayload;
  return true;
}

void MpiTransport::serve_loop() {
  name_this_thread("reverie-server");
  Backoff::tighten_timer_slack();
  Backoff::lower_priority();
  Backoff backoff(kIdleMaxSleep, kIdleSpin, kServerMinSleep);
  // While replies are open: a rendezvous message past single-copy moves in chunks, each
  // needing this side's progress, and a reply holds the rows read-locked (inserts wait)
  // until the requester has read them. Hot briefly (longer for a requester drawing back
  // to back, and again after each completed message), then sleeping up to kHotMaxSleep.
  Backoff replies(kHotMaxSleep, kShortSpin);
  // Hot this long after activity: other peers' requests of the same step come within the
  // ranks' skew; a requester drawing back to back sends its next request within its gap
  // (then four gaps, at least kBurstMinSpin). Counted from when the requester has read
  // its rows, as it sends the next request only after that.
  std::chrono::microseconds window = kIdleSpin;
  while (!stop_.load(std::memory_order_relaxed)) {
    Waiting req;
    bool served = false;
    bool open = false;
    {
      std::lock_guard lock(serve_mu_);
      if (progress_replies()) {
        replies.reset(kActiveSpin);
        backoff.reset(window);
      }
      served = match_request(req);
      if (served) serve_one(req.message, req.source, req.bytes);
      open = !open_replies_.empty();
    }
    if (served) {
      const auto burst = req.burst;
      window = burst.count() > 0 ? std::clamp(4 * burst, kBurstMinSpin, kBurstGap) : kIdleSpin;
      backoff.reset(window);
      replies.reset(burst.count() > 0 ? kHotSpin : kShortSpin);
    } else if (open) {
      replies.pause();
    } else {
      idle_pause(backoff);
    }
  }
  settle_replies();
}

bool MpiTransport::match_request(Waiting& out, int source) {
  int flag = 0;
  MPI_Status status;
  if (MPI_Improbe(source, kRequestTag, comm_, &flag, &out.message, &status) != MPI_SUCCESS || !flag)
    return false;
  MPI_Get_count(&status, MPI_BYTE, &out.bytes);
  out.source = status.MPI_SOURCE;
  const auto now = Clock::now();
  const auto gap = std::chrono::duration_cast<std::chrono::microseconds>(now - last_request_[out.source]);
  out.burst = gap < kBurstGap ? std::max(gap, std::chrono::microseconds(1)) : std::chrono::microseconds(0);
  last_request_[out.source] = now;
  return true;
}

// A caller of the engine (the training thread at its step boundary, or a thread waiting
// for its own draw) moves open replies on and answers the requests that are waiting, as
// long as each reply goes out eagerly: in lockstep training a peer's request for this
// step is usually here already, and answering it costs a few us, against a server
// thread's wake-up and polling. Larger requests are left to the server thread (woken),
// which answers in parallel with the caller's own work: callers answering them too made
// 2-rank draws of 7 x 12 KB take 22-32 instead of 15-17 us. Except during a long local
// copy (serve_all_waiting): on a box with no core to spare the server thread waits for
// one until the copy ends, and the peer waited ~1 ms for its reply (2 ranks on 2 cores,
// 28 x 602 KB draws).
void MpiTransport::serve_waiting_up_to(size_t most) {
  if (stop_.load(std::memory_order_relaxed)) return;
  std::unique_lock lock(serve_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  progress_replies();
  for (int i = 0; i < size_; ++i) {  // bounded: the caller has its own work to do
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, comm_, &flag, &status) != MPI_SUCCESS || !flag) return;
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    if (largest_reply_message(bytes) > most) {
      wake_server();
      return;  // nobody else matches it meanwhile: serve_mu_ is held
    }
    Waiting req;
    if (!match_request(req, status.MPI_SOURCE)) return;
    serve_one(req.message, req.source, req.bytes);
  }
}

size_t MpiTransport::largest_reply_message(int bytes) const {
  const size_t header = sizeof(wire::RequestHeader);
  const size_t slots = static_cast<size_t>(bytes) > header ? (bytes - header) / sizeof(uint32_t) : 0;
  const auto count = static_cast<uint32_t>(std::min<size_t>(slots, options_.max_rows));
  return std::max(reply_message_bytes(count), largest_payload_message(count));
}

void MpiTransport::serve_one(MPI_Message message, int source, int bytes) {
  if (replies_[source].open) finish_reply(source);  // its sends precede this request's
  std::vector<std::byte> oversized;
  std::byte* data = server_request_.data();
  if (static_cast<size_t>(bytes) > server_request_.size()) {
    oversized.resize(bytes);  // drained so it cannot clog the queue; rejected below
    data = oversized.data();
  }
  if (MPI_Mrecv(data, bytes, MPI_BYTE, &message, MPI_STATUS_IGNORE) != MPI_SUCCESS) return;
  LocalBuffer::ReadAccess rows = buffer_->read_access();
  const auto req = wire::decode_request(data, bytes, options_.token, options_.max_rows, rows.size);
  served_.fetch_add(1, std::memory_order_relaxed);
  if (req.status == wire::Status::kBadToken) foreign_.record(source);
  if (!req.has_id) {
    // No id, so no reply tag: answer on the anonymous tag, without waiting (a well-behaved
    // requester never sends such a request, so nobody may ever receive it).
    MPI_Request send = MPI_REQUEST_NULL;
    if (MPI_Isend(&anonymous_reply_, sizeof anonymous_reply_, MPI_BYTE, source, kAnonymousReplyTag, comm_, &send) ==
        MPI_SUCCESS)
      MPI_Request_free(&send);
    return;
  }
  const wire::Status status = stop_.load() ? wire::Status::kClosing : req.status;
  OpenReply& reply = replies_[source];
  post_reply(source, req, status, rows.size, status == wire::Status::kOk ? &rows.columns : nullptr, reply);
  reply.rows = std::move(rows);  // read-locked until the requester has read them
  reply.open = true;
  reply.deadline = Clock::now() + options_.send_timeout;
  reply.payload_open = reply.sends.size() - 1;
  open_replies_.push_back(source);
  if (step_reply(source)) release_reply(source);
}

void MpiTransport::post_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                              const Columns* slots_from, OpenReply& reply) {
  const SampleLayout& layout = buffer_->layout();
  const uint32_t rows = slots_from != nullptr ? req.count : 0;
  const wire::Reply head = wire::make_reply(status, req.request_id, owner_size, rows);
  reply.header.resize(reply_message_bytes(options_.max_rows));
  std::byte* out = reply.header.data();
  std::memcpy(out, &head, sizeof head);
  std::byte* labels = out + sizeof head;
  std::byte* weights = labels + rows * sizeof(int64_t);
  for (uint32_t i = 0; i < rows; ++i) {
    std::memcpy(labels + i * sizeof(int64_t), slots_from->at(layout, layout.label_column(), req.slots[i]),
                sizeof(int64_t));
    std::memcpy(weights + i * sizeof(float), slots_from->at(layout, layout.weight_column(), req.slots[i]),
                sizeof(float));
  }
  const int tag = payload_tag(req.request_id);
  reply.packed.resize(packed_bytes_);  // once per requester
  std::byte* packed = reply.packed.data();
  reply.sends.assign(1, MPI_REQUEST_NULL);
  MPI_Isend(out, static_cast<int>(reply_message_bytes(rows)), MPI_BYTE, dest, header_tag(req.request_id), comm_,
            &reply.sends[0]);
  for (size_t f = 0; rows > 0 && f < layout.num_fields(); ++f) {
    const size_t rb = layout.row_bytes(f);
    if (gather_rows_) {
      send_gathered(dest, tag, req, *slots_from, f, reply);
      continue;
    }
    if (rows_per_message(f) == 1) {
      // Straight from the slots, which stay read-locked until the sends complete.
      for (uint32_t i = 0; i < rows; ++i) {
        reply.sends.push_back(MPI_REQUEST_NULL);
        MPI_Isend(slots_from->at(layout, f, req.slots[i]), static_cast<int>(rb), MPI_BYTE, dest, tag, comm_,
                  &reply.sends.back());
      }
      continue;
    }
    for (uint32_t i = 0; i < rows; ++i) std::memcpy(packed + i * rb, slots_from->at(layout, f, req.slots[i]), rb);
    reply.sends.push_back(MPI_REQUEST_NULL);
    MPI_Isend(packed, static_cast<int>(rb * rows), MPI_BYTE, dest, tag, comm_, &reply.sends.back());
    packed += rb * rows;
  }
}

// The library reads the rows in place (gather_rows_), like a bulk transfer from a list of
// segments; a datatype may be freed while a send that uses it is still open.
void MpiTransport::send_gathered(int dest, int tag, const wire::DecodedRequest& req, const Columns& slots_from,
                                 size_t f, OpenReply& reply) {
  const SampleLayout& layout = buffer_->layout();
  const size_t rb = layout.row_bytes(f);
  const std::byte* column = slots_from.at(layout, f, 0);
  for (size_t first = 0; first < req.count; first += kGatherRows) {
    const size_t rows = std::min<size_t>(kGatherRows, req.count - first);
    displs_.resize(rows);
    for (size_t i = 0; i < rows; ++i) displs_[i] = static_cast<MPI_Aint>(req.slots[first + i] * rb);
    MPI_Datatype type = MPI_DATATYPE_NULL;
    reply.sends.push_back(MPI_REQUEST_NULL);
    if (MPI_Type_create_hindexed_block(static_cast<int>(rows), static_cast<int>(rb), displs_.data(), MPI_BYTE,
                                       &type) != MPI_SUCCESS)
      return;  // no payload: the requester's receive times out and the draw fails cleanly
    if (MPI_Type_commit(&type) == MPI_SUCCESS) MPI_Isend(column, 1, type, dest, tag, comm_, &reply.sends.back());
    MPI_Type_free(&type);
  }
}

// Tests reply `source`'s sends once. True when it is over: complete, failed or past its
// deadline (then withdrawn, with a warning).
bool MpiTransport::step_reply(int source) {
  OpenReply& reply = replies_[source];
  const int done = test_all(reply.sends.data(), reply.sends.size());
  if (done > 0) return true;
  if (done == 0 && Clock::now() < reply.deadline) return false;
  std::fprintf(stderr, "reverie: rank %d: reply to rank %d %s; dropping it\n", rank_, source,
               done < 0 ? "failed" : "timed out");
  withdraw(reply.sends.data(), reply.sends.size());
  return true;
}

void MpiTransport::release_reply(int source) {
  OpenReply& reply = replies_[source];
  reply.rows = LocalBuffer::ReadAccess{};  // unlocks the rows
  reply.open = false;
  open_replies_.erase(std::find(open_replies_.begin(), open_replies_.end(), source));
}

bool MpiTransport::progress_replies() {
  bool progressed = false;
  for (size_t i = 0; i < open_replies_.size();) {
    const int source = open_replies_[i];
    OpenReply& reply = replies_[source];
    if (step_reply(source)) {
      release_reply(source);
      progressed = true;
      continue;
    }
    const size_t still_open = open_requests(reply.sends.data() + 1, reply.sends.size() - 1);
    progressed = progressed || still_open < reply.payload_open;
    reply.payload_open = still_open;
    ++i;
  }
  return progressed;
}

void MpiTransport::finish_reply(int source) {
  Backoff backoff(kHotMaxSleep, kActiveSpin);
  while (!step_reply(source)) backoff.pause();
  release_reply(source);
}

// The server has stopped: every rank stopped fetching (close), or this process is leaving
// (abandon). A reply still open gets a short grace period, then is withdrawn.
void MpiTransport::settle_replies() {
  std::lock_guard lock(serve_mu_);
  const auto grace = Clock::now() + kHotSpin;
  Backoff backoff(kHotMaxSleep, kShortSpin);
  while (progress_replies(), !open_replies_.empty() && Clock::now() < grace) backoff.pause();
  for (const int source : std::vector<int>(open_replies_)) {
    withdraw(replies_[source].sends.data(), replies_[source].sends.size());
    release_reply(source);
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
        if (result.reply.status == static_cast<uint16_t>(wire::Status::kOk))
          expected_payload = payload_messages(result.reply.count);
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
