#include "transport/thallium/sample_provider.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <utility>

#include <thallium/serialization/stl/string.hpp>
#include <thallium/serialization/stl/vector.hpp>

namespace reverie {

SampleProvider::SampleProvider(const tl::engine& engine, std::shared_ptr<const LocalBuffer> buffer,
                               SampleProviderOptions options)
    : tl::provider<SampleProvider>(engine, kSampleProviderId, "reverie_samples"),
      buffer_(std::move(buffer)),
      options_(options),
      closing_(static_cast<size_t>(options.world_size), false) {
  get_samples_rpc_ = define(kGetSamplesRpc, &SampleProvider::get_samples);
  closing_rpc_ = define(kClosingRpc, &SampleProvider::closing);
}

SampleProvider::~SampleProvider() {
  // A remote_procedure does not deregister itself, and the handlers capture `this`.
  try {
    get_samples_rpc_.deregister();
    closing_rpc_.deregister();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reverie: thallium provider: deregistering its RPCs failed: %s\n", e.what());
  }
}

bool SampleProvider::enter() {
  std::lock_guard lock(mu_);
  if (draining_) return false;
  ++in_flight_;
  return true;
}

void SampleProvider::leave() {
  std::lock_guard lock(mu_);
  if (--in_flight_ == 0) cv_.notify_all();
}

void SampleProvider::drain() {
  std::unique_lock lock(mu_);
  draining_ = true;
  cv_.wait(lock, [&] { return in_flight_ == 0; });
}

bool SampleProvider::wait_all_closing(const std::vector<bool>& awaited,
                                      std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] {
    for (size_t p = 0; p < awaited.size() && p < closing_.size(); ++p)
      if (awaited[p] && !closing_[p]) return false;
    return true;
  });
}

void SampleProvider::closing(const tl::request& req, const std::string& request, int32_t rank) {
  const auto decoded = wire::decode_request(reinterpret_cast<const std::byte*>(request.data()), request.size(),
                                            options_.token, 0, 0);
  wire::Status status = decoded.status;
  if (status == wire::Status::kOk && (rank < 0 || rank >= options_.world_size)) status = wire::Status::kMalformed;
  if (status == wire::Status::kOk) {
    std::lock_guard lock(mu_);
    if (!closing_[rank]) {
      closing_[rank] = true;
      cv_.notify_all();
    }
  }
  try {
    req.respond(static_cast<uint16_t>(status));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reverie: thallium provider: answering a closing notice failed: %s\n", e.what());
  }
}

bool SampleProvider::push_rows(const tl::request& req, const Columns& arena, const uint32_t* slots, uint32_t count,
                               tl::bulk& dest, const std::vector<uint64_t>& offsets) {
  const SampleLayout& layout = buffer_->layout();
  const size_t fields = layout.num_fields();
  if (offsets.size() != fields) return false;
  const size_t dest_size = dest.size();
  for (size_t f = 0; f < fields; ++f) {
    const size_t n = count * layout.row_bytes(f);
    if (offsets[f] > dest_size || n > dest_size - offsets[f]) return false;
  }
  // One local bulk over the requested rows, field by field (rows adjacent in the arena
  // merge into one segment), so each field travels as one transfer.
  std::vector<std::pair<void*, size_t>> segments;
  segments.reserve(count * fields);
  for (size_t f = 0; f < fields; ++f) {
    const size_t rb = layout.row_bytes(f);
    for (uint32_t i = 0; i < count; ++i) {
      std::byte* row = arena.at(layout, f, slots[i]);
      if (!segments.empty() && static_cast<std::byte*>(segments.back().first) + segments.back().second == row) {
        segments.back().second += rb;
      } else {
        segments.emplace_back(row, rb);
      }
    }
  }
  tl::bulk local = get_engine().expose(segments, tl::bulk_mode::read_only);
  const tl::endpoint requester = req.get_endpoint();
  std::vector<tl::async_bulk_op> ops;
  ops.reserve(fields);
  std::exception_ptr failure;
  size_t local_offset = 0;
  for (size_t f = 0; f < fields; ++f) {
    const size_t n = count * layout.row_bytes(f);
    try {
      ops.push_back(dest.on(requester)
                        .select(offsets[f], n)
                        .timed(options_.push_timeout)
                        .push_from(local.select(local_offset, n)));
    } catch (...) {
      failure = std::current_exception();
      break;
    }
    local_offset += n;
  }
  // Every started transfer is waited for here: an unwaited async_bulk_op waits (and may
  // throw) in its destructor.
  for (auto& op : ops) {
    try {
      op.wait();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return true;
}

void SampleProvider::get_samples(const tl::request& req, const std::string& request, tl::bulk& dest,
                                 const std::vector<uint64_t>& offsets) {
  const SampleLayout& layout = buffer_->layout();
  const bool admitted = enter();
  std::string reply;
  buffer_->read([&](const Columns& arena, size_t size) {
    const auto decoded = wire::decode_request(reinterpret_cast<const std::byte*>(request.data()), request.size(),
                                              options_.token, options_.max_rows, size);
    wire::Status status = decoded.status;
    if (status == wire::Status::kBadToken && options_.foreign != nullptr) options_.foreign->record(-1);
    const wire::Sender& from = decoded.sender;
    if (decoded.has_id && status != wire::Status::kBadToken && status != wire::Status::kMalformed &&
        options_.sizes != nullptr && from.rank != options_.rank)
      options_.sizes->heard(from.rank, from.size, from.full);
    if (decoded.has_id && !admitted) status = wire::Status::kClosing;
    uint32_t rows = 0;
    if (status == wire::Status::kOk && decoded.count > 0) {
      try {
        if (push_rows(req, arena, decoded.slots, decoded.count, dest, offsets)) {
          rows = decoded.count;
        } else {
          status = wire::Status::kMalformed;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "reverie: thallium provider: pushing %u rows failed: %s\n", decoded.count, e.what());
        status = wire::Status::kTimeout;
      }
    }
    const wire::Reply header = wire::make_reply(status, decoded.request_id, size, rows, size == buffer_->capacity());
    reply.resize(sizeof header + rows * (sizeof(int64_t) + sizeof(float)));
    std::byte* out = reinterpret_cast<std::byte*>(reply.data());
    std::memcpy(out, &header, sizeof header);
    std::byte* labels = out + sizeof header;
    std::byte* weights = labels + rows * sizeof(int64_t);
    for (uint32_t i = 0; i < rows; ++i) {
      std::memcpy(labels + i * sizeof(int64_t), arena.at(layout, layout.label_column(), decoded.slots[i]),
                  sizeof(int64_t));
      std::memcpy(weights + i * sizeof(float), arena.at(layout, layout.weight_column(), decoded.slots[i]),
                  sizeof(float));
    }
  });
  served_.fetch_add(1, std::memory_order_relaxed);
  try {
    req.respond(reply);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reverie: thallium provider: reply failed: %s\n", e.what());
  }
  if (admitted) leave();
}

}  // namespace reverie
