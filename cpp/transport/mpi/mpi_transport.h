#pragma once
// The portable engine: MPI from the job (MPI_THREAD_MULTIPLE), on a duplicated
// communicator. A server thread answers requests; payload rows travel as one message per
// request whose derived datatype reads the owner's slots in place and writes the
// requester's destination rows in place (zero-copy on both sides).
#include <mpi.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "buffer/local_buffer.h"
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
  bool close(Clock::time_point deadline) override;
  void abandon() override { stop_server(); }

  uint64_t requests_served() const { return served_.load(); }

 private:
  void serve_loop();
  void serve_one(MPI_Message message, int source, int bytes);
  void send_reply(int dest, const wire::DecodedRequest& req, wire::Status status, uint64_t owner_size,
                  const Columns* slots_from);
  bool wait_all(std::vector<MPI_Request>& reqs, Clock::time_point deadline);
  MPI_Datatype rows_type(const Columns& cols, const uint32_t* slots, size_t first_row, uint32_t count,
                         std::vector<MPI_Aint>& displs, std::vector<int>& lens) const;
  void stop_server();

  std::shared_ptr<const LocalBuffer> buffer_;
  MpiTransportOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  uint64_t next_request_id_ = 1;
  bool closed_ = false;

  // Client side scratch, sized once.
  std::vector<std::vector<std::byte>> request_bufs_;
  std::vector<wire::Reply> reply_bufs_;
  std::vector<MPI_Request> pending_;
  std::vector<MPI_Datatype> recv_types_;
  std::vector<MPI_Aint> client_displs_;
  std::vector<int> client_lens_;

  // Server side scratch, sized once.
  std::vector<std::byte> server_request_;
  std::vector<MPI_Aint> server_displs_;
  std::vector<int> server_lens_;

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> served_{0};
  std::thread server_;
};

}  // namespace reverie
