#include "transport/mpi/mpi_transport.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/thread_name.h"
#include "common/tuning.h"
#include "transport/mpi/mpi_requests.h"

// The requester side of the MPI engine: a draw's requests to its owners, their replies
// (header, then payload rows straight into the destination), deadlines.

namespace reverie {

using namespace mpi_detail;
using namespace tuning::mpi;

void MpiTransport::post_reply_receive(size_t i, const PeerRequest& req, uint64_t id, const Columns& dest) {
  const int header_bytes = static_cast<int>(reply_message_bytes(req.count));
  if (!fuses(req.peer, req.count)) {
    check(MPI_Irecv(reply_bufs_[req.peer].data(), header_bytes, MPI_BYTE, req.peer, header_tag(id), comm_,
                    &headers_[i]),
          "MPI_Irecv(reply)");
    return;
  }
  // An error reply is its header alone: a shorter message, which fills the first block.
  const SampleLayout& layout = buffer_->layout();
  const size_t blocks = layout.num_fields() + 1;
  std::vector<int> lengths(blocks, header_bytes);
  std::vector<MPI_Aint> at(blocks);
  const std::vector<MPI_Datatype> types(blocks, MPI_BYTE);
  MPI_Get_address(reply_bufs_[req.peer].data(), &at[0]);
  for (size_t f = 0; f + 1 < blocks; ++f) {
    lengths[f + 1] = static_cast<int>(layout.row_bytes(f) * req.count);
    MPI_Get_address(dest.at(layout, f, req.first_row), &at[f + 1]);
  }
  MPI_Datatype whole = MPI_DATATYPE_NULL;
  check(MPI_Type_create_struct(static_cast<int>(blocks), lengths.data(), at.data(), types.data(), &whole),
        "MPI_Type_create_struct(reply)");
  check(MPI_Type_commit(&whole), "MPI_Type_commit(reply)");
  const int posted = MPI_Irecv(MPI_BOTTOM, 1, whole, req.peer, header_tag(id), comm_, &headers_[i]);
  MPI_Type_free(&whole);  // the receive keeps what it needs
  check(posted, "MPI_Irecv(reply)");
}

void MpiTransport::post_payload(const PeerRequest& req, uint64_t id, const Columns& dest, MPI_Request* out) {
  const SampleLayout& layout = buffer_->layout();
  if (req.count == 0 || fuses(req.peer, req.count)) return;
  const int tag = payload_tag(id);
  for (size_t f = 0; f < layout.num_fields(); ++f) {
    const size_t rb = layout.row_bytes(f);
    const size_t per = rows_per_message(req.peer, f);
    if (pieces_per_row(req.peer, f) > 1) {
      const size_t piece = piece_bytes(req.peer, f);
      for (size_t i = 0; i < req.count; ++i)
        for (size_t at = 0; at < rb; at += piece)
          check(MPI_Irecv(dest.at(layout, f, req.first_row + i) + at, static_cast<int>(std::min(piece, rb - at)),
                          MPI_BYTE, req.peer, tag, comm_, out++),
                "MPI_Irecv(payload)");
      continue;
    }
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
  const size_t own = buffer_->size();
  sender_ = wire::Sender{rank_, own, own == buffer_->capacity(), back_to_back};
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
    // Over a network path even an eager reply comes a round trip later, past the short
    // window: Open MPI's tcp BTL, 2 ranks drawing 7 x 12 KB back to back (one packed eager
    // reply each): 180 us per draw polled gently (sleeps from kShortMinSleep), 40 us hot.
    for (const PeerRequest& req : requests)
      open_.hot = open_.hot || payload_past_eager(req.peer, req.count) || !paths_[req.peer].shared_memory;
    if (open_.hot) open_.backoff = Backoff(kHotMaxSleep, kHotSpin);
  }
  if (local_work) local_work();
  open_.waiting_since = open_.last_answer = Clock::now();
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
    if (!open_.hot && stages_[i] == Stage::kPayload && payload_past_eager(requests[i].peer, requests[i].count)) {
      open_.hot = true;
      open_.backoff = Backoff(kHotMaxSleep, kHotSpin);
    }
  }
  if (progressed) open_.backoff.reset();
  if (open_.count > 0 && Clock::now() < open_.deadline) return false;
  count_waits(std::none_of(stages_.begin(), stages_.end(), [](Stage s) { return s == Stage::kHeader; }));
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

// A fetch that timed out waiting for an answer spent its whole wait on answers.
void MpiTransport::count_waits(bool all_answered) {
  const auto end = Clock::now();
  const auto answered = all_answered ? open_.last_answer : end;
  const auto ns = [](Clock::duration d) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  };
  waits_.answer_ns += ns(answered - open_.waiting_since);
  waits_.rows_ns += ns(end - answered);
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
    payload_first_[i + 1] = payload_first_[i] + payload_messages(requests[i].peer, requests[i].count);
  }
  payloads_.assign(payload_first_[n], MPI_REQUEST_NULL);
}

void MpiTransport::post_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply) {
  const uint64_t id = next_request_id_++;
  ids_[i] = id;
  reply.peer = req.peer;
  post_reply_receive(i, req, id, dest);
  post_payload(req, id, dest, &payloads_[payload_first_[i]]);
  const size_t len =
      wire::encode_request(options_.token, id, req.slots, req.count, request_bufs_[req.peer].data(), sender_);
  check(MPI_Isend(request_bufs_[req.peer].data(), static_cast<int>(len), MPI_BYTE, req.peer, kRequestTag, comm_,
                  &sends_[i]),
        "MPI_Isend(request)");
}

// A request is finished once its reply (and payload, if any) arrived and its send completed.
bool MpiTransport::poll_request(size_t i, const PeerRequest& req, const Columns& dest, PeerReply& reply) {
  bool progressed = false;
  if (stages_[i] == Stage::kHeader) {
    progressed = take_header(i, req, dest, reply);
    if (stages_[i] != Stage::kHeader) open_.last_answer = Clock::now();
  }
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
  const bool whole = ok && fuses(req.peer, req.count);  // the rows came with it
  const size_t expected = whole ? whole_reply_bytes(req.count) : reply_message_bytes(ok ? req.count : 0);
  if (static_cast<size_t>(bytes) != expected || !wire::reply_valid(reply, ids_[i], req.count)) {
    fail_request(i, wire::Status::kMalformed, out);
    return true;
  }
  out.owner_size = reply.owner_size;
  out.owner_full = (reply.flags & wire::kFlagFull) != 0;
  if (!ok) {
    fail_request(i, static_cast<wire::Status>(reply.status), out);  // no payload follows
    return true;
  }
  out.status = wire::Status::kOk;
  const size_t row = req.first_row;
  std::memcpy(dest.at(layout, layout.label_column(), row), msg + sizeof reply, req.count * sizeof(int64_t));
  std::memcpy(dest.at(layout, layout.weight_column(), row), msg + sizeof reply + req.count * sizeof(int64_t),
              req.count * sizeof(float));
  stages_[i] = whole ? Stage::kDone : Stage::kPayload;
  return true;
}

}  // namespace reverie
