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
#include "transport/mpi/mpi_requests.h"

// The owner side of the MPI engine: the server thread's loop, callers answering waiting
// requests, replies posted as open sends over read-locked rows, and their completion.

namespace reverie {

using namespace mpi_detail;
using namespace tuning::mpi;

void MpiTransport::serve_loop() {
  name_this_thread("reverie-server");
  Backoff::tighten_timer_slack();
  Backoff::lower_priority();
  Backoff backoff(idle_sleep_, kIdleSpin, server_min_sleep(idle_sleep_));
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
    bool back_to_back = false;
    bool open = false;
    {
      std::lock_guard lock(serve_mu_);
      if (progress_replies()) {
        replies.reset(kActiveSpin);
        backoff.reset(window);
      }
      served = match_request(req);
      if (served) back_to_back = serve_one(req.message, req.source, req.bytes);
      open = !open_replies_.empty();
    }
    if (served) {
      // A requester drawing back to back whose request waited for this server to wake up
      // (so its gap looks long) still gets a hot window: without it, small draws from an
      // idle owner over Open MPI's tcp BTL took ~3 ms each, the server's sleep, instead of
      // ~20 us (2 ranks on 2 cores, dev box).
      const auto burst = req.burst.count() == 0 && back_to_back ? kBurstMinSpin / 4 : req.burst;
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
  // The gap is the requester's own pause: from when it had read its last reply (or, if it
  // asks again before that reply was seen complete, none). Counted from its last request
  // instead, a requester drawing large payloads back to back (each read taking over
  // kBurstGap) looked idle, and the server slept 1 ms or more before each of its requests:
  // rank 0 drawing 28 x 602 KB rows from an idle owner over MPICH's network module (UCX,
  // one message per row) took 2.6-4.1 ms (median of 600 draws, three runs), now 2.0-2.3 ms,
  // like over shared memory (2.1-2.4 ms before and after); with every rank drawing
  // (remote_fetch.py) nothing changed (2 ranks on 2 cores, dev box).
  const auto now = Clock::now();
  const auto gap = replies_[out.source].open
                       ? std::chrono::microseconds(0)
                       : std::chrono::duration_cast<std::chrono::microseconds>(now - last_heard_[out.source]);
  out.burst = gap < kBurstGap ? std::max(gap, std::chrono::microseconds(1)) : std::chrono::microseconds(0);
  last_heard_[out.source] = now;
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
void MpiTransport::serve_waiting_up_to(bool eager_only) {
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
    if (eager_only && largest_reply_message(status.MPI_SOURCE, bytes) > paths_[status.MPI_SOURCE].eager_bytes) {
      wake_server();
      return;  // nobody else matches it meanwhile: serve_mu_ is held
    }
    Waiting req;
    if (!match_request(req, status.MPI_SOURCE)) return;
    serve_one(req.message, req.source, req.bytes);
  }
}

size_t MpiTransport::largest_reply_message(int peer, int bytes) const {
  const size_t header = sizeof(wire::RequestHeader);
  const size_t slots = static_cast<size_t>(bytes) > header ? (bytes - header) / sizeof(uint32_t) : 0;
  const auto count = static_cast<uint32_t>(std::min<size_t>(slots, options_.max_rows));
  return std::max(reply_message_bytes(count), largest_payload_message(peer, count));
}

bool MpiTransport::serve_one(MPI_Message message, int source, int bytes) {
  if (replies_[source].open) finish_reply(source);  // its sends precede this request's
  std::vector<std::byte> oversized;
  std::byte* data = server_request_.data();
  if (static_cast<size_t>(bytes) > server_request_.size()) {
    oversized.resize(bytes);  // drained so it cannot clog the queue; rejected below
    data = oversized.data();
  }
  if (MPI_Mrecv(data, bytes, MPI_BYTE, &message, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
  LocalBuffer::ReadAccess rows = buffer_->read_access();
  const auto req = wire::decode_request(data, bytes, options_.token, options_.max_rows, rows.size);
  served_.fetch_add(1, std::memory_order_relaxed);
  if (req.status == wire::Status::kBadToken) foreign_.record(source);
  // A request of this job says how many samples its sender holds (a hand-made one may not).
  if (req.has_id && req.status != wire::Status::kBadToken && req.status != wire::Status::kMalformed &&
      req.sender.rank == source)
    peer_sizes_.heard(source, req.sender.size, req.sender.full);
  if (!req.has_id) {
    // No id, so no reply tag: answer on the anonymous tag, without waiting (a well-behaved
    // requester never sends such a request, so nobody may ever receive it).
    MPI_Request send = MPI_REQUEST_NULL;
    if (MPI_Isend(&anonymous_reply_, sizeof anonymous_reply_, MPI_BYTE, source, kAnonymousReplyTag, comm_, &send) ==
        MPI_SUCCESS)
      MPI_Request_free(&send);
    return false;
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
  return req.status != wire::Status::kBadToken && req.sender.back_to_back;
}

void MpiTransport::post_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                              const Columns* slots_from, OpenReply& reply) {
  const SampleLayout& layout = buffer_->layout();
  const uint32_t rows = slots_from != nullptr ? req.count : 0;
  const wire::Reply head =
      wire::make_reply(status, req.request_id, owner_size, rows, owner_size == buffer_->capacity());
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
  if (rows > 0 && packed_bytes_ > 0) reply.packed = take_staging();
  std::byte* packed = reply.packed.data();
  reply.sends.assign(1, MPI_REQUEST_NULL);
  if (fuses(dest, rows)) {
    send_whole(dest, req, *slots_from, reply);
    return;
  }
  MPI_Isend(out, static_cast<int>(reply_message_bytes(rows)), MPI_BYTE, dest, header_tag(req.request_id), comm_,
            &reply.sends[0]);
  for (size_t f = 0; rows > 0 && f < layout.num_fields(); ++f) {
    const size_t rb = layout.row_bytes(f);
    if (gathers(dest)) {
      send_gathered(dest, tag, req, *slots_from, f, reply);
      continue;
    }
    if (rows_per_message(dest, f) == 1) {
      // Straight from the slots, which stay read-locked until the sends complete.
      const size_t piece = piece_bytes(dest, f);
      for (uint32_t i = 0; i < rows; ++i) {
        const std::byte* row = slots_from->at(layout, f, req.slots[i]);
        for (size_t at = 0; at < rb; at += piece) {
          reply.sends.push_back(MPI_REQUEST_NULL);
          MPI_Isend(row + at, static_cast<int>(std::min(piece, rb - at)), MPI_BYTE, dest, tag, comm_,
                    &reply.sends.back());
        }
      }
      continue;
    }
    std::byte* end = pack_rows(packed, req, *slots_from, f);
    reply.sends.push_back(MPI_REQUEST_NULL);
    MPI_Isend(packed, static_cast<int>(end - packed), MPI_BYTE, dest, tag, comm_, &reply.sends.back());
    packed = end;
  }
}

std::byte* MpiTransport::pack_rows(std::byte* to, const wire::DecodedRequest& req, const Columns& slots_from,
                                   size_t f) const {
  const SampleLayout& layout = buffer_->layout();
  const size_t rb = layout.row_bytes(f);
  for (uint32_t i = 0; i < req.count; ++i) std::memcpy(to + i * rb, slots_from.at(layout, f, req.slots[i]), rb);
  return to + rb * req.count;
}

void MpiTransport::send_whole(int dest, const wire::DecodedRequest& req, const Columns& slots_from,
                              OpenReply& reply) {
  const size_t header = reply_message_bytes(req.count);
  std::byte* at = reply.packed.data();
  std::memcpy(at, reply.header.data(), header);
  at += header;
  for (size_t f = 0; f < buffer_->layout().num_fields(); ++f) at = pack_rows(at, req, slots_from, f);
  MPI_Isend(reply.packed.data(), static_cast<int>(at - reply.packed.data()), MPI_BYTE, dest,
            header_tag(req.request_id), comm_, &reply.sends[0]);
}

// The library reads the rows in place where it can (paths_[dest].gathers_in_place), like a bulk transfer
// from a list of segments; a datatype may be freed while a send that uses it is still open.
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
  move_staging(reply, retired_staging_);
  return true;
}

std::vector<std::byte> MpiTransport::take_staging() {
  if (spare_staging_.empty()) {
    staging_bytes_.fetch_add(packed_bytes_, std::memory_order_relaxed);
    return std::vector<std::byte>(packed_bytes_);
  }
  std::vector<std::byte> staging = std::move(spare_staging_.back());
  spare_staging_.pop_back();
  return staging;
}

void MpiTransport::move_staging(OpenReply& reply, std::vector<std::vector<std::byte>>& to) {
  if (!reply.packed.empty()) to.push_back(std::move(reply.packed));  // leaves reply.packed empty
}

void MpiTransport::release_reply(int source) {
  OpenReply& reply = replies_[source];
  last_heard_[source] = Clock::now();  // the requester has read it (or it failed)
  reply.rows = LocalBuffer::ReadAccess{};  // unlocks the rows
  move_staging(reply, spare_staging_);  // its sends are over
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
    move_staging(replies_[source], retired_staging_);
    release_reply(source);
  }
}

}  // namespace reverie
