#pragma once
// The server role of the Thallium engine: one provider per rank answers peers' draw
// requests from this rank's buffer, and records which peers announced that they close.
//
// RPCs (provider id kProviderId):
//   reverie_get_samples(request, dest, offsets) -> reply
//     request: wire::RequestHeader + slots (validated by wire::decode_request: token, count,
//              slots < size; the sender's rank and size feed PeerSizes); dest: the requester's exposed receive block (write-only);
//     offsets: one per field, the byte offset in `dest` where this request's first row of
//              that field lands. For an ok request the owner first pushes the field rows of
//              the named slots into `dest` (one transfer per field, from one read-only bulk
//              made of the slots' rows, registered per request under the reader lock), then
//     reply:   wire::Reply, then count labels (int64) and count weights (float32).
//     An error (bad token, bad slot, too many, malformed, closing) is a reply with count 0.
//   reverie_closing(request, rank) -> status
//     request: a count-0 wire request (its token is checked); rank: the sender, which
//     promises to send no further reverie_get_samples (see ThalliumTransport::close).
//
// Handlers run on the engine's progress thread (rpc_thread_count = -1). They hold the
// buffer's reader lock while their transfer is in flight and yield to Argobots meanwhile,
// so other handlers take the reader lock too; that relies on std::shared_mutex letting a
// reader in while a writer waits (glibc's default, reader-preferring rwlock). Inserts wait
// at most one transfer, which is bounded by `push_timeout`.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <thallium.hpp>

#include "buffer/local_buffer.h"
#include "transport/foreign_requests.h"
#include "transport/peer_sizes.h"
#include "transport/wire_format.h"

namespace reverie {

namespace tl = thallium;

inline constexpr uint16_t kSampleProviderId = 7;
inline constexpr const char* kGetSamplesRpc = "reverie_get_samples";
inline constexpr const char* kClosingRpc = "reverie_closing";

struct SampleProviderOptions {
  uint64_t token = 0;
  uint32_t max_rows = 64;  // most slots one request may name
  int world_size = 1;      // ranks that may announce closing
  std::chrono::milliseconds push_timeout{30000};
  ForeignRequests* foreign = nullptr;  // counts requests with another job's token (the transport's)
  PeerSizes* sizes = nullptr;          // records the requesters' sizes (the transport's)
  int rank = 0;                        // this rank: a request claiming it is ignored for sizes
};

class SampleProvider final : public tl::provider<SampleProvider> {
 public:
  // Registers the RPCs on `engine`; serving starts at once.
  SampleProvider(const tl::engine& engine, std::shared_ptr<const LocalBuffer> buffer, SampleProviderOptions options);
  // Deregisters the RPCs. Call only after drain() and engine.finalize_and_wait(): a handler
  // still running, or one started by a late request, would use a destroyed provider.
  ~SampleProvider() override;
  SampleProvider(const SampleProvider&) = delete;
  SampleProvider& operator=(const SampleProvider&) = delete;

  // From now on answers every draw request with kClosing; blocks until the handlers in
  // flight have finished (each is bounded by push_timeout). Called from a plain thread.
  void drain();

  // Blocks until every rank p with awaited[p] announced closing, or until `deadline`.
  // Returns whether all did.
  bool wait_all_closing(const std::vector<bool>& awaited, std::chrono::steady_clock::time_point deadline);

  uint64_t requests_served() const { return served_.load(); }

 private:
  void get_samples(const tl::request& req, const std::string& request, tl::bulk& dest,
                   const std::vector<uint64_t>& offsets);
  void closing(const tl::request& req, const std::string& request, int32_t rank);

  // Pushes the field rows of `slots` into `dest` at `offsets`. Returns false when an offset
  // does not fit `dest` (nothing is pushed); throws what Thallium throws on a failed transfer.
  bool push_rows(const tl::request& req, const Columns& arena, const uint32_t* slots, uint32_t count,
                 tl::bulk& dest, const std::vector<uint64_t>& offsets);

  bool enter();  // false once draining
  void leave();

  std::shared_ptr<const LocalBuffer> buffer_;
  SampleProviderOptions options_;
  tl::remote_procedure get_samples_rpc_;
  tl::remote_procedure closing_rpc_;

  // Handler bookkeeping: critical sections are a few instructions and never yield, so a
  // std::mutex is safe inside handlers and lets a plain thread wait in drain().
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  bool draining_ = false;
  std::vector<bool> closing_;  // by rank: announced closing

  std::atomic<uint64_t> served_{0};
};

}  // namespace reverie
