// libFuzzer target: the request decoder must never read outside the message, never accept
// a request whose slots are out of range, and never crash, whatever bytes arrive.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "transport/wire_format.h"

namespace {

constexpr uint64_t kToken = 0x1234abcdULL;
constexpr uint32_t kMaxCount = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy so ASan flags any read past the message.
  std::vector<std::byte> message(size);
  if (size > 0) std::memcpy(message.data(), data, size);
  const uint64_t owner_size = size > 0 ? data[0] : 0;
  const auto req = reverie::wire::decode_request(message.data(), size, kToken, kMaxCount, owner_size);
  if (req.status != reverie::wire::Status::kOk) return 0;
  if (req.count > kMaxCount || size != reverie::wire::request_bytes(req.count)) std::abort();
  for (uint32_t i = 0; i < req.count; ++i) {
    uint32_t slot;
    std::memcpy(&slot, req.slots + i, sizeof slot);
    if (slot >= owner_size) std::abort();
  }
  return 0;
}
