#pragma once
// The engine's tuning knobs, in one place (docs/engines.md explains them in a table).
//
// Each constant names the measurement that chose it and says whether it is
// machine-specific. "Dev box" below is the development machine every number was measured
// on unless said otherwise: a shared 2-core VM, MPICH 5.0.2 from PyPI over shared memory,
// torch 2.13 CPU (docs/benchmarks.md). Values marked machine-specific were chosen there,
// where threads outnumber cores; on nodes with cores to spare, longer hot windows cost
// nothing and may buy a few microseconds. Values that depend on the MPI library are
// derived at start-up (shm_protocol(): the eager limit read through the MPI tool
// interface), Margo's spindown is a run-time option (REVERIE_THALLIUM_SPINDOWN_MS), and
// the machine-specific hot windows scale with REVERIE_HOT_WINDOW_SCALE (below).
//
// Waiting policy (common/backoff.h): a poller yields for a hot window after activity, then
// sleeps with pauses doubling from a minimum to a maximum sleep.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <optional>

namespace reverie::tuning {

using us = std::chrono::microseconds;

// ---- Hot windows that fit one machine: a run-time scale ----

// The hot windows marked "hot_window" below were chosen on the dev box, where threads
// outnumber cores and every microsecond of spinning is taken from the training step. On
// nodes with cores to spare a poller may stay hot longer (fewer sleeps between messages
// that keep coming); that was not measured, so the default scale is 1 (the dev box's
// values). REVERIE_HOT_WINDOW_SCALE, read once when the module loads, multiplies them.
inline constexpr const char* kHotWindowScaleEnv = "REVERIE_HOT_WINDOW_SCALE";
inline constexpr double kMostHotWindowScale = 1000.0;

// The scale `text` asks for: a number in (0, kMostHotWindowScale], else nullopt.
inline std::optional<double> parse_hot_window_scale(const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value > 0.0) || value > kMostHotWindowScale) return std::nullopt;
  return value;
}

// REVERIE_HOT_WINDOW_SCALE, or 1 (with one line on stderr naming what was expected) when
// it is unset or not a valid scale.
inline double hot_window_scale() {
  static const double scale = [] {
    const char* text = std::getenv(kHotWindowScaleEnv);
    if (text == nullptr) return 1.0;
    if (const auto value = parse_hot_window_scale(text)) return *value;
    std::fprintf(stderr, "reverie: %s=%s ignored: expected a number > 0 and <= %g\n", kHotWindowScaleEnv, text,
                 kMostHotWindowScale);
    return 1.0;
  }();
  return scale;
}

// A hot window chosen on the dev box, times the run-time scale.
inline us hot_window(us chosen, double scale = hot_window_scale()) {
  return std::chrono::duration_cast<us>(std::chrono::duration<double, std::micro>(chosen) * scale);
}

// ---- The idle MPI server's longest sleep: derived at start-up, or a run-time option ----

// How long an owner with nothing to do may sleep between looks for requests: a request that
// finds its server asleep waits about half of it, and every look costs CPU. Dev box, MPI
// engine, 2 ranks idle (benchmarks/idle_server.py): 12 ms 0.4% of a core (p50 of a draw
// from an idle owner 106x the raw exchange), 500 us 4.3-4.8% (4.3x), 200 us 9.2%. With
// owner-only draws one sleepy owner is the whole draw, so where every rank has a core of its
// own (GPU jobs: the CPU side idles most of each step) the server sleeps at most
// kSpareCoreIdleSleep; where ranks outnumber the cores of their node (CPU-only jobs, this
// box at 4+ ranks) the CPU is worth more than the latency and it sleeps up to
// kCrowdedIdleSleep (the training thread still answers waiting requests at each step
// boundary). REVERIE_IDLE_SLEEP_US overrides both.
inline constexpr const char* kIdleSleepEnv = "REVERIE_IDLE_SLEEP_US";
inline constexpr us kSpareCoreIdleSleep{500}, kCrowdedIdleSleep{12000};
inline constexpr us kDefaultIdleSleep = kCrowdedIdleSleep;  // before the transport knows its node
inline constexpr us kLeastIdleSleep{50}, kMostIdleSleep{1000000};

// The sleep `text` asks for, in whole microseconds within [kLeastIdleSleep, kMostIdleSleep].
inline std::optional<us> parse_idle_sleep(const char* text) {
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < kLeastIdleSleep.count() || value > kMostIdleSleep.count())
    return std::nullopt;
  return us{value};
}

// REVERIE_IDLE_SLEEP_US, if set and valid (else one line on stderr naming what was expected).
inline std::optional<us> idle_sleep_override() {
  static const std::optional<us> sleep = []() -> std::optional<us> {
    const char* text = std::getenv(kIdleSleepEnv);
    if (text == nullptr) return std::nullopt;
    if (const auto value = parse_idle_sleep(text)) return value;
    std::fprintf(stderr, "reverie: %s=%s ignored: expected whole microseconds in [%lld, %lld]\n", kIdleSleepEnv,
                 text, static_cast<long long>(kLeastIdleSleep.count()),
                 static_cast<long long>(kMostIdleSleep.count()));
    return std::nullopt;
  }();
  return sleep;
}

// The idle server's longest sleep for a rank with `cores_per_rank` cores of its node.
inline us idle_max_sleep(double cores_per_rank) {
  if (const auto chosen = idle_sleep_override()) return *chosen;
  return cores_per_rank >= 1.0 ? kSpareCoreIdleSleep : kCrowdedIdleSleep;
}

// Kept for callers that do not know their node (closing): the override, else the longest.
inline us idle_max_sleep() { return idle_sleep_override().value_or(kDefaultIdleSleep); }

// ---- Background threads (common/backoff.h) ----

// Nice increment of the engine worker and the MPI server thread, relative to the process.
// Their wake-ups otherwise preempt the training thread on a busy core (each preemption
// costs it its cache, tens of us in a VM). Chosen on the dev box (4 ranks on 2 cores,
// benchmarks/overhead.py); harmless where cores are idle: a niced thread still runs at once.
inline constexpr int kBackgroundNice = 5;
// Timer slack of polling threads, in ns. Linux pads every sleep by the slack (50 us by
// default), which turned 20-100 us back-off sleeps into 70-150 us. Not machine-specific.
inline constexpr unsigned long kTimerSlackNs = 1000;
// Backoff's first sleep when a caller names none. Not measured on its own.
inline constexpr us kDefaultMinSleep{10};

// One line per waiting policy: the constants of a line are used together.

// ---- Rehearsal engine (engine/rehearsal_engine.*) ----
namespace engine {

// Worker and waiter yield this long before sleeping on the condition variable, so
// back-to-back draws skip a sleeping thread's wake-up (several us each way). Short: in
// training the next request comes a step later, and a yield loop on a box with fewer cores
// than threads takes that time from the step. Machine-specific (dev box).
inline const us kHotWait = hot_window(us{20});
// Requests closer together than this are back-to-back draws (a benchmark loop): only then
// does the worker stay hot after a draw. Training steps are milliseconds apart, so any
// value well below a step works. Not machine-specific.
inline constexpr us kBackToBack{1000};
// A caller that runs a draw this soon after requesting it (as get_remote_samples(r).wait()
// does) is left its next draws, and the worker is not woken for them: the wake-ups made a
// 28 x 602 KB draw take 3.7-5.3 ms instead of 1.7-1.9 ms (2 ranks on 2 cores, dev box,
// benchmarks/remote_fetch.py), the woken worker pushing the caller off its core: wake-ups
// cost more than their CPU time on a box with fewer cores than busy threads.
// Machine-specific in the cost it avoids, not in its meaning.
inline constexpr us kClaimWindow{50};
// A caller waiting for a parked draw polls it hot for kParkedSpin, then sleeps up to
// kParkedMaxSleep between polls (so the step it holds up loses little once the replies
// are in). Not measured on their own; machine-specific like every hot window.
inline const us kParkedSpin = hot_window(us{200}), kParkedMaxSleep{50};
// Local rows of a draw are copied in chunks of about this many bytes (one row at least),
// answering peers in between: a whole-draw copy made a peer's reply ~1.1 ms late (2 ranks
// on 2 cores). Small draws stay one chunk: a caller answering large requests between
// smaller chunks costs them more than it saves (64 x 12 KB: 72-76 -> 81-90 us with 256 KB
// chunks). Machine-specific (memory bandwidth, core count).
inline constexpr size_t kCopyChunkBytes = 1024 * 1024;
// An insert that finds its rows read-locked by open replies retries after sleeps doubling
// from kInsertMinSleep to kInsertMaxSleep, moving the replies on itself in between, without
// spinning: a 50 us yield window took
// ~0.9 ms of worker CPU per training step (4 ranks on 2 cores, dev box,
// benchmarks/overhead.py). Inserts are not urgent, so this holds on any machine.
inline constexpr us kInsertMinSleep{20}, kInsertMaxSleep{200};
// Without a transport (one process): draws of at most this many bytes run on the caller of
// request(), larger ones on the worker; queued inserts of at most this many bytes are
// applied by such a caller. With a transport the split is the transport's eager limit
// (derived at start-up). Not measured; a few cache-resident rows.
inline constexpr size_t kLocalInlineBytes = 16 * 1024;

}  // namespace engine

// ---- MPI transport (transport/mpi/*) ----
namespace mpi {

// A large payload known to be moving is polled hot for up to kHotSpin (each rendezvous
// chunk or single-copy read needs a progress call), then with sleeps of up to kHotMaxSleep
// in case the peer hangs. Not machine-specific: sleeping between progress calls stretched a
// 4 MB transfer from ~3 ms to ~50 ms (common/backoff.h).
inline constexpr us kHotSpin{50000}, kHotMaxSleep{100};
// While the requester is reading an open reply, the owner polls it hot this long: the next
// row follows. Not measured on its own.
inline const us kActiveSpin = hot_window(us{1000});
// A small (eager) reply is polled hot for kShortSpin, then with sleeps from kShortMinSleep
// to kShortMaxSleep: a hot peer answers within it, and polling small replies harder buys
// microseconds with CPU the training step needs (a requester that spun up to 50 ms for a
// late owner took ~12 ms of CPU per 250 ms step: 4 ranks on 2 cores, dev box,
// benchmarks/overhead.py). Machine-specific.
inline const us kShortSpin = hot_window(us{30}), kShortMinSleep{100}, kShortMaxSleep{400};
// The server's hot window after a request ("50 us hot"), then sleeps doubling up to the
// transport's idle sleep (idle_max_sleep, above; kIdleMaxSleep where the node is unknown).
// Machine-specific (dev box, 2 ranks on 2 cores).
inline const us kIdleSpin = hot_window(us{50}), kIdleMaxSleep = idle_max_sleep();
// A requester that asks again within kBurstGap of having read its last reply (or before
// that) draws back to back: the server stays hot for four times the gap (at least
// kBurstMinSpin), so the next request finds it awake, while requests one training step apart still let it sleep after
// kIdleSpin. Gaps are per requester: in training every peer's request comes within the
// ranks' skew of the others', and spinning between those took ~1 ms of CPU per step from
// the training thread (dev box). Not machine-specific in meaning (steps are ms apart).
inline constexpr us kBurstGap{1000}, kBurstMinSpin{200};
// First sleep of the server's idle loop after activity: from 1 ms rather than 100 us it
// took ~50 instead of ~90 us of CPU per 5 ms training step (2 ranks on 2 cores, dev box):
// small requests arriving mid-step are answered at the next step boundary anyway
// (serve_waiting), so the server need not probe often.
// Never above the idle sleep.
inline us server_min_sleep(us idle_sleep) { return std::min(us{1000}, idle_sleep); }
// First sleep while close() waits for the peers' barrier. Not measured on its own.
inline constexpr us kIdleMinSleep{100};
// Rows per hindexed_block payload message. MPICH reads a scattered send in place only
// while its flattened datatype fits the active-message header: 40 rows did, 44 or more fell
// back to a pipeline needing the sender's progress per chunk (seconds with a sleeping
// server). 32 keeps a margin; 12 KB rows, r = 28: one-way 28 us against 82 us as one message
// per row. Specific to MPICH 5.0.2 (its header size), not to the machine.
inline constexpr size_t kGatherRows = 32;
// Over shared memory, rows past the eager limit but at most this size are packed into one
// message when the library cannot read them in place (Open MPI's sm BTL): a copy costs
// about what the transfer does there, and one rendezvous per row cost more. Open MPI
// 5.0.11, 2 ranks all drawing 12 KB rows (benchmarks/remote_fetch.py): 7 rows 1.65-1.70x
// the raw exchange instead of 2.0-5.9x, 28 rows 2.3-2.85x instead of 2.9-3.3x. Not on the
// network path: there MPICH (UCX) drew 28 x 12 KB in 47 us packed against 38 us a row per
// message, and Open MPI's tcp BTL gained nothing. Larger rows move alone (one copy each).
inline constexpr size_t kPackRowBytes = 64 * 1024;
// Most eager-sized pieces a row past the eager limit is split into where the path splits
// rows (MPICH over UCX: a rendezvous per row is a handshake and a read by the receiver,
// each piece a copy in and out). Plain MPI over UCX's shared-memory transports, 2 ranks
// both drawing, a row's pieces of 4 KiB against a message per row: 12 KB rows 42 us
// against 58 (14 rows), 16 KB 45 against 60, 24 KB 45 against 54, 32 KB (8 pieces) 44
// against 48, 64 KB (16) 67 against 59; over libfabric's tcp provider and Open MPI's tcp
// BTL (64 KiB pieces) pieces lost at every size (2-core VM, 2026-12-07). 4 keeps the
// margin; the engine, 2 ranks, 28 x 12 KB: 1.57x the raw exchange instead of 1.80x
// (medians of 6; docs/benchmarks.md, "Eager pieces over UCX").
inline constexpr size_t kMostRowPieces = 4;
// Eager limit when the MPI library does not expose one through the tool interface, and the
// most any library's limit is trusted up to (shm_protocol()). The real limit is read at
// start-up (8191 bytes for MPICH: larger messages go by single-copy CMA reads).
inline constexpr size_t kFallbackEagerBytes = 4 * 1024, kMostEagerBytes = 64 * 1024;
// Forces the way a reply's rows travel on every path (transport/mpi/shm_protocol.h): auto
// (default), rows, packed or gathered. For libraries and fabrics this box cannot measure.
inline constexpr const char* kReplyWayEnv = "REVERIE_MPI_REPLY";

}  // namespace mpi

// ---- Thallium transport (transport/thallium/*) ----
namespace thallium {

// Receive blocks kept exposed for bulk transfers; the engine uses two (double buffering).
inline constexpr size_t kMaxExposedBlocks = 8;
// A reply is polled hot for kReplySpin, then with sleeps doubling from kReplyMinSleep to
// kReplyMaxSleep (a draw is prefetched a step ahead, so its latency is hidden; polling CPU
// is not): an older release's busy wait (margo_wait) competed with the progress
// thread that had to answer, lat_ratio 2.75-2.97 against 1.23-1.30 now
// (benchmarks/thallium_fetch.py, na+sm, dev box). Machine-specific.
inline const us kReplySpin = hot_window(us{30}), kReplyMinSleep{20}, kReplyMaxSleep{200};
// Draws starting within kBackToBack of the previous one's end (a benchmark, not a training
// loop) poll hot for up to kHotReplySpin. Not machine-specific.
inline constexpr us kBackToBack{1000}, kHotReplySpin{50000};
// Margo's busy-polling after each operation, in ms, unless REVERIE_THALLIUM_SPINDOWN_MS
// says otherwise. Spinning progress threads starved the requesting threads: 4-5 ms per
// request instead of ~40 us (2-core node). Machine-specific: raise it where cores are spare.
inline constexpr long kDefaultSpindownMs = 0;

}  // namespace thallium
}  // namespace reverie::tuning
