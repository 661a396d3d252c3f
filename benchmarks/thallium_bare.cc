// The bare Thallium baseline of benchmarks/thallium_fetch.py: one RPC answered by one bulk
// push of r rows from one contiguous region, which is the least a Thallium draw of r remote
// rows can cost. Built by CMake when Thallium is found; the benchmark runs it beside the
// engine in the same invocation, with the engine's thread layout.
//
//   thallium_bare server <proto> <progress 0|1> <rpc_threads> <addrfile>
//   thallium_bare client <proto> <progress 0|1> <rpc_threads> <addrfile> [seconds per case]
//
// The client prints, per case, "RESULT bw MB/s=<x> size=<KB>KBx<r> iters=<n> rpc_us=<us>"
// (KB = KiB of one row) and then stops the server.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <thallium.hpp>

namespace tl = thallium;

namespace {

constexpr size_t kRowKiB[] = {12, 602};
constexpr size_t kRows[] = {7, 28, 64};
constexpr size_t kMaxBytes = 602 * 1024 * 64;

tl::engine make_engine(const std::string& proto, int mode, bool progress, int rpc_threads) {
  return tl::engine(proto, mode, progress, rpc_threads);
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
  {
    const std::string tmp = addrfile + ".tmp";
    std::ofstream(tmp) << static_cast<std::string>(engine.self());
    std::rename(tmp.c_str(), addrfile.c_str());  // the client never reads half an address
  }
  engine.wait_for_finalize();
  return 0;
}

int run_client(const std::string& proto, bool progress, int rpc_threads, const std::string& addrfile,
               double seconds) {
  tl::engine engine = make_engine(proto, THALLIUM_CLIENT_MODE, progress, rpc_threads);
  std::ifstream in(addrfile);
  const std::string address((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  tl::endpoint server = engine.lookup(address);
  tl::remote_procedure get = engine.define("bare_get");
  tl::remote_procedure stop = engine.define("bare_stop");
  std::vector<char> region(kMaxBytes);
  std::vector<std::pair<void*, size_t>> segment{{region.data(), region.size()}};
  tl::bulk local = engine.expose(segment, tl::bulk_mode::write_only);
  using Clock = std::chrono::steady_clock;
  for (size_t kib : kRowKiB) {
    for (size_t rows : kRows) {
      const uint64_t bytes = kib * 1024 * rows;
      for (int i = 0; i < 5; ++i) get.on(server)(local, bytes);  // warm-up
      size_t iters = 0;
      const auto start = Clock::now();
      const auto stop_at = start + std::chrono::duration<double>(seconds);
      while (Clock::now() < stop_at || iters < 20) {
        get.on(server)(local, bytes);
        ++iters;
      }
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / iters;
      std::printf("RESULT bw MB/s=%.1f size=%zuKBx%zu iters=%zu rpc_us=%.2f\n", bytes / us, kib, rows, iters, us);
      std::fflush(stdout);
    }
  }
  stop.on(server)();
  engine.finalize();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s client|server <proto> <progress 0|1> <rpc_threads> <addrfile> [seconds]\n",
                 argv[0]);
    return 2;
  }
  const std::string role = argv[1], proto = argv[2], addrfile = argv[5];
  const bool progress = std::stoi(argv[3]) != 0;
  const int rpc_threads = std::stoi(argv[4]);
  try {
    if (role == "server") return serve(proto, progress, rpc_threads, addrfile);
    if (role == "client") return run_client(proto, progress, rpc_threads, addrfile, argc > 6 ? std::stod(argv[6]) : 0.3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thallium_bare %s: %s\n", role.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "role: expected client or server, got %s\n", role.c_str());
  return 2;
}
