#include "transport/wire_format.h"

#include <cstring>

namespace reverie::wire {

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kMalformed: return "malformed request";
    case Status::kBadToken: return "wrong job token";
    case Status::kBadSlot: return "slot out of range";
    case Status::kTooMany: return "too many slots";
    case Status::kClosing: return "owner closing";
    case Status::kTimeout: return "timed out";
    case Status::kUnreachable: return "peer excluded";
  }
  return "unknown status";
}

size_t encode_request(uint64_t token, uint64_t request_id, const uint32_t* slots, uint32_t count, std::byte* out,
                      const Sender& sender) {
  const auto flags = static_cast<uint16_t>((sender.full ? kFlagFull : 0) | (sender.back_to_back ? kFlagBackToBack : 0));
  RequestHeader h{kRequestMagic, kVersion, flags, token, request_id, count, sender.rank, sender.size};
  std::memcpy(out, &h, sizeof h);
  if (count > 0) std::memcpy(out + sizeof h, slots, count * sizeof(uint32_t));
  return request_bytes(count);
}

DecodedRequest decode_request(const std::byte* data, size_t len, uint64_t token, uint32_t max_count,
                              uint64_t owner_size) {
  DecodedRequest out;
  if (data == nullptr || len < sizeof(RequestHeader)) return out;
  RequestHeader h;
  std::memcpy(&h, data, sizeof h);
  if (h.magic != kRequestMagic || h.version != kVersion) return out;
  out.request_id = h.request_id;
  out.has_id = true;
  if (h.token != token) {
    out.status = Status::kBadToken;
    return out;
  }
  out.sender = Sender{h.sender_rank, h.sender_size, (h.flags & kFlagFull) != 0, (h.flags & kFlagBackToBack) != 0};
  if (h.count > max_count) {
    out.status = Status::kTooMany;
    return out;
  }
  if (len != request_bytes(h.count)) return out;
  // Slots follow a 40-byte header, so they are 4-byte aligned in any aligned receive buffer.
  const auto* slots = reinterpret_cast<const uint32_t*>(data + sizeof h);
  for (uint32_t i = 0; i < h.count; ++i) {
    uint32_t s;
    std::memcpy(&s, slots + i, sizeof s);
    if (s >= owner_size) {
      out.status = Status::kBadSlot;
      return out;
    }
  }
  out.status = Status::kOk;
  out.slots = slots;
  out.count = h.count;
  return out;
}

Reply make_reply(Status status, uint64_t request_id, uint64_t owner_size, uint32_t count, bool owner_full) {
  const uint16_t flags = owner_full ? kFlagFull : 0;
  return Reply{kReplyMagic, kVersion, static_cast<uint16_t>(status), request_id, owner_size, count, flags, 0};
}

bool reply_valid(const Reply& reply, uint64_t request_id, uint32_t asked) {
  if (reply.magic != kReplyMagic || reply.version != kVersion || reply.request_id != request_id) return false;
  if (reply.status == static_cast<uint16_t>(Status::kOk)) return reply.count == asked;
  return reply.count == 0;
}

}  // namespace reverie::wire
