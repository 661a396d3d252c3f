#include "transport/mpi/mpi_transport.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/backoff.h"

namespace reverie {
namespace {

constexpr int kRequestTag = 1;
constexpr int kReplyTagBase = 16;
constexpr uint64_t kReplyTagSpan = 8192;  // 16 + 2 * 8192 stays under the guaranteed MPI_TAG_UB

int header_tag(uint64_t id) { return kReplyTagBase + static_cast<int>(2 * (id % kReplyTagSpan)); }
int payload_tag(uint64_t id) { return header_tag(id) + 1; }

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string("mpi transport: ") + what + ": " + std::string(msg, len));
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

  const size_t columns = buffer_->layout().num_columns();
  request_bufs_.assign(size_, std::vector<std::byte>(wire::request_bytes(options_.max_rows)));
  reply_bufs_.resize(size_);
  pending_.reserve(3 * size_);
  recv_types_.reserve(size_);
  client_displs_.resize(columns);
  client_lens_.resize(columns);
  server_request_.resize(wire::request_bytes(options_.max_rows));
  server_displs_.resize(columns * options_.max_rows);
  server_lens_.resize(columns * options_.max_rows);
  server_ = std::thread([this] { serve_loop(); });
}

MpiTransport::~MpiTransport() { stop_server(); }

void MpiTransport::stop_server() {
  stop_.store(true);
  if (server_.joinable()) server_.join();
}

MPI_Datatype MpiTransport::rows_type(const Columns& cols, const uint32_t* slots, size_t first_row, uint32_t count,
                                     std::vector<MPI_Aint>& displs, std::vector<int>& lens) const {
  const SampleLayout& layout = buffer_->layout();
  size_t n = 0;
  for (size_t c = 0; c < layout.num_columns(); ++c) {
    const auto rb = static_cast<int>(layout.row_bytes(c));
    if (slots == nullptr) {
      MPI_Get_address(cols.at(layout, c, first_row), &displs[n]);
      lens[n++] = rb * static_cast<int>(count);
      continue;
    }
    for (uint32_t i = 0; i < count; ++i) {
      MPI_Get_address(cols.at(layout, c, slots[i]), &displs[n]);
      lens[n++] = rb;
    }
  }
  MPI_Datatype type;
  check(MPI_Type_create_hindexed(static_cast<int>(n), lens.data(), displs.data(), MPI_BYTE, &type),
        "MPI_Type_create_hindexed");
  check(MPI_Type_commit(&type), "MPI_Type_commit");
  return type;
}

void MpiTransport::fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                         std::vector<PeerReply>& replies) {
  if (closed_) throw std::runtime_error("mpi transport: fetch after close");
  replies.assign(requests.size(), PeerReply{});
  pending_.assign(3 * requests.size(), MPI_REQUEST_NULL);
  std::vector<uint64_t> ids(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const PeerRequest& req = requests[i];
    if (req.count > options_.max_rows) throw std::invalid_argument("mpi transport: request exceeds max rows");
    const uint64_t id = next_request_id_++;
    ids[i] = id;
    replies[i].peer = req.peer;
    MPI_Request* r = &pending_[3 * i];
    check(MPI_Irecv(&reply_bufs_[req.peer], sizeof(wire::Reply), MPI_BYTE, req.peer, header_tag(id), comm_, &r[0]),
          "MPI_Irecv(reply)");
    if (req.count > 0) {
      MPI_Datatype type = rows_type(dest, nullptr, req.first_row, req.count, client_displs_, client_lens_);
      check(MPI_Irecv(MPI_BOTTOM, 1, type, req.peer, payload_tag(id), comm_, &r[1]), "MPI_Irecv(payload)");
      MPI_Type_free(&type);
    } else {
      check(MPI_Irecv(nullptr, 0, MPI_BYTE, req.peer, payload_tag(id), comm_, &r[1]), "MPI_Irecv(payload)");
    }
    const size_t len = wire::encode_request(options_.token, id, req.slots, req.count, request_bufs_[req.peer].data());
    check(MPI_Isend(request_bufs_[req.peer].data(), static_cast<int>(len), MPI_BYTE, req.peer, kRequestTag, comm_,
                    &r[2]),
          "MPI_Isend(request)");
  }

  Backoff backoff(std::chrono::microseconds(100), 256);
  size_t open = requests.size();
  std::vector<bool> finished(requests.size(), false);
  while (open > 0 && Clock::now() < deadline) {
    bool progressed = false;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (finished[i]) continue;
      int flag = 0;
      MPI_Testall(3, &pending_[3 * i], &flag, MPI_STATUSES_IGNORE);
      if (!flag) continue;
      finished[i] = true;
      progressed = true;
      --open;
      const wire::Reply& reply = reply_bufs_[requests[i].peer];
      if (!wire::reply_valid(reply, ids[i], requests[i].count)) {
        replies[i].status = wire::Status::kMalformed;
        continue;
      }
      replies[i].status = static_cast<wire::Status>(reply.status);
      replies[i].owner_size = reply.owner_size;
    }
    if (progressed) backoff.reset();
    if (open > 0) backoff.pause();
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (finished[i]) continue;
    // Timed out: withdraw the receives so no late reply lands in memory reused later.
    for (int k = 0; k < 2; ++k)
      if (pending_[3 * i + k] != MPI_REQUEST_NULL) {
        MPI_Cancel(&pending_[3 * i + k]);
        MPI_Request_free(&pending_[3 * i + k]);
      }
    if (pending_[3 * i + 2] != MPI_REQUEST_NULL) MPI_Request_free(&pending_[3 * i + 2]);
    replies[i].status = wire::Status::kTimeout;
  }
}

void MpiTransport::serve_loop() {
  Backoff backoff(std::chrono::microseconds(1000));
  while (!stop_.load(std::memory_order_relaxed)) {
    int flag = 0;
    MPI_Message message;
    MPI_Status status;
    if (MPI_Improbe(MPI_ANY_SOURCE, kRequestTag, comm_, &flag, &message, &status) != MPI_SUCCESS || !flag) {
      backoff.pause();
      continue;
    }
    backoff.reset();
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    serve_one(message, status.MPI_SOURCE, bytes);
  }
}

void MpiTransport::serve_one(MPI_Message message, int source, int bytes) {
  std::vector<std::byte> oversized;
  std::byte* data = server_request_.data();
  if (static_cast<size_t>(bytes) > server_request_.size()) {
    oversized.resize(bytes);  // drained so it cannot clog the queue; rejected below
    data = oversized.data();
  }
  if (MPI_Mrecv(data, bytes, MPI_BYTE, &message, MPI_STATUS_IGNORE) != MPI_SUCCESS) return;
  buffer_->read([&](const Columns& arena, size_t size) {
    const auto req = wire::decode_request(data, bytes, options_.token, options_.max_rows, size);
    if (!req.has_id) return;  // no id, no tag to answer on: the sender is not one of ours
    if (stop_.load()) return send_reply(source, req, wire::Status::kClosing, size, nullptr);
    send_reply(source, req, req.status, size, req.status == wire::Status::kOk ? &arena : nullptr);
  });
  served_.fetch_add(1, std::memory_order_relaxed);
}

void MpiTransport::send_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                              const Columns* slots_from) {
  const uint32_t rows = slots_from != nullptr ? req.count : 0;
  const wire::Reply reply = wire::make_reply(status, req.request_id, owner_size, rows);
  MPI_Request sends[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  MPI_Isend(&reply, sizeof reply, MPI_BYTE, dest, header_tag(req.request_id), comm_, &sends[0]);
  if (rows > 0) {
    MPI_Datatype type = rows_type(*slots_from, req.slots, 0, rows, server_displs_, server_lens_);
    MPI_Isend(MPI_BOTTOM, 1, type, dest, payload_tag(req.request_id), comm_, &sends[1]);
    MPI_Type_free(&type);
  } else {
    MPI_Isend(nullptr, 0, MPI_BYTE, dest, payload_tag(req.request_id), comm_, &sends[1]);
  }
  Backoff backoff(std::chrono::microseconds(100), 256);
  const auto deadline = Clock::now() + options_.send_timeout;
  int done = 0;
  while (true) {
    MPI_Testall(2, sends, &done, MPI_STATUSES_IGNORE);
    if (done || Clock::now() >= deadline) break;
    backoff.pause();
  }
  if (done) return;
  std::fprintf(stderr, "reverie: rank %d: reply to rank %d timed out; dropping it\n", rank_, dest);
  for (auto& s : sends)
    if (s != MPI_REQUEST_NULL) {
      MPI_Cancel(&s);
      MPI_Request_free(&s);
    }
}

bool MpiTransport::close(Clock::time_point deadline) {
  if (closed_) return true;
  closed_ = true;
  MPI_Request barrier = MPI_REQUEST_NULL;
  bool all_arrived = MPI_Ibarrier(comm_, &barrier) == MPI_SUCCESS;
  Backoff backoff(std::chrono::microseconds(1000));
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
