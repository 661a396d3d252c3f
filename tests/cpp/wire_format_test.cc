// Wire format: a request round-trips, and every malformed, foreign or hostile request or
// reply is rejected without reading past the received bytes.
#include "transport/wire_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

namespace reverie::wire {
namespace {

constexpr uint64_t kToken = 0xfeedface12345678ULL;

// Heap buffer of exactly `len` bytes, so ASan catches any read past the end.
struct Message {
  explicit Message(size_t len) : bytes(new std::byte[len == 0 ? 1 : len]), len(len) {}
  std::unique_ptr<std::byte[]> bytes;
  size_t len;
  std::byte* data() { return bytes.get(); }
};

Message encode(uint64_t token, uint64_t id, const std::vector<uint32_t>& slots) {
  Message m(request_bytes(static_cast<uint32_t>(slots.size())));
  EXPECT_EQ(encode_request(token, id, slots.data(), static_cast<uint32_t>(slots.size()), m.data()), m.len);
  return m;
}

RequestHeader header_of(const Message& m) {
  RequestHeader h;
  std::memcpy(&h, m.bytes.get(), sizeof h);
  return h;
}

void set_header(Message& m, const RequestHeader& h) { std::memcpy(m.data(), &h, sizeof h); }

TEST(WireFormatTest, LayoutIsFixed) {
  EXPECT_EQ(sizeof(RequestHeader), 40u);
  EXPECT_EQ(sizeof(Reply), 32u);
  EXPECT_EQ(request_bytes(0), 40u);
  EXPECT_EQ(request_bytes(3), 52u);
}

TEST(WireFormatTest, RequestCarriesItsSendersSize) {
  const std::vector<uint32_t> slots = {1};
  Message m(request_bytes(1));
  encode_request(kToken, 3, slots.data(), 1, m.data(), Sender{5, 1234, true});
  DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
  ASSERT_EQ(d.status, Status::kOk);
  EXPECT_EQ(d.sender.rank, 5);
  EXPECT_EQ(d.sender.size, 1234u);
  EXPECT_TRUE(d.sender.full);
  EXPECT_FALSE(d.sender.back_to_back);
  encode_request(kToken, 3, slots.data(), 1, m.data(), Sender{5, 1234, false, true});
  d = decode_request(m.data(), m.len, kToken, 16, 10);
  EXPECT_TRUE(d.sender.back_to_back);
  EXPECT_FALSE(d.sender.full);
  encode_request(kToken, 3, slots.data(), 1, m.data(), Sender{5, 1234, true});
  // Read even when the slots are rejected: the request is of this job.
  d = decode_request(m.data(), m.len, kToken, 16, 1);
  EXPECT_EQ(d.status, Status::kBadSlot);
  EXPECT_EQ(d.sender.size, 1234u);
  // Not from a request of another job.
  d = decode_request(m.data(), m.len, kToken + 1, 16, 10);
  EXPECT_EQ(d.status, Status::kBadToken);
  EXPECT_EQ(d.sender.rank, -1);
  // The default says nothing.
  Message anon = encode(kToken, 4, {});
  d = decode_request(anon.data(), anon.len, kToken, 16, 10);
  EXPECT_EQ(d.sender.rank, -1);
  EXPECT_FALSE(d.sender.full);
}

TEST(WireFormatTest, RequestRoundTrip) {
  const std::vector<uint32_t> slots = {5, 0, 9, 3};
  Message m = encode(kToken, 42, slots);
  const DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
  ASSERT_EQ(d.status, Status::kOk);
  EXPECT_TRUE(d.has_id);
  EXPECT_EQ(d.request_id, 42u);
  ASSERT_EQ(d.count, 4u);
  for (uint32_t i = 0; i < d.count; ++i) {
    uint32_t s;
    std::memcpy(&s, d.slots + i, sizeof s);
    EXPECT_EQ(s, slots[i]);
  }
}

TEST(WireFormatTest, SizeOnlyRequestRoundTrip) {
  Message m = encode(kToken, 7, {});
  const DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 0);
  EXPECT_EQ(d.status, Status::kOk);
  EXPECT_EQ(d.count, 0u);
  EXPECT_EQ(d.request_id, 7u);
}

TEST(WireFormatTest, RejectsTruncated) {
  Message full = encode(kToken, 1, {1, 2, 3});
  for (size_t len = 0; len < full.len; ++len) {
    Message m(len);
    std::memcpy(m.data(), full.data(), len);
    const DecodedRequest d = decode_request(m.data(), len, kToken, 16, 10);
    EXPECT_EQ(d.status, Status::kMalformed) << "length " << len;
    EXPECT_EQ(d.slots, nullptr);
  }
  EXPECT_EQ(decode_request(nullptr, 100, kToken, 16, 10).status, Status::kMalformed);
}

TEST(WireFormatTest, RejectsOversized) {
  Message full = encode(kToken, 1, {1, 2, 3});
  Message m(full.len + 4);
  std::memcpy(m.data(), full.data(), full.len);
  std::memset(m.data() + full.len, 0, 4);
  EXPECT_EQ(decode_request(m.data(), m.len, kToken, 16, 10).status, Status::kMalformed);
}

TEST(WireFormatTest, RejectsWrongMagicAndVersion) {
  Message m = encode(kToken, 1, {1});
  RequestHeader h = header_of(m);
  h.magic = kReplyMagic;  // a reply is not a request
  set_header(m, h);
  DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
  EXPECT_EQ(d.status, Status::kMalformed);
  EXPECT_FALSE(d.has_id);

  h = header_of(encode(kToken, 1, {1}));
  h.version = kVersion + 1;
  set_header(m, h);
  d = decode_request(m.data(), m.len, kToken, 16, 10);
  EXPECT_EQ(d.status, Status::kMalformed);
  EXPECT_FALSE(d.has_id);
}

TEST(WireFormatTest, RejectsWrongToken) {
  Message m = encode(kToken + 1, 5, {1});
  const DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
  EXPECT_EQ(d.status, Status::kBadToken);
  EXPECT_TRUE(d.has_id);  // the id is echoed so the sender can match the error
  EXPECT_EQ(d.request_id, 5u);
  EXPECT_EQ(d.slots, nullptr);
}

TEST(WireFormatTest, RejectsBadSlot) {
  Message m = encode(kToken, 1, {0, 9, 10});
  const DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
  EXPECT_EQ(d.status, Status::kBadSlot);
  EXPECT_EQ(d.slots, nullptr);
  EXPECT_EQ(decode_request(m.data(), m.len, kToken, 16, 11).status, Status::kOk);
  Message one = encode(kToken, 1, {0});
  EXPECT_EQ(decode_request(one.data(), one.len, kToken, 16, 0).status, Status::kBadSlot);  // empty owner
  Message huge = encode(kToken, 1, {0xffffffffu});
  EXPECT_EQ(decode_request(huge.data(), huge.len, kToken, 16, 10).status, Status::kBadSlot);
}

TEST(WireFormatTest, RejectsTooManySlots) {
  Message m = encode(kToken, 1, std::vector<uint32_t>(17, 0));
  EXPECT_EQ(decode_request(m.data(), m.len, kToken, 16, 10).status, Status::kTooMany);
  EXPECT_EQ(decode_request(m.data(), m.len, kToken, 17, 10).status, Status::kOk);

  // A header claiming ~4 billion slots in a 40-byte message: rejected, nothing read past it.
  Message lie = encode(kToken, 1, {});
  RequestHeader h = header_of(lie);
  h.count = 0xffffffffu;
  set_header(lie, h);
  const Status s = decode_request(lie.data(), lie.len, kToken, 16, 10).status;
  EXPECT_NE(s, Status::kOk);
  h.count = 8;  // within max_count, but the bytes are missing
  set_header(lie, h);
  EXPECT_EQ(decode_request(lie.data(), lie.len, kToken, 16, 10).status, Status::kMalformed);
}

TEST(WireFormatTest, GarbageNeverDecodesOk) {
  std::mt19937_64 gen(1234);
  for (int t = 0; t < 2000; ++t) {
    Message m(gen() % 96);
    for (size_t i = 0; i < m.len; ++i) m.data()[i] = std::byte(gen() & 0xff);
    EXPECT_NE(decode_request(m.data(), m.len, kToken, 16, 10).status, Status::kOk) << "trial " << t;
  }
  // Valid header, garbage slots: either OK with every slot in range, or rejected.
  for (int t = 0; t < 2000; ++t) {
    std::vector<uint32_t> slots(1 + gen() % 8);
    for (auto& s : slots) s = static_cast<uint32_t>(gen() % 16);
    Message m = encode(kToken, t, slots);
    const DecodedRequest d = decode_request(m.data(), m.len, kToken, 16, 10);
    bool in_range = true;
    for (uint32_t s : slots) in_range = in_range && s < 10;
    EXPECT_EQ(d.status, in_range ? Status::kOk : Status::kBadSlot);
  }
}

TEST(WireFormatTest, ReplyValidation) {
  const Reply ok = make_reply(Status::kOk, 9, 100, 4);
  EXPECT_EQ(ok.magic, kReplyMagic);
  EXPECT_EQ(ok.version, kVersion);
  EXPECT_EQ(ok.owner_size, 100u);
  EXPECT_TRUE(reply_valid(ok, 9, 4));
  EXPECT_FALSE(reply_valid(ok, 8, 4));  // someone else's reply
  EXPECT_FALSE(reply_valid(ok, 9, 3));  // claims more rows than asked
  EXPECT_FALSE(reply_valid(ok, 9, 5));  // fewer rows than asked

  Reply bad = ok;
  bad.magic = kRequestMagic;
  EXPECT_FALSE(reply_valid(bad, 9, 4));
  bad = ok;
  bad.version = kVersion + 1;
  EXPECT_FALSE(reply_valid(bad, 9, 4));

  EXPECT_EQ(ok.flags, 0u);
  EXPECT_EQ(make_reply(Status::kOk, 9, 100, 4, true).flags, kFlagFull);

  EXPECT_TRUE(reply_valid(make_reply(Status::kBadSlot, 9, 3, 0), 9, 4));
  EXPECT_FALSE(reply_valid(make_reply(Status::kBadSlot, 9, 3, 4), 9, 4));  // an error carries no rows
}

TEST(WireFormatTest, StatusNames) {
  for (Status s : {Status::kOk, Status::kMalformed, Status::kBadToken, Status::kBadSlot, Status::kTooMany,
                   Status::kClosing, Status::kTimeout, Status::kUnreachable})
    EXPECT_STRNE(to_string(s), "unknown status");
  EXPECT_STREQ(to_string(static_cast<Status>(77)), "unknown status");
}

}  // namespace
}  // namespace reverie::wire
