// The bare Thallium baseline of benchmarks/thallium_fetch.py and remote_fetch.py: one RPC
// answered by one bulk push of r rows from one contiguous region, which is the least a
// Thallium draw of r remote rows can cost. Built by CMake when Thallium is found; the
// benchmarks run it beside the engine in the same invocation, with the engine's thread
// layout.
//
//   thallium_bare server <proto> <progress 0|1> <rpc_threads> <addrfile>
//   thallium_bare client <proto> <progress 0|1> <rpc_threads> <addrfile> [seconds [row_bytes r...]]
//   thallium_bare pair   <proto> <progress 0|1> <rpc_threads> <addrfile> <peer_addrfile> seconds row_bytes r...
//
// The client prints, per case, "RESULT bw MB/s=<x> size=<KB>KBx<r> iters=<n> rpc_us=<us>"
// (KB = KiB of one row; without row_bytes, 12 and 602 KiB rows and r = 7, 28, 64) and then
// stops the server. A pair is two processes that serve each other and draw at the same
// time, as every rank does in training (remote_fetch.py's "all" pattern): each draw of r
// pulls half the rows from the peer (r // 2 and r - r // 2 in turn) and copies the rest
// locally, like the raw MPI exchange; each prints "RESULT pair size=<row_bytes>Bx<r>
// iters=<n> rpc_us=<us>". Each case starts when both are ready (an RPC each way).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <thallium.hpp>

namespace tl = thallium;

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kRowKiB[] = {12, 602};
constexpr size_t kRows[] = {7, 28, 64};
constexpr size_t kMaxBytes = 602 * 1024 * 64;
constexpr auto kPeerTimeout = std::chrono::seconds(60);  // a peer that never shows up ends the run

struct Case {
  size_t row_bytes;
  size_t rows;
};

// The cases named on the command line from argv[first] (row_bytes r...), else the default grid.
std::vector<Case> cases_from(int argc, char** argv, int first) {
  std::vector<Case> out;
  if (argc > first + 1) {
    const size_t row_bytes = std::stoul(argv[first]);
    for (int i = first + 1; i < argc; ++i) out.push_back({row_bytes, std::stoul(argv[i])});
    return out;
  }
  for (size_t kib : kRowKiB)
    for (size_t rows : kRows) out.push_back({kib * 1024, rows});
  return out;
}

size_t most_bytes(const std::vector<Case>& cases) {
  size_t most = 0;
  for (const Case& c : cases) most = std::max(most, c.row_bytes * c.rows);
  return most;
}

std::string read_address(const std::string& addrfile) {
  const auto give_up = Clock::now() + kPeerTimeout;
  while (true) {
    std::ifstream in(addrfile);
    if (in) return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (Clock::now() > give_up) throw std::runtime_error("no address in " + addrfile + " within 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void write_address(const tl::engine& engine, const std::string& addrfile) {
  const std::string tmp = addrfile + ".tmp";
  std::ofstream(tmp) << static_cast<std::string>(engine.self());
  std::rename(tmp.c_str(), addrfile.c_str());  // the peer never reads half an address
}

// Margo's spindown as the engine sets it: REVERIE_THALLIUM_SPINDOWN_MS, else 0 (a progress
// thread that spins after each operation starves the other threads where cores are few).
tl::engine make_engine(const std::string& proto, int mode, bool progress, int rpc_threads) {
  const char* spindown = std::getenv("REVERIE_THALLIUM_SPINDOWN_MS");
  const long ms = spindown != nullptr ? std::max(0L, std::atol(spindown)) : 0L;
  const std::string config = std::string("{\"use_progress_thread\": ") + (progress ? "true" : "false") +
                             ", \"rpc_thread_count\": " + std::to_string(rpc_threads) +
                             ", \"progress_spindown_msec\": " + std::to_string(ms) + "}";
  return tl::engine(proto, mode, config);
}

int serve(const std::string& proto, bool progress, int rpc_threads, const std::string& addrfile) {
  tl::engine engine = make_engine(proto, THALLIUM_SERVER_MODE, progress, rpc_threads);
  std::vector<char> region(kMaxBytes, 1);
  std::vector<std::pair<void*, size_t>> segment{{region.data(), region.size()}};
  tl::bulk local = engine.expose(segment, tl::bulk_mode::read_only);
  engine.define("bare_get", [&](const tl::request& req, tl::bulk& remote, uint64_t bytes) {
    remote.on(req.get_endpoint()).select(0, bytes) << local.select(0, bytes);
    req.respond(uint64_t{bytes});
  });
  engine.define("bare_stop", [&](const tl::request& req) {
    req.respond(0);
    engine.finalize();
  });
  write_address(engine, addrfile);
  engine.wait_for_finalize();
  return 0;
}

int run_client(const std::string& proto, bool progress, int rpc_threads, const std::string& addrfile,
               double seconds, const std::vector<Case>& cases) {
  if (most_bytes(cases) > kMaxBytes) throw std::invalid_argument("a case exceeds the server's region");
  tl::engine engine = make_engine(proto, THALLIUM_CLIENT_MODE, progress, rpc_threads);
  tl::endpoint server = engine.lookup(read_address(addrfile));
  tl::remote_procedure get = engine.define("bare_get");
  tl::remote_procedure stop = engine.define("bare_stop");
  std::vector<char> region(kMaxBytes);
  std::vector<std::pair<void*, size_t>> segment{{region.data(), region.size()}};
  tl::bulk local = engine.expose(segment, tl::bulk_mode::write_only);
  for (const Case& c : cases) {
    const uint64_t bytes = c.row_bytes * c.rows;
    for (int i = 0; i < 5; ++i) get.on(server)(local, bytes);  // warm-up
    size_t iters = 0;
    const auto start = Clock::now();
    const auto stop_at = start + std::chrono::duration<double>(seconds);
    while (Clock::now() < stop_at || iters < 20) {
      get.on(server)(local, bytes);
      ++iters;
    }
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
    std::printf("RESULT bw MB/s=%.1f size=%zuKBx%zu iters=%zu rpc_us=%.2f\n", bytes / us, c.row_bytes / 1024, c.rows,
                iters, us);
    std::fflush(stdout);
  }
  stop.on(server)();
  engine.finalize();
  return 0;
}

// Both processes of a pair: serve the peer, and draw from it at the same time.
int run_pair(const std::string& proto, bool progress, int rpc_threads, const std::string& addrfile,
             const std::string& peer_addrfile, double seconds, const std::vector<Case>& cases) {
  tl::engine engine = make_engine(proto, THALLIUM_SERVER_MODE, progress, rpc_threads);
  const size_t capacity = most_bytes(cases);
  std::vector<char> rows(capacity, 1);  // what this process serves and copies its own share from
  std::vector<char> landing(capacity);  // where its draws land
  std::vector<std::pair<void*, size_t>> served{{rows.data(), rows.size()}};
  std::vector<std::pair<void*, size_t>> into{{landing.data(), landing.size()}};
  tl::bulk source = engine.expose(served, tl::bulk_mode::read_only);
  tl::bulk target = engine.expose(into, tl::bulk_mode::write_only);
  std::atomic<uint64_t> peer_ready{0};
  engine.define("bare_get", [&](const tl::request& req, tl::bulk& remote, uint64_t bytes) {
    remote.on(req.get_endpoint()).select(0, bytes) << source.select(0, bytes);
    req.respond(uint64_t{bytes});
  });
  // Responds before counting: once this side has counted the peer's last arrival, the peer
  // has its answer and may finalize.
  engine.define("bare_ready", [&](const tl::request& req, uint64_t step) {
    req.respond(step);
    peer_ready.store(step);
  });
  write_address(engine, addrfile);
  tl::endpoint peer = engine.lookup(read_address(peer_addrfile));
  tl::remote_procedure get = engine.define("bare_get");
  tl::remote_procedure ready = engine.define("bare_ready");
  uint64_t step = 0;
  auto both_ready = [&] {
    ++step;
    ready.on(peer).timed(kPeerTimeout, step);
    const auto give_up = Clock::now() + kPeerTimeout;
    while (peer_ready.load() < step) {
      if (Clock::now() > give_up) throw std::runtime_error("the peer stopped answering");
      tl::thread::sleep(engine, 0.1);  // in Argobots: progress runs meanwhile, whatever the layout
    }
  };
  for (const Case& c : cases) {
    auto draw = [&](size_t i) {
      const size_t remote = (c.rows + i % 2) / 2;
      get.on(peer).timed(kPeerTimeout, target, uint64_t{remote * c.row_bytes});
      std::memcpy(landing.data() + remote * c.row_bytes, rows.data(), (c.rows - remote) * c.row_bytes);
    };
    both_ready();
    for (size_t i = 0; i < 5; ++i) draw(i);  // warm-up
    both_ready();
    size_t iters = 0;
    const auto start = Clock::now();
    const auto stop_at = start + std::chrono::duration<double>(seconds);
    while (Clock::now() < stop_at || iters < 20) draw(iters++);
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
    std::printf("RESULT pair size=%zuBx%zu iters=%zu rpc_us=%.2f\n", c.row_bytes, c.rows, iters, us);
    std::fflush(stdout);
  }
  both_ready();  // the peer draws no more: nobody needs this side's server now
  engine.finalize();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: %s server <proto> <progress 0|1> <rpc_threads> <addrfile>\n"
                 "       %s client <proto> <progress 0|1> <rpc_threads> <addrfile> [seconds [row_bytes r...]]\n"
                 "       %s pair <proto> <progress 0|1> <rpc_threads> <addrfile> <peer_addrfile> seconds "
                 "row_bytes r...\n",
                 argv[0], argv[0], argv[0]);
    return 2;
  }
  const std::string role = argv[1], proto = argv[2], addrfile = argv[5];
  const bool progress = std::stoi(argv[3]) != 0;
  const int rpc_threads = std::stoi(argv[4]);
  try {
    if (role == "server") return serve(proto, progress, rpc_threads, addrfile);
    if (role == "client")
      return run_client(proto, progress, rpc_threads, addrfile, argc > 6 ? std::stod(argv[6]) : 0.3,
                        cases_from(argc, argv, 7));
    if (role == "pair" && argc > 9)
      return run_pair(proto, progress, rpc_threads, addrfile, argv[6], std::stod(argv[7]), cases_from(argc, argv, 8));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thallium_bare %s: %s\n", role.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "role: expected client, server or pair (with seconds, row_bytes and r), got %s\n",
               role.c_str());
  return 2;
}
