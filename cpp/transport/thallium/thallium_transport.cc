#include "transport/thallium/thallium_transport.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <sys/stat.h>
#include <unistd.h>

#include <thallium/serialization/stl/string.hpp>
#include <thallium/serialization/stl/vector.hpp>

#include "common/backoff.h"
#include "common/tuning.h"
#include "transport/thallium/stale_sm.h"

namespace reverie {
namespace {

// Receive blocks kept exposed (kMaxExposedBlocks) and the reply polling (kReplySpin,
// kBackToBack, kHotReplySpin, ...), each with the measurement that chose it: common/tuning.h.
using namespace tuning::thallium;

// Time left until `deadline`, at least 1 ms: Thallium treats a non-positive timeout as none.
std::chrono::duration<double, std::milli> time_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration<double, std::milli>(deadline - Clock::now());
  return std::max(left, std::chrono::duration<double, std::milli>(1.0));
}

ThalliumTransportOptions validated(ThalliumTransportOptions options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw std::invalid_argument("rank: expected 0 <= rank < world_size, got rank " + std::to_string(options.rank) +
                                " of " + std::to_string(options.world_size));
  if (options.max_rows == 0) throw std::invalid_argument("max_rows: expected at least 1");
  if (options.address.empty()) throw std::invalid_argument("address: expected a protocol such as 'na+sm'");
  return options;
}

// Margo configuration: one progress thread that also runs the handlers (our requests come
// from a plain std::thread and the main thread may block in Python, so Argobots needs its
// own execution stream; more threads cost latency on small nodes). Margo's default "spindown"
// busy-polls the network for a while after each operation: with requests issued from a
// non-Argobots thread, those spinning progress threads starve the requesting threads of CPU
// (4-5 ms per request instead of ~40 us on a 2-core node), and a rank drawing every step
// would spin for good. So the progress thread blocks in the network's wait instead;
// REVERIE_THALLIUM_SPINDOWN_MS restores spinning (in ms) on nodes with cores to spare.
std::string margo_config() {
  long spindown_ms = kDefaultSpindownMs;
  if (const char* v = std::getenv("REVERIE_THALLIUM_SPINDOWN_MS")) spindown_ms = std::max(0L, std::atol(v));
  return "{\"use_progress_thread\": true, \"rpc_thread_count\": -1, \"progress_spindown_msec\": " +
         std::to_string(spindown_ms) + "}";
}

// A leftover na+sm directory of this pid that survived the clean-up below is live: named in
// the error, as the user may have opened a second engine in this process.
std::string stale_sm_hint(const std::string& address) {
  if (address.rfind("na+sm", 0) != 0) return "";
  const std::string path = "/tmp/na_sm-" + std::to_string(getpid()) + "-0";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return " (" + path + " exists and its socket is live: another engine of this process is open)";
}

tl::engine start_engine(const std::string& address) {
  if (address.rfind("na+sm", 0) == 0) {
    for (const auto& path : remove_stale_sm(getpid()))
      std::fprintf(stderr, "reverie: removed %s, left by a dead process that had this pid\n", path.c_str());
  }
  try {
    return tl::engine(address, THALLIUM_SERVER_MODE, margo_config());
  } catch (const std::exception& e) {
    throw std::runtime_error("engine='thallium': cannot start Thallium on address '" + address + "': " + e.what() +
                             stale_sm_hint(address));
  }
}

// Waits for every response still pending, swallowing failures: an unwaited
// async_response waits in its (noexcept) destructor and a timeout there would terminate.
// Polls `pending` until its response is in (or `deadline` passes), sleeping between polls
// unless `hot`. margo_wait() from a thread that is not an Argobots ULT, as our worker is,
// busy-waits: it took ~0.7 ms of CPU per training step (2 ranks on 2 cores) from the
// training threads, and the progress thread that has to answer competed with it.
void await_reply(const tl::async_response& pending, Clock::time_point deadline, bool hot) {
  Backoff backoff(kReplyMaxSleep, hot ? kHotReplySpin : kReplySpin, kReplyMinSleep);
  while (!pending.received() && Clock::now() < deadline) backoff.pause();
}

void settle(std::vector<tl::async_response>& pending) {
  for (auto& p : pending) {
    try {
      p.wait();
    } catch (...) {
    }
  }
  pending.clear();
}

}  // namespace

ThalliumTransport::ThalliumTransport(std::shared_ptr<const LocalBuffer> buffer, ThalliumTransportOptions options)
    : buffer_(std::move(buffer)), options_(validated(std::move(options))), engine_(start_engine(options_.address)) {
  try {
    if (!buffer_) throw std::invalid_argument("buffer: expected a LocalBuffer");
    peer_sizes_.reset(options_.world_size);
    provider_ = std::make_unique<SampleProvider>(
        engine_, buffer_,
        SampleProviderOptions{options_.token, options_.max_rows, options_.world_size, options_.timeout, &foreign_,
                              &peer_sizes_, options_.rank});
    get_samples_ = engine_.define(kGetSamplesRpc);
    closing_ = engine_.define(kClosingRpc);
  } catch (...) {
    shutdown();
    throw;
  }
  const size_t world = static_cast<size_t>(options_.world_size);
  peers_.resize(world);
  foreign_peers_.assign(world, false);
  request_bytes_.assign(world, std::string(wire::request_bytes(options_.max_rows), '\0'));
  offsets_.assign(world, std::vector<uint64_t>(buffer_->layout().num_fields()));
  ids_.reserve(world);
  pending_.reserve(world);
  issued_.reserve(world);
}

ThalliumTransport::~ThalliumTransport() {
  if (!closed_) abandon();
}

std::string ThalliumTransport::self_address() const {
  if (closed_) throw std::runtime_error("thallium transport: closed");
  return static_cast<std::string>(engine_.self());
}

void ThalliumTransport::connect(const std::vector<std::string>& addresses) {
  if (closed_) throw std::runtime_error("thallium transport: connect after close");
  if (addresses.size() != static_cast<size_t>(options_.world_size))
    throw std::invalid_argument("addresses: expected " + std::to_string(options_.world_size) + " addresses, got " +
                                std::to_string(addresses.size()));
  for (int p = 0; p < options_.world_size; ++p) {
    if (p == options_.rank) continue;  // self-requests never go through the transport
    try {
      peers_[p] = tl::provider_handle(engine_.lookup(addresses[p]), kSampleProviderId);
    } catch (const std::exception& e) {
      throw std::runtime_error("engine='thallium': cannot look up rank " + std::to_string(p) + " at '" +
                               addresses[p] + "': " + e.what());
    }
  }
}

void ThalliumTransport::check_peer(int peer) const {
  if (peer < 0 || peer >= options_.world_size || peer == options_.rank)
    throw std::invalid_argument("peer: expected another rank, got " + std::to_string(peer));
  if (!peers_[peer]) throw std::runtime_error("thallium transport: not connected (call connect first)");
}

const ThalliumTransport::ExposedBlock& ThalliumTransport::exposed(const Columns& dest) {
  const SampleLayout& layout = buffer_->layout();
  const size_t fields = layout.num_fields();
  for (const ExposedBlock& b : blocks_)
    if (b.rows == dest.rows && std::equal(b.base.begin(), b.base.begin() + fields, dest.base.begin())) return b;
  if (blocks_.size() == kMaxExposedBlocks) blocks_.erase(blocks_.begin());
  ExposedBlock block;
  block.rows = dest.rows;
  std::vector<std::pair<void*, size_t>> segments;
  uint64_t offset = 0;
  for (size_t f = 0; f < fields; ++f) {
    block.base[f] = dest.base[f];
    block.field_offset.push_back(offset);
    segments.emplace_back(dest.base[f], layout.row_bytes(f) * dest.rows);
    offset += layout.row_bytes(f) * dest.rows;
  }
  block.bulk = engine_.expose(segments, tl::bulk_mode::write_only);
  blocks_.push_back(std::move(block));
  return blocks_.back();
}

void ThalliumTransport::fetch(const std::vector<PeerRequest>& requests, const Columns& dest,
                              Clock::time_point deadline, std::vector<PeerReply>& replies) {
  if (closed_) throw std::runtime_error("thallium transport: fetch after close");
  const SampleLayout& layout = buffer_->layout();
  const size_t fields = layout.num_fields();
  const size_t n = requests.size();
  if (n > static_cast<size_t>(options_.world_size))
    throw std::invalid_argument("thallium transport: more requests than peers");
  for (const PeerRequest& req : requests) {
    check_peer(req.peer);
    if (req.count > options_.max_rows) throw std::invalid_argument("thallium transport: request exceeds max rows");
    if (req.first_row + req.count > dest.rows)
      throw std::invalid_argument("thallium transport: request rows exceed the destination");
  }
  replies.assign(n, PeerReply{});
  const bool back_to_back = Clock::now() - last_fetch_end_ < kBackToBack;
  const ExposedBlock& block = exposed(dest);
  const size_t own = buffer_->size();
  const wire::Sender sender{options_.rank, own, own == buffer_->capacity()};
  ids_.resize(n);
  issued_.assign(n, false);
  pending_.clear();

  for (size_t i = 0; i < n; ++i) {
    const PeerRequest& req = requests[i];
    replies[i].peer = req.peer;
    ids_[i] = next_request_id_++;
    std::string& bytes = request_bytes_[i];
    bytes.resize(wire::request_bytes(req.count));
    wire::encode_request(options_.token, ids_[i], req.slots, req.count, reinterpret_cast<std::byte*>(bytes.data()),
                         sender);
    std::vector<uint64_t>& offsets = offsets_[i];
    for (size_t f = 0; f < fields; ++f) offsets[f] = block.field_offset[f] + req.first_row * layout.row_bytes(f);
    try {
      pending_.push_back(get_samples_->on(*peers_[req.peer]).timed_async(time_left(deadline), bytes, block.bulk, offsets));
      issued_[i] = true;
    } catch (const std::exception& e) {
      pending_.emplace_back();  // keeps pending_[i] aligned with requests[i]
      replies[i].status = wire::Status::kTimeout;  // could not even be sent: the peer is gone
    }
  }

  for (size_t i = 0; i < n; ++i) {
    if (!issued_[i]) continue;
    const PeerRequest& req = requests[i];
    std::string msg;
    try {
      await_reply(pending_[i], deadline, back_to_back);
      msg = pending_[i].wait().as<std::string>();
    } catch (const std::exception& e) {  // tl::timeout, or a margo_exception from a dead peer
      replies[i].status = wire::Status::kTimeout;
      continue;
    }
    wire::Reply reply{};
    std::memcpy(&reply, msg.data(), std::min(msg.size(), sizeof reply));
    const bool ok = reply.status == static_cast<uint16_t>(wire::Status::kOk);
    const size_t expected = sizeof reply + (ok ? req.count * (sizeof(int64_t) + sizeof(float)) : 0);
    if (msg.size() != expected || !wire::reply_valid(reply, ids_[i], req.count)) {
      replies[i].status = wire::Status::kMalformed;
      continue;
    }
    replies[i].status = static_cast<wire::Status>(reply.status);
    if (replies[i].status == wire::Status::kBadToken) foreign_peers_[req.peer] = true;
    replies[i].owner_size = reply.owner_size;
    replies[i].owner_full = (reply.flags & wire::kFlagFull) != 0;
    if (ok && req.count > 0) {
      const std::byte* labels = reinterpret_cast<const std::byte*>(msg.data()) + sizeof reply;
      std::memcpy(dest.at(layout, layout.label_column(), req.first_row), labels, req.count * sizeof(int64_t));
      std::memcpy(dest.at(layout, layout.weight_column(), req.first_row), labels + req.count * sizeof(int64_t),
                  req.count * sizeof(float));
    }
  }
  pending_.clear();
  last_fetch_end_ = Clock::now();
}

std::optional<ThalliumTransport::RawReply> ThalliumTransport::send_raw_request(int peer, const std::string& bytes,
                                                                               Clock::time_point deadline) {
  if (closed_) throw std::runtime_error("thallium transport: send_raw_request after close");
  check_peer(peer);
  const SampleLayout& layout = buffer_->layout();
  if (!raw_block_) raw_block_ = std::make_unique<StagingBlock>(layout, options_.max_rows);
  const ExposedBlock& block = exposed(raw_block_->columns());
  std::vector<uint64_t> offsets(block.field_offset);
  std::vector<tl::async_response> pending;
  RawReply out;
  try {
    pending.push_back(get_samples_->on(*peers_[peer]).timed_async(time_left(deadline), bytes, block.bulk, offsets));
    const std::string msg = pending.back().wait().as<std::string>();
    pending.clear();
    out.reply_bytes = msg.size();
    std::memcpy(&out.reply, msg.data(), std::min(msg.size(), sizeof out.reply));
  } catch (const std::exception&) {
    settle(pending);
    return std::nullopt;
  }
  return out;
}

bool ThalliumTransport::close(Clock::time_point deadline) {
  if (closed_) return true;
  closed_ = true;
  bool all_closed = true;
  const bool connected = std::any_of(peers_.begin(), peers_.end(), [](const auto& p) { return p.has_value(); });
  if (options_.world_size > 1 && !connected) {
    all_closed = false;  // never connected: no barrier possible
  } else if (options_.world_size > 1) {
    // 1. Tell every peer that this rank sends no more requests.
    std::string notice(wire::request_bytes(0), '\0');
    wire::encode_request(options_.token, 0, nullptr, 0, reinterpret_cast<std::byte*>(notice.data()));
    std::vector<tl::async_response> notices;
    std::vector<bool> awaited(static_cast<size_t>(options_.world_size), false);
    for (int p = 0; p < options_.world_size; ++p) {
      // A peer that answered with another job's token rejects this notice and its own.
      awaited[p] = p != options_.rank && !foreign_peers_[p];
      if (!awaited[p] || !peers_[p]) continue;
      try {
        notices.push_back(closing_->on(*peers_[p]).timed_async(time_left(deadline), notice, int32_t{options_.rank}));
      } catch (const std::exception&) {
        all_closed = false;
      }
    }
    // 2. Keep serving until every peer said the same (their draws are then over).
    all_closed = provider_->wait_all_closing(awaited, deadline) && all_closed;
    // 3. Every notice answered (bounded by its timer).
    for (auto& notice_reply : notices) {
      try {
        if (notice_reply.wait().as<uint16_t>() != static_cast<uint16_t>(wire::Status::kOk)) all_closed = false;
      } catch (const std::exception&) {
        all_closed = false;
      }
    }
  }
  shutdown();
  return all_closed;
}

void ThalliumTransport::abandon() {
  closed_ = true;
  shutdown();
}

void ThalliumTransport::shutdown() {
  if (finalized_) return;
  finalized_ = true;
  // Order matters (a provider destroyed before finalize crashed Margo in trials):
  // client objects first, then refuse and drain requests, finalize, destroy the provider.
  settle(pending_);
  blocks_.clear();
  raw_block_.reset();
  peers_.clear();
  get_samples_.reset();
  closing_.reset();
  if (provider_) provider_->drain();
  try {
    engine_.finalize_and_wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reverie: thallium transport: finalize failed: %s\n", e.what());
  }
  if (provider_) served_at_shutdown_ = provider_->requests_served();
  provider_.reset();
  // The last reference to the Margo instance: frees Mercury and joins the progress thread
  // now rather than whenever Python drops this object.
  engine_ = tl::engine();
}

}  // namespace reverie
