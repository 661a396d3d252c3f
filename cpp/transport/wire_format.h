#pragma once
// Versioned wire format of a draw request and its reply, shared by every engine.
// A request names the slots wanted from its owner and says how many samples the requester
// holds; the reply says whether the slots follow and how many samples the owner holds. Both
// sizes feed the peers' draw plans (transport/peer_sizes.h): every message between two ranks
// refreshes what each knows of the other. A count-0 request only asks for the owner's size.
// Decoding validates everything before any buffer memory is touched.
#include <cstddef>
#include <cstdint>
#include <string>

namespace reverie::wire {

inline constexpr uint32_t kRequestMagic = 0x51525652;  // "RVRQ"
inline constexpr uint32_t kReplyMagic = 0x50525652;    // "RVRP"
inline constexpr uint16_t kVersion = 2;  // 2: the requester's rank and size in the request

// flags of RequestHeader (the sender's buffer) and Reply (the owner's): the buffer is at its
// capacity. Buffers never shrink, so a full buffer's size is final.
inline constexpr uint16_t kFlagFull = 1;
// Request flag: the sender draws back to back (its previous draw ended moments before this
// request), so the owner's server stays awake for its next request. An owner cannot tell on
// its own when its server slept before noticing the request.
inline constexpr uint16_t kFlagBackToBack = 2;

enum class Status : uint16_t {
  kOk = 0,
  kMalformed = 1,    // wrong magic, version, length or count
  kBadToken = 2,     // not from this job
  kBadSlot = 3,      // names a slot the owner does not hold
  kTooMany = 4,      // more slots than the owner serves in one reply
  kClosing = 5,      // the owner is shutting down
  kTimeout = 100,    // local only: no reply before the deadline
  kUnreachable = 101 // local only: the peer is excluded after an earlier failure
};

const char* to_string(Status s);

#pragma pack(push, 1)
struct RequestHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t flags;
  uint64_t token;
  uint64_t request_id;
  uint32_t count;     // slots that follow, each a uint32
  int32_t sender_rank;   // -1: not said
  uint64_t sender_size;  // samples the sender's buffer holds
};

struct Reply {
  uint32_t magic;
  uint16_t version;
  uint16_t status;
  uint64_t request_id;
  uint64_t owner_size;
  uint32_t count;     // rows in the payload that follows
  uint16_t flags;
  uint16_t reserved;
};
#pragma pack(pop)

inline constexpr size_t request_bytes(uint32_t count) { return sizeof(RequestHeader) + count * sizeof(uint32_t); }

// What a request says about its sender's buffer.
struct Sender {
  int32_t rank = -1;
  uint64_t size = 0;
  bool full = false;
  bool back_to_back = false;  // kFlagBackToBack
};

// Writes a request into `out` (at least request_bytes(count)); returns its length.
size_t encode_request(uint64_t token, uint64_t request_id, const uint32_t* slots, uint32_t count, std::byte* out,
                      const Sender& sender = {});

struct DecodedRequest {
  Status status = Status::kMalformed;
  uint64_t request_id = 0;     // valid when the header could be read
  bool has_id = false;
  const uint32_t* slots = nullptr;
  uint32_t count = 0;
  Sender sender;  // valid unless the status is kMalformed or kBadToken
};

// Validates a received request against this owner: token, length, count <= max_count,
// every slot < owner_size. Never reads past `len` bytes.
DecodedRequest decode_request(const std::byte* data, size_t len, uint64_t token, uint32_t max_count,
                              uint64_t owner_size);

Reply make_reply(Status status, uint64_t request_id, uint64_t owner_size, uint32_t count, bool owner_full = false);

// Kept separate so a reply from a confused or hostile peer cannot claim more rows than asked.
bool reply_valid(const Reply& reply, uint64_t request_id, uint32_t asked);

}  // namespace reverie::wire
