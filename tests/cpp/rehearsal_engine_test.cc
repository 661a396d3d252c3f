// RehearsalEngine with a null transport (one process): queued adds, flush, draws into the
// two receive blocks, back-pressure from a tiny queue, and every timeout.
#include "engine/rehearsal_engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/errors.h"

namespace reverie {
namespace {

using std::chrono::milliseconds;

// One field of two int64 values, both equal to the sample id; the label is id % kClasses.
constexpr int64_t kClasses = 4;
const SampleLayout kLayout({2 * sizeof(int64_t)});

struct Rows {
  explicit Rows(size_t n, int64_t first_id = 0) : values(2 * n), labels(n), n(n) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t id = first_id + static_cast<int64_t>(i);
      values[2 * i] = values[2 * i + 1] = id;
      labels[i] = id % kClasses;
    }
  }
  ConstColumns in() const {
    ConstColumns c;
    c.base[0] = reinterpret_cast<const std::byte*>(values.data());
    c.base[1] = reinterpret_cast<const std::byte*>(labels.data());
    c.base[2] = nullptr;  // weights 1.0
    c.rows = n;
    return c;
  }
  std::vector<int64_t> values;
  std::vector<int64_t> labels;
  size_t n;
};

int64_t read_i64(const Columns& cols, size_t column, size_t row, size_t index = 0) {
  int64_t v;
  std::memcpy(&v, cols.at(kLayout, column, row) + index * sizeof v, sizeof v);
  return v;
}

std::shared_ptr<LocalBuffer> make_buffer(size_t capacity = 64, uint64_t seed = 1) {
  return std::make_shared<LocalBuffer>(kLayout, BufferOptions{capacity, std::nullopt, 0, seed});
}

EngineOptions options(milliseconds timeout = milliseconds(5000)) {
  EngineOptions o;
  o.max_representatives = 8;
  o.queue_blocks = 4;
  o.queue_rows = 16;
  o.timeout = timeout;
  o.seed = 3;
  return o;
}

// Holds the buffer's reader lock until released, so the worker blocks applying an insert.
class BufferBlocker {
 public:
  explicit BufferBlocker(const LocalBuffer& buffer) {
    thread_ = std::thread([this, &buffer] {
      buffer.read([this](const Columns&, size_t) {
        std::unique_lock lock(mu_);
        held_ = true;
        cv_.notify_all();
        cv_.wait(lock, [this] { return released_; });
      });
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return held_; });
  }
  ~BufferBlocker() { release(); }
  void release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  bool released_ = false;
  std::thread thread_;
};

TEST(RehearsalEngineTest, RejectsBadOptions) {
  EngineOptions o = options();
  o.max_representatives = 0;
  EXPECT_THROW(RehearsalEngine(make_buffer(), nullptr, o), std::invalid_argument);
  o = options();
  o.queue_blocks = 0;
  EXPECT_THROW(RehearsalEngine(make_buffer(), nullptr, o), std::invalid_argument);
  o = options();
  o.queue_rows = 0;
  EXPECT_THROW(RehearsalEngine(make_buffer(), nullptr, o), std::invalid_argument);
}

TEST(RehearsalEngineTest, SingleProcessIdentity) {
  RehearsalEngine engine(make_buffer(), nullptr, options());
  EXPECT_EQ(engine.rank(), 0);
  EXPECT_EQ(engine.world_size(), 1);
  EXPECT_TRUE(engine.excluded_peers().empty());
  EXPECT_EQ(engine.known_sizes(), std::vector<uint64_t>{0});
}

TEST(RehearsalEngineTest, AddFlushRequestWaitRows) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());
  Rows rows(40);  // spans three queue blocks of 16 rows
  engine.add(rows.in());
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 40u);
  EXPECT_EQ(engine.known_sizes(), std::vector<uint64_t>{40});

  const uint64_t ticket = engine.request(8);
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_TRUE(engine.done(ticket));
  ASSERT_EQ(engine.rows(ticket), 8u);
  const Columns& block = engine.block(ticket);
  std::set<int64_t> ids;
  for (size_t i = 0; i < 8; ++i) {
    const int64_t id = read_i64(block, 0, i);
    EXPECT_EQ(read_i64(block, 0, i, 1), id);
    EXPECT_EQ(read_i64(block, kLayout.label_column(), i), id % kClasses);
    float w;
    std::memcpy(&w, block.at(kLayout, kLayout.weight_column(), i), sizeof w);
    EXPECT_EQ(w, 1.0f);
    EXPECT_EQ(engine.ranks(ticket)[i], 0);
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 40);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 8u) << "draws are without replacement";

  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.draws, 1u);
  EXPECT_EQ(stats.rows_drawn, 8u);
  EXPECT_EQ(stats.rows_remote, 0u);
  EXPECT_EQ(stats.inserts, 3u);
  EXPECT_EQ(stats.rows_offered, 40u);
  EXPECT_EQ(stats.failed_requests, 0u);
  EXPECT_TRUE(engine.close());
}

// Polls (yielding, bounded) until the buffer holds `n` samples; the worker applies
// inserts on its own thread, and nothing in the engine's API waits for that except flush(),
// which these tests must not call (it wakes the worker itself).
bool size_reaches(const LocalBuffer& buffer, size_t n) {
  const auto deadline = Clock::now() + milliseconds(5000);
  while (buffer.size() < n && Clock::now() < deadline) std::this_thread::yield();
  return buffer.size() == n;
}

TEST(RehearsalEngineTest, AddWithoutWakeIsAppliedByTheNextRequest) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());  // 4 queue blocks of 16 rows
  Rows rows(10);
  engine.add(rows.in(), /*wake=*/false);
  EXPECT_EQ(buffer->size(), 0u);
  const uint64_t ticket = engine.request(1);  // a small draw: it starts here, then the insert
  EXPECT_EQ(buffer->size(), 10u) << "applied by request() itself, before it returned";
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_EQ(engine.rows(ticket), 0u) << "the draw ran before the insert";
  EXPECT_EQ(engine.stats().inserts, 1u);
  EXPECT_TRUE(engine.close());
}

TEST(RehearsalEngineTest, InsertLeftToTheWorkerWhileTheBufferIsBusy) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());
  BufferBlocker blocker(*buffer);  // a reader (as if serving a peer) holds the buffer
  Rows rows(10);
  engine.add(rows.in(), /*wake=*/false);
  const uint64_t ticket = engine.request(1);  // must not wait for the writer lock
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 0u);
  blocker.release();
  EXPECT_TRUE(size_reaches(*buffer, 10)) << "the worker applies it once the reader is gone";
  EXPECT_TRUE(engine.close());
}

TEST(RehearsalEngineTest, AddWithoutWakeWakesTheWorkerAtAHalfFullQueue) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());  // 4 queue blocks of 16 rows
  Rows rows(32);  // two blocks: the queue is half full
  engine.add(rows.in(), /*wake=*/false);
  EXPECT_TRUE(size_reaches(*buffer, 32));
  EXPECT_TRUE(engine.close());
}

TEST(RehearsalEngineTest, DrawsFewerWhenFewerStored) {
  RehearsalEngine engine(make_buffer(), nullptr, options());
  uint64_t ticket = engine.request(5);
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_EQ(engine.rows(ticket), 0u);
  Rows rows(3);
  engine.add(rows.in());
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  ticket = engine.request(5);
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_EQ(engine.rows(ticket), 3u);
  ticket = engine.request(0);
  ASSERT_TRUE(engine.wait(ticket, milliseconds(5000)));
  EXPECT_EQ(engine.rows(ticket), 0u);
}

TEST(RehearsalEngineTest, CandidatesPerAdd) {
  auto buffer = make_buffer(1000);
  EngineOptions o = options();
  o.candidates = 5;
  RehearsalEngine engine(buffer, nullptr, o);
  for (int i = 0; i < 4; ++i) {
    Rows rows(20, i * 20);
    engine.add(rows.in());
  }
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 20u);
  EXPECT_EQ(engine.stats().rows_offered, 20u);
}

TEST(RehearsalEngineTest, RejectsBadInputChangingNothing) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());
  Rows rows(4);
  rows.labels[3] = -2;
  EXPECT_THROW(engine.add(rows.in()), std::invalid_argument);
  EXPECT_THROW(engine.request(9), std::invalid_argument);  // max_representatives is 8
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 0u);
  EXPECT_EQ(engine.stats().inserts, 0u);
  EXPECT_EQ(engine.stats().draws, 0u);
}

TEST(RehearsalEngineTest, TicketsAlternateBlocksAndExpire) {
  RehearsalEngine engine(make_buffer(), nullptr, options());
  Rows rows(30);
  engine.add(rows.in());
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  const uint64_t t0 = engine.request(4);
  const uint64_t t1 = engine.request(4);
  EXPECT_EQ(t1, t0 + 1);
  EXPECT_NE(engine.block(t0).base[0], engine.block(t1).base[0]);
  ASSERT_TRUE(engine.wait(t0, milliseconds(5000)));
  ASSERT_TRUE(engine.wait(t1, milliseconds(5000)));
  const std::byte* first = engine.block(t0).base[0];
  const uint64_t t2 = engine.request(4);  // reuses t0's block
  EXPECT_EQ(engine.block(t2).base[0], first);
  EXPECT_THROW(engine.block(t0), std::invalid_argument);
  EXPECT_THROW(engine.done(t0), std::invalid_argument);
  EXPECT_THROW(engine.wait(t0, milliseconds(1)), std::invalid_argument);
  EXPECT_THROW(engine.rows(t0), std::invalid_argument);
  EXPECT_THROW(engine.done(t2 + 1), std::invalid_argument);  // not issued yet
  ASSERT_TRUE(engine.wait(t2, milliseconds(5000)));
}

TEST(RehearsalEngineTest, BackPressureWithTinyQueue) {
  auto buffer = make_buffer(500);
  EngineOptions o = options();
  o.queue_blocks = 1;
  o.queue_rows = 2;
  RehearsalEngine engine(buffer, nullptr, o);
  // Every add needs several one-block round trips through the worker; nothing is lost.
  for (int i = 0; i < 50; ++i) {
    Rows rows(7, i * 7);
    engine.add(rows.in());
  }
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 350u);
  EXPECT_EQ(engine.stats().rows_offered, 350u);
  EXPECT_EQ(engine.stats().inserts, 50u * 4);  // ceil(7 / 2) blocks per add
}

TEST(RehearsalEngineTest, AddTimesOutWhenTheQueueStaysFull) {
  auto buffer = make_buffer();
  EngineOptions o = options(milliseconds(100));
  o.queue_blocks = 1;
  RehearsalEngine engine(buffer, nullptr, o);
  {
    BufferBlocker blocker(*buffer);
    Rows rows(4);
    engine.add(rows.in());  // fills the only block; the worker blocks applying it
    const auto start = Clock::now();
    EXPECT_THROW(engine.add(rows.in()), TimeoutError);
    EXPECT_GE(Clock::now() - start, milliseconds(90));
    EXPECT_FALSE(engine.flush(milliseconds(50)));
  }
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 4u);
}

// A two-rank transport whose peer never answers until released (ignoring the deadline, as
// a broken engine might), or answers with a fixed status; with answers_sizes, it answers
// size queries (count 0) with ok and kPeerSize instead.
class StubTransport : public Transport {
 public:
  static constexpr uint64_t kPeerSize = 100;
  explicit StubTransport(wire::Status status, bool block, bool answers_sizes = false)
      : status_(status), block_(block), answers_sizes_(answers_sizes) {}
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  const char* name() const override { return "stub"; }
  void fetch(const std::vector<PeerRequest>& requests, const Columns&, Clock::time_point,
             std::vector<PeerReply>& replies) override {
    std::unique_lock lock(mu_);
    ++fetches_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !block_; });
    for (const PeerRequest& r : requests) {
      if (answers_sizes_ && r.count == 0) {
        replies.push_back(PeerReply{r.peer, wire::Status::kOk, kPeerSize});
      } else {
        replies.push_back(PeerReply{r.peer, status_, 0});
      }
    }
  }
  bool close(Clock::time_point) override { return true; }
  void abandon() override {}

  void wait_for_fetch() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return fetches_ > 0; });
  }
  void release() {
    std::lock_guard lock(mu_);
    block_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  wire::Status status_;
  bool block_;
  bool answers_sizes_;
  int fetches_ = 0;
};

// A two-rank transport that splits small fetches: the peer's reply (rows whose ids are
// -1000 - slot, label slot % kClasses, weight 0.5; the peer holds kPeerSize samples)
// arrives when deliver() is called, and poll_fetch() completes the fetch after that, or
// with kTimeout at the deadline. Unsplit fetches, and large ones unless hold_large, are
// answered at once. Records the threads that start and poll fetches, and counts
// serve_waiting() calls.
class SplitTransport : public Transport {
 public:
  static constexpr uint64_t kPeerSize = 100;
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  const char* name() const override { return "split-stub"; }
  size_t splittable_fetch_bytes() const override { return split_bytes.load(); }
  void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point,
             std::vector<PeerReply>& replies) override {
    std::lock_guard lock(mu_);
    for (const PeerRequest& r : requests) replies.push_back(answer(r, dest));
  }
  bool start_fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
                   std::vector<PeerReply>& replies, const std::function<void()>& local_work) override {
    size_t rows = 0;
    for (const PeerRequest& r : requests) rows += r.count;
    if (rows * kLayout.sample_bytes() > splittable_fetch_bytes() && !hold_large) {
      local_work();
      fetch(requests, dest, deadline, replies);
      return true;
    }
    {
      std::lock_guard lock(mu_);
      starter = std::this_thread::get_id();
      requests_ = &requests;
      dest_ = dest;
      replies_ = &replies;
      deadline_ = deadline;
    }
    local_work();
    return poll_fetch();
  }
  bool poll_fetch() override {
    std::lock_guard lock(mu_);
    last_poller = std::this_thread::get_id();
    if (requests_ == nullptr) return true;
    if (!delivered_ && Clock::now() < deadline_) return false;
    for (const PeerRequest& r : *requests_) {
      replies_->push_back(answer(r, dest_));
      if (!delivered_) replies_->back().status = wire::Status::kTimeout;
    }
    requests_ = nullptr;
    delivered_ = false;
    return true;
  }
  void serve_waiting() override { serves.fetch_add(1); }
  bool close(Clock::time_point) override { return true; }
  void abandon() override {}

  void deliver() {
    std::lock_guard lock(mu_);
    delivered_ = true;
  }
  std::thread::id starter_thread() {
    std::lock_guard lock(mu_);
    return starter;
  }
  std::thread::id poller_thread() {
    std::lock_guard lock(mu_);
    return last_poller;
  }
  void clear_poller() {
    std::lock_guard lock(mu_);
    last_poller = std::thread::id();
  }
  std::atomic<int> serves{0};
  std::atomic<size_t> split_bytes{16 * 1024};
  std::atomic<bool> hold_large{false};

 private:
  PeerReply answer(const PeerRequest& r, const Columns& dest) const {
    for (uint32_t i = 0; i < r.count; ++i) {
      const int64_t id = -1000 - static_cast<int64_t>(r.slots[i]);
      const int64_t label = r.slots[i] % kClasses;
      const float weight = 0.5f;
      std::memcpy(dest.at(kLayout, 0, r.first_row + i), &id, sizeof id);
      std::memcpy(dest.at(kLayout, 0, r.first_row + i) + sizeof id, &id, sizeof id);
      std::memcpy(dest.at(kLayout, kLayout.label_column(), r.first_row + i), &label, sizeof label);
      std::memcpy(dest.at(kLayout, kLayout.weight_column(), r.first_row + i), &weight, sizeof weight);
    }
    return PeerReply{r.peer, wire::Status::kOk, kPeerSize};
  }

  std::mutex mu_;
  const std::vector<PeerRequest>* requests_ = nullptr;
  Columns dest_{};
  std::vector<PeerReply>* replies_ = nullptr;
  Clock::time_point deadline_{};
  bool delivered_ = false;
  std::thread::id starter;
  std::thread::id last_poller;
};

// An engine over a stub transport, its buffer holding 10 samples (ids 0-9).
template <typename StubT>
struct EngineOver {
  explicit EngineOver(std::shared_ptr<StubT> stub, milliseconds timeout = milliseconds(5000))
      : buffer(make_buffer()), transport(std::move(stub)), engine(buffer, transport, options(timeout)) {
    engine.add(rows.in());
    EXPECT_TRUE(engine.flush(milliseconds(5000)));
  }
  Rows rows{10};
  std::shared_ptr<LocalBuffer> buffer;
  std::shared_ptr<StubT> transport;
  RehearsalEngine engine;
};

struct SplitEngine : EngineOver<SplitTransport> {
  explicit SplitEngine(milliseconds timeout = milliseconds(5000))
      : EngineOver(std::make_shared<SplitTransport>(), timeout) {}
};

// Polls (yielding, bounded) until the engine has finished `n` draws, without calling
// done() or wait() (which would move a parked draw on themselves).
bool draws_reach(const RehearsalEngine& engine, uint64_t n) {
  const auto deadline = Clock::now() + milliseconds(5000);
  while (engine.stats().draws < n && Clock::now() < deadline) std::this_thread::yield();
  return engine.stats().draws == n;
}

TEST(RehearsalEngineTest, SmallDrawStartsOnTheCallerAndParksUntilItsReplyArrives) {
  SplitEngine split;
  RehearsalEngine& engine = split.engine;
  SplitTransport* transport = split.transport.get();
  const int serves_before = transport->serves.load();

  // The first draw asks the peer its size before planning (one size query), so ~90% of it
  // comes from the peer: it parks until the peer's rows arrive.
  const uint64_t t0 = engine.request(4);
  EXPECT_EQ(engine.known_sizes(), (std::vector<uint64_t>{10, SplitTransport::kPeerSize}));
  EXPECT_EQ(engine.stats().size_messages, 1u);
  EXPECT_EQ(transport->starter_thread(), std::this_thread::get_id());
  EXPECT_FALSE(engine.done(t0)) << "parked until the peer's reply arrives";
  transport->deliver();
  EXPECT_TRUE(engine.done(t0)) << "done() moves a parked draw on";
  EXPECT_EQ(transport->poller_thread(), std::this_thread::get_id());
  ASSERT_EQ(engine.rows(t0), 4u);

  const uint64_t t1 = engine.request(8);
  std::thread late([&] {
    std::this_thread::sleep_for(milliseconds(20));
    transport->deliver();
  });
  ASSERT_TRUE(engine.wait(t1, milliseconds(5000)));  // polls until the reply arrives
  late.join();
  ASSERT_EQ(engine.rows(t1), 8u);
  size_t remote = 0;
  for (uint64_t t : {t0, t1}) {
    for (size_t i = 0; i < engine.rows(t); ++i) {
      const int64_t id = read_i64(engine.block(t), 0, i);
      if (engine.ranks(t)[i] == 1) {
        ++remote;
        EXPECT_LE(id, -1000);
        EXPECT_EQ(read_i64(engine.block(t), kLayout.label_column(), i), (-1000 - id) % kClasses);
      } else {
        EXPECT_GE(id, 0);
      }
    }
  }
  EXPECT_GT(remote, 0u);
  EXPECT_EQ(engine.stats().rows_remote, remote);
  EXPECT_EQ(engine.stats().requests_sent, 2u) << "one request per draw, to the one peer";
  EXPECT_EQ(engine.stats().size_messages, 1u) << "the peer's replies keep its size fresh";
  EXPECT_GE(transport->serves.load() - serves_before, 4) << "request, done, wait and its polls serve peers";
  EXPECT_TRUE(engine.close());
}

TEST(RehearsalEngineTest, WorkerFinishesAParkedDrawThatANewDrawWaitsFor) {
  SplitEngine split;
  RehearsalEngine& engine = split.engine;
  SplitTransport* transport = split.transport.get();
  const uint64_t t0 = engine.request(2);  // parked
  const uint64_t t1 = engine.request(2);  // queued behind it: the worker takes t0 over
  transport->deliver();
  EXPECT_TRUE(draws_reach(engine, 2)) << "nobody called done() or wait()";
  EXPECT_NE(transport->poller_thread(), std::this_thread::get_id());
  EXPECT_TRUE(engine.wait(t0, milliseconds(5000)));
  EXPECT_TRUE(engine.wait(t1, milliseconds(5000)));
  EXPECT_TRUE(engine.close());
}

// Makes the next draws of 3+ rows large (their replies held until deliver()), requests
// one of 8 and returns once the worker has started it. The peer's size is learnt first.
uint64_t large_draw_on_worker(SplitEngine& split) {
  const uint64_t t0 = split.engine.request(2);
  split.transport->deliver();
  EXPECT_TRUE(split.engine.wait(t0, milliseconds(5000)));
  split.transport->split_bytes = 2 * kLayout.sample_bytes();
  split.transport->hold_large = true;
  split.transport->clear_poller();
  const uint64_t t1 = split.engine.request(8);
  const auto deadline = Clock::now() + milliseconds(5000);
  while (split.transport->starter_thread() == std::this_thread::get_id() && Clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_NE(split.transport->starter_thread(), std::this_thread::get_id()) << "the worker starts a large draw";
  return t1;
}

TEST(RehearsalEngineTest, ACallerWaitingForTheWorkersDrawTakesItOver) {
  SplitEngine split;
  SplitTransport* transport = split.transport.get();
  const uint64_t t = large_draw_on_worker(split);
  const auto me = std::this_thread::get_id();
  std::thread peer([&] {  // answers once this thread polls the fetch itself
    const auto deadline = Clock::now() + milliseconds(5000);
    while (transport->poller_thread() != me && Clock::now() < deadline) std::this_thread::yield();
    transport->deliver();
  });
  ASSERT_TRUE(split.engine.wait(t, milliseconds(5000)));
  peer.join();
  EXPECT_EQ(transport->poller_thread(), me) << "the caller finished the draw";
  EXPECT_EQ(split.engine.rows(t), 8u);
  EXPECT_EQ(split.engine.stats().failed_requests, 0u);
  EXPECT_TRUE(split.engine.close());
}

TEST(RehearsalEngineTest, ACallerThatGivesUpATakenOverDrawLeavesItToTheWorker) {
  SplitEngine split;
  SplitTransport* transport = split.transport.get();
  const uint64_t t = large_draw_on_worker(split);
  EXPECT_FALSE(split.engine.wait(t, milliseconds(30)));
  transport->clear_poller();
  transport->deliver();
  EXPECT_TRUE(draws_reach(split.engine, 2)) << "nobody waits for it now";
  EXPECT_NE(transport->poller_thread(), std::this_thread::get_id());
  ASSERT_TRUE(split.engine.wait(t, milliseconds(5000)));
  EXPECT_EQ(split.engine.rows(t), 8u);
  EXPECT_EQ(split.engine.stats().failed_requests, 0u);
  EXPECT_TRUE(split.engine.close());
}

TEST(RehearsalEngineTest, WaitOnAParkedDrawTimesOutAndTheDrawFailsAtItsDeadline) {
  SplitEngine split(milliseconds(200));  // the peer never answers
  RehearsalEngine& engine = split.engine;
  const uint64_t t = engine.request(4);
  EXPECT_FALSE(engine.wait(t, milliseconds(30)));
  EXPECT_FALSE(engine.done(t));
  ASSERT_TRUE(engine.wait(t, milliseconds(5000)));  // the engine's deadline ends it
  EXPECT_LT(engine.rows(t), 4u) << "the peer's rows are lost";
  for (size_t i = 0; i < engine.rows(t); ++i) EXPECT_EQ(engine.ranks(t)[i], 0) << "the local rows still arrive";
  EXPECT_EQ(engine.excluded_peers(), std::vector<int>{1});
}

TEST(RehearsalEngineTest, CloseFinishesAParkedDraw) {
  SplitEngine split;
  RehearsalEngine& engine = split.engine;
  SplitTransport* transport = split.transport.get();
  engine.request(4);
  transport->deliver();
  EXPECT_TRUE(engine.close());
  EXPECT_EQ(engine.stats().draws, 1u);
}

TEST(RehearsalEngineTest, WaitAndRequestTimeOutWhileADrawIsStuck) {
  EngineOver<StubTransport> stub(std::make_shared<StubTransport>(wire::Status::kOk, /*block=*/true),
                                 milliseconds(100));
  auto& [rows, buffer, transport, engine] = stub;
  const uint64_t t0 = engine.request(4);
  transport->wait_for_fetch();  // the worker is inside t0's fetch
  EXPECT_FALSE(engine.wait(t0, milliseconds(30)));
  EXPECT_FALSE(engine.done(t0));
  EXPECT_THROW(engine.rows(t0), std::invalid_argument);
  engine.add(rows.in());
  EXPECT_FALSE(engine.flush(milliseconds(30)));  // the insert queued behind the draw waits too
  const uint64_t t1 = engine.request(4);
  const auto start = Clock::now();
  EXPECT_THROW(engine.request(4), TimeoutError);  // both receive blocks are in flight
  EXPECT_GE(Clock::now() - start, milliseconds(90));
  transport->release();
  ASSERT_TRUE(engine.wait(t0, milliseconds(5000)));
  ASSERT_TRUE(engine.wait(t1, milliseconds(5000)));
  EXPECT_EQ(engine.rows(t0), 4u);
  EXPECT_EQ(engine.rows(t1), 4u);
  EXPECT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 20u);
  EXPECT_TRUE(engine.excluded_peers().empty());
}

TEST(RehearsalEngineTest, DrawsLeftToACallerThatWaitsAtOnceStillRunWhenItDoesNot) {
  // A caller that runs its draws in wait() right after requesting them gets the next ones
  // left to it (the worker is not woken); a caller that then only polls done(), or waits
  // for a later draw, must still see them run.
  EngineOver<StubTransport> stub(std::make_shared<StubTransport>(wire::Status::kOk, /*block=*/false));
  RehearsalEngine& engine = stub.engine;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(engine.wait(engine.request(4), options().timeout));
  const uint64_t polled = engine.request(4);
  const auto deadline = Clock::now() + milliseconds(5000);
  while (!engine.done(polled) && Clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(engine.done(polled));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(engine.wait(engine.request(4), options().timeout));
  const uint64_t first = engine.request(4);
  const uint64_t second = engine.request(4);
  ASSERT_TRUE(engine.wait(second, options().timeout));
  ASSERT_TRUE(engine.wait(first, options().timeout));
  EXPECT_EQ(engine.rows(first), 4u);
  EXPECT_EQ(engine.rows(second), 4u);
  EXPECT_TRUE(engine.close());
}

// A stub peer (holding nothing) that counts the calls answering its requests mid-copy.
class CountingTransport : public StubTransport {
 public:
  CountingTransport() : StubTransport(wire::Status::kOk, /*block=*/false) {}
  void serve_all_waiting() override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
};

TEST(RehearsalEngineTest, LargeLocalRowsAreCopiedInChunksAnsweringPeersBetween) {
  // 600 KB rows: one row per chunk (of about 1 MB), so 6 local rows make 6 chunks, 5 calls.
  const SampleLayout big({600 * 1024});
  auto buffer = std::make_shared<LocalBuffer>(big, BufferOptions{6, std::nullopt, 0, 1});
  std::vector<std::byte> values(6 * big.row_bytes(0));
  std::vector<int64_t> labels(6, 0);
  for (size_t i = 0; i < 6; ++i)
    std::memset(values.data() + i * big.row_bytes(0), static_cast<int>(i + 1), big.row_bytes(0));
  ConstColumns in;
  in.base[0] = values.data();
  in.base[1] = reinterpret_cast<const std::byte*>(labels.data());
  in.rows = 6;
  auto transport = std::make_shared<CountingTransport>();
  RehearsalEngine engine(buffer, transport, options());
  engine.add(in);
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  const uint64_t t = engine.request(6);
  ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
  ASSERT_EQ(engine.rows(t), 6u);
  std::set<int> firsts;
  for (size_t row = 0; row < 6; ++row) {
    const std::byte* got = engine.block(t).at(big, 0, row);
    const auto first = static_cast<int>(got[0]);
    for (size_t b = 0; b < big.row_bytes(0); b += 4096) ASSERT_EQ(static_cast<int>(got[b]), first) << "row " << row;
    firsts.insert(first);
  }
  EXPECT_EQ(firsts, (std::set<int>{1, 2, 3, 4, 5, 6})) << "every stored row once";
  EXPECT_EQ(transport->calls.load(), 5);
}

// A stub peer (holding nothing) whose every fetch waited 3 ns for its answer, then 5 ns for rows.
class WaitingTransport : public StubTransport {
 public:
  WaitingTransport() : StubTransport(wire::Status::kOk, /*block=*/false) {}
  void fetch(const std::vector<PeerRequest>& requests, const Columns& dest, Clock::time_point deadline,
             std::vector<PeerReply>& replies) override {
    StubTransport::fetch(requests, dest, deadline, replies);
    waits.answer_ns += 3;
    waits.rows_ns += 5;
    fetches.fetch_add(1);
  }
  FetchWaits take_fetch_waits() override { return std::exchange(waits, FetchWaits{}); }
  FetchWaits waits;
  std::atomic<int> fetches{0};
};

TEST(RehearsalEngineTest, StatsSplitADrawsTimeIntoLocalCopyAnswersAndRows) {
  auto buffer = make_buffer();
  auto transport = std::make_shared<WaitingTransport>();
  RehearsalEngine engine(buffer, transport, options());
  Rows rows(32, 0);
  engine.add(rows.in());
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  for (int i = 0; i < 3; ++i) {
    const uint64_t t = engine.request(8);
    ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
  }
  const EngineStats s = engine.stats();
  const auto fetches = static_cast<uint64_t>(transport->fetches.load());  // size queries
  ASSERT_GE(fetches, 1u);
  EXPECT_EQ(s.answer_wait_ns, 3 * fetches);
  EXPECT_EQ(s.rows_wait_ns, 5 * fetches);
  EXPECT_GT(s.local_ns, 0u);
  EXPECT_LE(s.local_ns + s.answer_wait_ns + s.rows_wait_ns, s.fetch_ns);
}

TEST(RehearsalEngineTest, PeerThatTimesOutIsExcluded) {
  EngineOver<StubTransport> stub(std::make_shared<StubTransport>(wire::Status::kTimeout, /*block=*/false));
  RehearsalEngine& engine = stub.engine;
  const uint64_t t = engine.request(4);
  ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
  EXPECT_EQ(engine.rows(t), 4u);  // the local rows still arrive
  EXPECT_EQ(engine.excluded_peers(), std::vector<int>{1});
  EXPECT_EQ(engine.stats().failed_requests, 1u);
  EXPECT_EQ(engine.known_sizes(), (std::vector<uint64_t>{10, 0}));
}

TEST(RehearsalEngineTest, ABlockAPeerTimedOutOnIsRetiredNotReused) {
  // The peer tells its size, then times out on the rows the draw asks it for.
  EngineOver<StubTransport> stub(
      std::make_shared<StubTransport>(wire::Status::kTimeout, /*block=*/false, /*answers_sizes=*/true));
  RehearsalEngine& engine = stub.engine;
  const std::byte* before = engine.receive_block(0).base[0];
  const uint64_t t = engine.request(4);
  ASSERT_EQ(engine.block_of(t), 0u);
  ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
  EXPECT_EQ(engine.stats().peers_timed_out, 1u);
  EXPECT_EQ(engine.block_generation(0), 1u);  // the peer may still write into the old block
  EXPECT_NE(engine.block(t).base[0], before);
  EXPECT_EQ(engine.block_generation(1), 0u);
  EXPECT_LT(engine.rows(t), 4u);  // the local rows were carried over to the new block
  const Columns& rows = engine.block(t);
  const SampleLayout& layout = engine.buffer().layout();
  for (size_t i = 0; i < engine.rows(t); ++i) {
    EXPECT_EQ(engine.ranks(t)[i], 0) << "row " << i;
    const auto label = *reinterpret_cast<const int64_t*>(rows.at(layout, layout.label_column(), i));
    EXPECT_TRUE(label >= 0 && label < 10) << "row " << i << " label " << label;
  }
  // Released, the draw's block is still the next draw's: the fresh one, not the retired.
  ASSERT_TRUE(engine.release(t));
  const uint64_t next = engine.request(4);
  EXPECT_EQ(engine.block(next).base[0], engine.receive_block(0).base[0]);
  EXPECT_NE(engine.block(next).base[0], before);
  ASSERT_TRUE(engine.wait(next, milliseconds(5000)));
}

TEST(RehearsalEngineTest, AReleasedDrawsBlockTakesTheNextDraw) {
  RehearsalEngine engine(make_buffer(), nullptr, options());
  Rows rows(30);
  engine.add(rows.in());
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  const uint64_t t0 = engine.request(4);
  EXPECT_THROW(engine.release(t0 + 1), std::invalid_argument);  // not issued yet
  ASSERT_TRUE(engine.wait(t0, milliseconds(5000)));
  ASSERT_TRUE(engine.release(t0));
  const uint64_t t1 = engine.request(4);
  EXPECT_EQ(engine.block_of(t1), engine.block_of(t0));
  EXPECT_FALSE(engine.release(t0));  // a later draw was requested: nothing changes
  ASSERT_TRUE(engine.wait(t1, milliseconds(5000)));
  const uint64_t t2 = engine.request(4);  // t1 not released: the other block
  EXPECT_NE(engine.block_of(t2), engine.block_of(t1));
  ASSERT_TRUE(engine.wait(t2, milliseconds(5000)));
  EXPECT_EQ(engine.rows(t2), 4u);
  EXPECT_THROW(engine.block_of(t0), std::invalid_argument);  // superseded by t2
}

TEST(RehearsalEngineTest, ReleasingADrawInFlightIsRefusedAndChangesNothing) {
  SplitEngine split;
  RehearsalEngine& engine = split.engine;
  const uint64_t t = engine.request(4);  // parked until the peer's rows arrive
  EXPECT_THROW(engine.release(t), std::invalid_argument);
  split.transport->deliver();
  ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
  const uint64_t next = engine.request(4);
  EXPECT_NE(engine.block_of(next), engine.block_of(t));
  split.transport->deliver();
  ASSERT_TRUE(engine.wait(next, milliseconds(5000)));
}

TEST(RehearsalEngineTest, SameSeedSameDraws) {
  auto run = [] {
    RehearsalEngine engine(make_buffer(32, 9), nullptr, options());
    std::vector<int64_t> ids;
    for (int step = 0; step < 10; ++step) {
      Rows rows(12, step * 12);
      engine.add(rows.in());
      EXPECT_TRUE(engine.flush(milliseconds(5000)));  // fixes the order of inserts and draws
      const uint64_t t = engine.request(6);
      EXPECT_TRUE(engine.wait(t, milliseconds(5000)));
      for (size_t i = 0; i < engine.rows(t); ++i) ids.push_back(read_i64(engine.block(t), 0, i));
    }
    return ids;
  };
  const auto a = run();
  EXPECT_EQ(a.size(), 60u);
  EXPECT_EQ(a, run());
}

TEST(RehearsalEngineTest, CloseAppliesQueuedAddsAndRejectsLaterCalls) {
  auto buffer = make_buffer();
  RehearsalEngine engine(buffer, nullptr, options());
  Rows rows(20);
  engine.add(rows.in());
  EXPECT_TRUE(engine.close());
  EXPECT_EQ(buffer->size(), 20u);
  EXPECT_TRUE(engine.close());  // idempotent
  EXPECT_THROW(engine.add(rows.in()), std::runtime_error);
  EXPECT_THROW(engine.request(1), std::runtime_error);
}

TEST(RehearsalEngineTest, AbandonAndDestroyWithWorkInFlight) {
  auto buffer = make_buffer();
  {
    RehearsalEngine engine(buffer, nullptr, options());
    Rows rows(20);
    engine.add(rows.in());
    engine.request(8);
    engine.abandon();
    EXPECT_THROW(engine.add(rows.in()), std::runtime_error);
  }
  {
    RehearsalEngine engine(buffer, nullptr, options());
    Rows rows(5);
    engine.add(rows.in());
    engine.request(8);
  }  // the destructor joins the worker
  SUCCEED();
}

TEST(RehearsalEngineTest, ConcurrentAddersAndOneDrawer) {
  auto buffer = make_buffer(128);
  RehearsalEngine engine(buffer, nullptr, options());
  std::vector<std::thread> adders;
  for (int t = 0; t < 2; ++t)
    adders.emplace_back([&, t] {
      for (int step = 0; step < 100; ++step) {
        Rows rows(8, (t * 100 + step) * 8);
        engine.add(rows.in());
      }
    });
  bool consistent = true;
  for (int step = 0; step < 100; ++step) {
    const uint64_t t = engine.request(8);
    ASSERT_TRUE(engine.wait(t, milliseconds(5000)));
    for (size_t i = 0; i < engine.rows(t); ++i) {
      const int64_t id = read_i64(engine.block(t), 0, i);
      consistent = consistent && read_i64(engine.block(t), 0, i, 1) == id &&
                   read_i64(engine.block(t), kLayout.label_column(), i) == id % kClasses;
    }
  }
  for (auto& th : adders) th.join();
  EXPECT_TRUE(consistent);
  ASSERT_TRUE(engine.flush(milliseconds(5000)));
  EXPECT_EQ(buffer->size(), 128u);
  EXPECT_EQ(engine.stats().rows_offered, 1600u);
}

}  // namespace
}  // namespace reverie
