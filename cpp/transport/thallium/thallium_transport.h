#pragma once
// The HPC engine: Thallium (Mochi) RPCs and bulk transfers, over any Mercury protocol
// ("na+sm", "ofi+tcp", "ofi+verbs", "ofi+cxi", "ucx+...").
//
// Every rank runs one Thallium engine with one progress thread (an Argobots execution
// stream that also runs the RPC handlers: rpc_thread_count = -1). Requests are issued from
// the rehearsal engine's plain std::thread and waited for there; nothing ever needs the
// Python main thread. More threads cost latency on small nodes (2-10x on two cores), and so
// does Margo's busy-polling "spindown", which is off unless REVERIE_THALLIUM_SPINDOWN_MS is set.
//
// Roles:
//   server: a SampleProvider (sample_provider.h) answers reverie_get_samples by pushing the
//           requested rows straight into the requester's receive block;
//   client: fetch() sends one timed reverie_get_samples per peer, all at once, and waits for
//           each with the time left. Each receive block (the engine alternates between two)
//           is exposed once, write-only, on first use and kept.
// Lifecycle: construct (starts serving) -> self_address() -> allgather -> connect(all
// addresses) -> fetch()... -> close() (collective) or abandon().
//
// Addresses: "na+sm" (one node), "ofi+tcp://127.0.0.1" (loopback; plain "ofi+tcp" binds the
// first non-loopback interface), "ofi+verbs://<iface>", "ofi+cxi://...". Known not to work
// here: "ofi+sockets" (the deprecated libfabric provider hangs in transfers).
//
// A request that timed out may still have its rows pushed later by a slow owner (a push
// cannot be revoked). The rehearsal engine excludes such a peer and retires the receive
// block that request named (RehearsalEngine::retire_block), so the late rows land in
// memory no draw uses again.
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <thallium.hpp>

#include "buffer/local_buffer.h"
#include "store/staging_block.h"
#include "transport/thallium/sample_provider.h"
#include "transport/transport.h"

namespace reverie {

struct ThalliumTransportOptions {
  std::string address = "na+sm";  // protocol, optionally with a host, e.g. "ofi+tcp://127.0.0.1"
  uint64_t token = 0;
  uint32_t max_rows = 64;         // most slots one request may name
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{30000};  // owner-side transfer limit; close() notices
};

class ThalliumTransport final : public Transport {
 public:
  // Starts the Thallium engine and the provider. Throws std::runtime_error (naming the
  // address) when the protocol cannot be initialised.
  ThalliumTransport(std::shared_ptr<const LocalBuffer> buffer, ThalliumTransportOptions options);
  ~ThalliumTransport() override;  // abandon() unless closed
  ThalliumTransport(const ThalliumTransport&) = delete;
  ThalliumTransport& operator=(const ThalliumTransport&) = delete;

  // This rank's address, to be exchanged over the bootstrap communicator.
  std::string self_address() const;

  // Looks up every peer's provider; addresses[i] is rank i's self_address(). Throws
  // std::invalid_argument on a wrong count, std::runtime_error when a lookup fails.
  void connect(const std::vector<std::string>& addresses);

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const char* name() const override { return "thallium"; }

  // See Transport::fetch. Requests to every peer are in flight together; a peer that does
  // not answer by `deadline` gets kTimeout (also when it is unreachable).
  void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
             std::vector<PeerReply>& replies) override;

  // Collective barrier over RPCs, then shutdown: tells every peer "closing" (this rank sends
  // no more requests), keeps serving until every peer said the same or `deadline` passes,
  // then drains the provider, finalizes the engine and destroys the provider.
  bool close(Clock::time_point deadline) override;

  // Not collective: the same shutdown without the barrier.
  void abandon() override;

  // Requests this rank's provider answered (errors included), until shutdown.
  uint64_t requests_served() const override {
    return provider_ ? provider_->requests_served() : served_at_shutdown_;
  }

  // Test hook: sends `bytes` verbatim as a reverie_get_samples request to `peer`, with a
  // scratch receive block of max_rows rows; waits until `deadline`. nullopt: no reply.
  struct RawReply {
    wire::Reply reply{};
    size_t reply_bytes = 0;  // size of the reply message (reply + labels + weights)
  };
  std::optional<RawReply> send_raw_request(int peer, const std::string& bytes, Clock::time_point deadline);

 private:
  // A destination block exposed for writing, with each field's offset inside the bulk.
  struct ExposedBlock {
    std::array<std::byte*, kMaxColumns> base{};
    size_t rows = 0;
    tl::bulk bulk;
    std::vector<uint64_t> field_offset;
  };
  const ExposedBlock& exposed(const Columns& dest);
  void check_peer(int peer) const;
  void shutdown();

  std::shared_ptr<const LocalBuffer> buffer_;
  ThalliumTransportOptions options_;
  tl::engine engine_;
  std::unique_ptr<SampleProvider> provider_;
  std::optional<tl::remote_procedure> get_samples_;
  std::optional<tl::remote_procedure> closing_;
  std::vector<std::optional<tl::provider_handle>> peers_;  // by rank; none for self
  std::vector<ExposedBlock> blocks_;                        // receive blocks, exposed once
  std::unique_ptr<StagingBlock> raw_block_;                 // send_raw_request's receive block
  std::vector<bool> foreign_peers_;  // by rank: answered with another job's token (close skips it)
  uint64_t next_request_id_ = 1;
  Clock::time_point last_fetch_end_{};
  bool closed_ = false;     // close() or abandon() was called
  bool finalized_ = false;  // shutdown() ran
  uint64_t served_at_shutdown_ = 0;

  // Client scratch, reused by every fetch().
  std::vector<std::string> request_bytes_;
  std::vector<std::vector<uint64_t>> offsets_;
  std::vector<uint64_t> ids_;
  std::vector<tl::async_response> pending_;
  std::vector<bool> issued_;
};

}  // namespace reverie
