// The draw protocol over many ranks: a draw messages only the owners its plan takes rows
// from, learns every peer's size before its first plan, and keeps sizes fresh from what
// requests and replies carry, with a size query only for a growing peer not heard from this
// draw or a settled one heard nothing from for size_refresh draws (never for a full one).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

#include "engine/rehearsal_engine.h"

namespace reverie {
namespace {

using std::chrono::milliseconds;

const SampleLayout kLayout({sizeof(int64_t)});

// Rank 0 of `sizes.size()` ranks; peer p holds sizes[p] samples (full when full[p]) and
// answers every request at once. Records each draw's requests.
class FleetTransport : public Transport {
 public:
  FleetTransport(std::vector<uint64_t> sizes, std::vector<bool> full) : sizes_(std::move(sizes)), full_(std::move(full)) {
    peer_sizes_.reset(world_size());
  }
  int rank() const override { return 0; }
  int world_size() const override { return static_cast<int>(sizes_.size()); }
  const char* name() const override { return "fleet-stub"; }
  void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point,
             std::vector<PeerReply>& replies) override {
    std::lock_guard lock(mu_);
    fetches.emplace_back();
    for (const PeerRequest& r : requests) {
      fetches.back().push_back(r);
      for (uint32_t i = 0; i < r.count; ++i) {
        const int64_t id = -1 - r.slots[i], label = 0;
        std::memcpy(dest.at(kLayout, 0, r.first_row + i), &id, sizeof id);
        std::memcpy(dest.at(kLayout, kLayout.label_column(), r.first_row + i), &label, sizeof label);
      }
      replies.push_back(PeerReply{r.peer, wire::Status::kOk, sizes_[r.peer], full_[r.peer]});
    }
  }
  bool close(Clock::time_point) override { return true; }
  void abandon() override {}

  // What this rank's server does with a peer's request: records the size it carries.
  void hear(int peer, uint64_t size) { peer_sizes_.heard(peer, size, full_[peer]); }
  void set_size(int peer, uint64_t size) { sizes_[peer] = size; }

  std::vector<std::vector<PeerRequest>> fetches;  // one per fetch() call

 private:
  std::mutex mu_;
  std::vector<uint64_t> sizes_;
  std::vector<bool> full_;
};

struct Fleet {
  Fleet(std::vector<uint64_t> sizes, std::vector<bool> full, uint32_t refresh = 8)
      : buffer(std::make_shared<LocalBuffer>(kLayout, BufferOptions{40, std::nullopt, 0, 1})),
        transport(std::make_shared<FleetTransport>(std::move(sizes), std::move(full))),
        engine(buffer, transport, options(refresh)) {
    std::vector<int64_t> values(40), labels(40, 0);
    for (int i = 0; i < 40; ++i) values[i] = i;
    ConstColumns in;
    in.base[0] = reinterpret_cast<const std::byte*>(values.data());
    in.base[1] = reinterpret_cast<const std::byte*>(labels.data());
    in.rows = 40;
    engine.add(in);
    EXPECT_TRUE(engine.flush(milliseconds(5000)));
  }
  static EngineOptions options(uint32_t refresh) {
    EngineOptions o;
    o.max_representatives = 16;
    o.seed = 5;
    o.size_refresh = refresh;
    return o;
  }
  size_t draw(uint32_t r) {
    const uint64_t t = engine.request(r);
    EXPECT_TRUE(engine.wait(t, milliseconds(5000)));
    return engine.rows(t);
  }
  std::shared_ptr<LocalBuffer> buffer;  // rank 0: 40 samples, full
  std::shared_ptr<FleetTransport> transport;
  RehearsalEngine engine;
};

// Peers 1..7: partly filled, empty, full, full, tiny, partly filled, full.
const std::vector<uint64_t> kSizes = {0, 50, 0, 100, 100, 5, 70, 100};
const std::vector<bool> kFull = {false, false, false, true, true, false, false, true};

TEST(DrawProtocolTest, TheFirstDrawAsksEveryPeerItsSizeBeforePlanning) {
  Fleet fleet(kSizes, kFull);
  ASSERT_EQ(fleet.draw(8), 8u);
  ASSERT_GE(fleet.transport->fetches.size(), 1u);
  const auto& first = fleet.transport->fetches[0];
  ASSERT_EQ(first.size(), 7u);
  for (const PeerRequest& r : first) EXPECT_EQ(r.count, 0u) << "peer " << r.peer;
  std::vector<uint64_t> expected = kSizes;
  expected[0] = 40;
  EXPECT_EQ(fleet.engine.known_sizes(), expected);
  EXPECT_EQ(fleet.engine.stats().size_messages, 7u);
}

TEST(DrawProtocolTest, DrawsMessageOnlyTheOwnersTheyTakeRowsFrom) {
  Fleet fleet(kSizes, kFull);
  const int draws = 400;
  std::vector<int> last_contact(8, 0);  // draw index of the last request to the peer
  for (int d = 1; d <= draws; ++d) {
    const size_t before = fleet.transport->fetches.size();
    ASSERT_EQ(fleet.draw(2), 2u);
    const auto& mine = fleet.transport->fetches.back();
    if (fleet.transport->fetches.size() == before) continue;  // both rows local: no message
    int data = 0;
    for (const PeerRequest& r : mine) {
      if (r.count > 0) {
        ++data;
      } else if (d > 1) {
        EXPECT_FALSE(kFull[r.peer]) << "draw " << d << ": a full peer's size is final";
        if (d > 2) {  // the second draw confirms the sizes the first one heard
          EXPECT_GE(d - last_contact[r.peer], 8) << "draw " << d << ": peer " << r.peer << " was heard recently";
        }
      }
      last_contact[r.peer] = d;
    }
    EXPECT_LE(data, 2) << "draw " << d;
  }
  for (int p = 1; p < 8; ++p) {
    if (!kFull[p]) {
      EXPECT_GE(last_contact[p], draws - 8) << "peer " << p << " not refreshed";
    }
  }
  const EngineStats s = fleet.engine.stats();
  EXPECT_LE(s.requests_sent, 2u * draws);
  EXPECT_GT(s.requests_sent, draws);  // 220 of 440 samples are remote: most draws send some
  // The empty peer is asked every 8th draw at most; the partly filled ones less (their rows
  // are drawn); the full ones never after the first draw.
  EXPECT_LE(s.size_messages, 7u + 4u + 4u * draws / 8);
  EXPECT_EQ(s.failed_requests, 0u);
}

TEST(DrawProtocolTest, SizesHeardFromPeersRequestsReplaceSizeQueries) {
  Fleet fleet(kSizes, kFull);
  fleet.draw(2);
  const uint64_t queries = fleet.engine.stats().size_messages;
  fleet.transport->set_size(2, 30);  // the empty peer fills a little, and says so in its requests
  for (int d = 0; d < 40; ++d) {
    fleet.transport->hear(2, 30);
    fleet.transport->hear(5, 5);
    fleet.draw(2);
    EXPECT_EQ(fleet.engine.known_sizes()[2], 30u);
  }
  const auto& fetches = fleet.transport->fetches;
  for (size_t i = 1; i < fetches.size(); ++i) {
    for (const PeerRequest& r : fetches[i]) {
      EXPECT_FALSE(r.count == 0 && (r.peer == 2 || r.peer == 5)) << "fetch " << i << ": peer " << r.peer;
    }
  }
  // Only the partly filled peers 1 and 6 may need a query, when no draw took their rows:
  // once to confirm their first size, then every 8 draws.
  EXPECT_LE(fleet.engine.stats().size_messages - queries, 2u + 2u * 40 / 8);
}

TEST(DrawProtocolTest, AStaleSizeIsRefreshedWithinSizeRefreshDraws) {
  Fleet fleet({0, 0}, {false, false}, /*refresh=*/4);
  fleet.draw(4);  // learns the peer is empty
  fleet.transport->set_size(1, 1000);
  int seen_at = -1;
  for (int d = 1; d <= 6 && seen_at < 0; ++d) {
    fleet.draw(4);
    if (fleet.engine.known_sizes()[1] == 1000) seen_at = d;
  }
  EXPECT_GE(seen_at, 1);
  EXPECT_LE(seen_at, 4) << "a size is never used for more than size_refresh draws without news";
}

TEST(DrawProtocolTest, AGrowingPeerIsAskedEveryDrawUntilItSettles) {
  // Peers 1..3 hold nothing this rank draws (r = 1 against its own 40 rows keeps most draws
  // local), so what reaches them besides data requests is size queries.
  Fleet fleet({0, 1, 1, 1}, {false, false, false, false}, /*refresh=*/8);
  fleet.draw(1);
  uint64_t size = 1;
  for (int d = 0; d < 6; ++d) {  // peer 1 grows between draws: known one draw late at most
    size += 1;
    fleet.transport->set_size(1, size);
    const uint64_t queries = fleet.engine.stats().size_messages;
    fleet.draw(1);
    EXPECT_GE(fleet.engine.known_sizes()[1], size - 1) << "draw " << d;
    const auto& last = fleet.transport->fetches.back();
    const bool asked = std::any_of(last.begin(), last.end(), [](const PeerRequest& r) { return r.peer == 1; });
    EXPECT_TRUE(asked) << "draw " << d << ": a growing peer is messaged every draw";
    EXPECT_LE(fleet.engine.stats().size_messages - queries, d == 0 ? 3u : 1u);
  }
  const uint64_t queries = fleet.engine.stats().size_messages;
  for (int d = 0; d < 16; ++d) fleet.draw(1);
  EXPECT_EQ(fleet.engine.known_sizes()[1], size);
  // Settled: one query confirms it, then one per peer every 8 draws at most.
  EXPECT_LE(fleet.engine.stats().size_messages - queries, 1u + 3u * 16 / 8);
}

}  // namespace
}  // namespace reverie
