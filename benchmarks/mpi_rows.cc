// The floor of a draw over plain MPI: what the library itself takes to move r rows that sit
// at random slots of a buffer, as a draw must, against the same bytes sent contiguously (the
// raw exchange of benchmarks/remote_fetch.py). Run by remote_fetch.py beside the engine, under
// the same mpiexec and path (shared memory or network), so the table can say how much of a
// draw's time is the engine and how much the library's cost of scattered rows.
//
//   mpi_rows <row_bytes> <capacity> <seconds per case> <all|one> <r>...
//
// all: every rank asks every peer for an even share of r rows and serves the peers' requests
//      in one thread (lockstep, like remote_fetch.py's raw exchange); its own share is a
//      local copy from random slots. one: rank 0 asks the others, which only serve.
// Owners answer each request five ways: contig (one message from a buffer of one draw,
// which stays in the caches: the raw exchange), and four ways of sending rows from random
// slots of a buffer of `capacity` rows, as the engine does: rows (a message per row),
// packed (the rows copied into one message first), gathered (one message whose
// hindexed_block datatype names the slots, which MPICH reads in place over shared memory)
// and split (each row in pieces of at most kPieceBytes, the engine's eager limit where the
// library names none; only for rows of 2 to kMostPieces pieces, else null).
// Prints, on rank 0, one JSON line per r:
//   {"r": .., "contig_us": .., "rows_us": .., "packed_us": .., "gathered_us": .., "split_us": ..}
// (medians per rank, averaged over the requesting ranks).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <sys/mman.h>

#include "common/tuning.h"

namespace {

constexpr int kAskTag = 1, kRowTag = 2;
enum class Mode { kContig, kRows, kPacked, kGathered, kSplit };
// The engine's: its eager limit where the library names none, and most pieces a row.
constexpr size_t kPieceBytes = reverie::tuning::mpi::kFallbackEagerBytes;
constexpr size_t kMostPieces = reverie::tuning::mpi::kMostRowPieces;

struct Setup {
  size_t row_bytes = 0;
  size_t capacity = 0;
  double seconds = 0.3;
  bool all = true;
};

// `count` rows of `row_bytes`, touched once; like the engine's buffer, 2 MiB aligned and
// asked for transparent huge pages (store/aligned_block.h), so both read memory alike.
class Rows {
 public:
  Rows() = default;
  Rows(size_t count, size_t row_bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = std::max<size_t>(kHuge, (count * row_bytes + kHuge - 1) / kHuge * kHuge);
    data_.reset(static_cast<char*>(std::aligned_alloc(kHuge, bytes)));
    if (!data_) throw std::bad_alloc();
    madvise(data_.get(), bytes, MADV_HUGEPAGE);
    std::memset(data_.get(), 1, bytes);
  }
  char* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
};

// Owner i's share of r split over n owners as evenly as they allow, the remainder rotating
// with `shift`.
int share_of(int i, int n, int r, int shift) { return r / n + (((i - shift) % n + n) % n < r % n ? 1 : 0); }

class Exchange {
 public:
  Exchange(const Setup& setup, int r) : s_(setup), r_(r), me_(rank()), rng_(7 + me_) {
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // The ranks a requester takes rows from: all (its own share is a local copy), or with
    // one requester the others.
    if (s_.all || me_ == 0)
      for (int p = 0; p < size_; ++p)
        if (s_.all || p != 0) owners_.push_back(p);
    store_ = Rows(s_.capacity, s_.row_bytes);
    hot_ = Rows(r, s_.row_bytes);
    packed_ = Rows(r, s_.row_bytes);
    dest_ = Rows(r, s_.row_bytes);
    asks_.resize(owners_.size());
    requests_.reserve(4 * (r + size_));
  }

  static int rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  }

  // Whether the split way applies: rows of 2 to kMostPieces pieces, as the engine splits.
  bool splits() const { return pieces() >= 2 && pieces() <= kMostPieces; }

  // One draw (all) or one pull by rank 0 (one); returns its seconds on a requester, else -1.
  double step(Mode mode, int call) {
    const auto t0 = std::chrono::steady_clock::now();
    requests_.clear();
    ask(mode, call + me_);
    if (s_.all) {
      for (int p = 0; p < size_; ++p)
        if (p != me_) serve(mode, p);
    } else if (me_ != 0) {
      serve(mode, 0);
    }
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return owners_.empty() ? -1.0 : dt;
  }

 private:
  void ask(Mode mode, int shift) {
    const int owners = static_cast<int>(owners_.size());
    size_t row = 0;
    for (int i = 0; i < owners; ++i) {
      const int n = share_of(i, owners, r_, shift);
      if (owners_[i] == me_) {
        copy_rows(dest_.data() + row * s_.row_bytes, n);
      } else {
        for (const auto& [offset, bytes] : cuts(mode, n)) {
          requests_.emplace_back();
          MPI_Irecv(dest_.data() + row * s_.row_bytes + offset, static_cast<int>(bytes), MPI_BYTE, owners_[i],
                    kRowTag, MPI_COMM_WORLD, &requests_.back());
        }
        asks_[i] = n;
        requests_.emplace_back();
        MPI_Isend(&asks_[i], 1, MPI_INT, owners_[i], kAskTag, MPI_COMM_WORLD, &requests_.back());
      }
      row += n;
    }
  }

  // (offset, bytes) of each message of a share of n rows: one message, or (rows, split)
  // each row's pieces.
  std::vector<std::pair<size_t, size_t>> cuts(Mode mode, int n) const {
    const size_t rb = s_.row_bytes;
    std::vector<std::pair<size_t, size_t>> out;
    if (mode != Mode::kRows && mode != Mode::kSplit) {
      if (n > 0) out.emplace_back(0, n * rb);
      return out;
    }
    const size_t piece = piece_bytes(mode);
    for (int k = 0; k < n; ++k)
      for (size_t at = 0; at < rb; at += piece) out.emplace_back(k * rb + at, std::min(piece, rb - at));
    return out;
  }

  void serve(Mode mode, int peer) {
    int n = 0;
    MPI_Recv(&n, 1, MPI_INT, peer, kAskTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (n == 0) return;
    const int bytes = static_cast<int>(s_.row_bytes);
    if (mode == Mode::kContig) {
      requests_.emplace_back();
      MPI_Isend(hot_.data(), n * bytes, MPI_BYTE, peer, kRowTag, MPI_COMM_WORLD, &requests_.back());
    } else if (mode == Mode::kRows || mode == Mode::kSplit) {
      const size_t piece = piece_bytes(mode);
      for (int k = 0; k < n; ++k) {
        const char* row = store_.data() + slot() * s_.row_bytes;
        for (size_t at = 0; at < s_.row_bytes; at += piece) {
          requests_.emplace_back();
          MPI_Isend(row + at, static_cast<int>(std::min(piece, s_.row_bytes - at)), MPI_BYTE, peer, kRowTag,
                    MPI_COMM_WORLD, &requests_.back());
        }
      }
    } else if (mode == Mode::kGathered) {
      displs_.resize(n);
      for (int k = 0; k < n; ++k) displs_[k] = static_cast<MPI_Aint>(slot() * s_.row_bytes);
      MPI_Datatype type = MPI_DATATYPE_NULL;
      MPI_Type_create_hindexed_block(n, bytes, displs_.data(), MPI_BYTE, &type);
      MPI_Type_commit(&type);
      requests_.emplace_back();
      MPI_Isend(store_.data(), 1, type, peer, kRowTag, MPI_COMM_WORLD, &requests_.back());
      MPI_Type_free(&type);  // the open send keeps what it needs
    } else {
      copy_rows(packed_.data(), n);
      requests_.emplace_back();
      MPI_Isend(packed_.data(), n * bytes, MPI_BYTE, peer, kRowTag, MPI_COMM_WORLD, &requests_.back());
    }
  }

  // n rows from random slots into `to` (a draw's local share, or a packed reply).
  void copy_rows(char* to, int n) {
    for (int k = 0; k < n; ++k) std::memcpy(to + k * s_.row_bytes, store_.data() + slot() * s_.row_bytes, s_.row_bytes);
  }

  // A row's pieces where split (as the engine splits them), else the row.
  size_t pieces() const { return (s_.row_bytes + kPieceBytes - 1) / kPieceBytes; }
  size_t piece_bytes(Mode mode) const {
    return mode == Mode::kSplit ? (s_.row_bytes + pieces() - 1) / pieces() : s_.row_bytes;
  }

  size_t slot() { return std::uniform_int_distribution<size_t>(0, s_.capacity - 1)(rng_); }

  Setup s_;
  int r_;
  int me_;
  int size_ = 1;
  std::vector<int> owners_;  // in rank order; empty on a rank that only serves
  std::mt19937_64 rng_;
  Rows store_, hot_, packed_, dest_;
  std::vector<int> asks_;
  std::vector<MPI_Aint> displs_;
  std::vector<MPI_Request> requests_;
};

// Median seconds of `mode` on this rank (-1 where it does not request), for about s.seconds.
double measure(Exchange& ex, Mode mode, const Setup& s) {
  std::vector<double> times;
  for (int i = 0; i < 20; ++i) ex.step(mode, i);  // warm-up
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(s.seconds);
  int go = 1;
  for (int i = 0; go; ++i) {
    const double t = ex.step(mode, i);
    if (t >= 0) times.push_back(t);
    if (i % 64 == 63) {  // every rank stops at the same step
      int local = std::chrono::steady_clock::now() < until ? 1 : 0;
      MPI_Allreduce(&local, &go, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    }
  }
  if (times.empty()) return -1.0;
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

// The mean over the ranks that requested.
double mean_over_requesters(double median) {
  double sum[2] = {median >= 0 ? median : 0.0, median >= 0 ? 1.0 : 0.0}, total[2] = {0, 0};
  MPI_Allreduce(sum, total, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total[1] > 0 ? total[0] / total[1] : -1.0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);  // as the engine needs
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 6 || size < 2) {
    if (Exchange::rank() == 0)
      std::fprintf(stderr, "usage: mpiexec -n N (N >= 2) %s <row_bytes> <capacity> <seconds> <all|one> <r>...\n",
                   argv[0]);
    MPI_Finalize();
    return 2;
  }
  Setup s;
  s.row_bytes = std::stoul(argv[1]);
  s.capacity = std::stoul(argv[2]);
  s.seconds = std::stod(argv[3]);
  s.all = std::string(argv[4]) == "all";
  for (int a = 5; a < argc; ++a) {
    const int r = std::stoi(argv[a]);
    Exchange ex(s, r);
    double us[4];
    for (Mode m : {Mode::kContig, Mode::kRows, Mode::kPacked, Mode::kGathered})
      us[static_cast<int>(m)] = mean_over_requesters(measure(ex, m, s)) * 1e6;
    char split[32] = "null";
    if (ex.splits())
      std::snprintf(split, sizeof split, "%.2f", mean_over_requesters(measure(ex, Mode::kSplit, s)) * 1e6);
    if (Exchange::rank() == 0)
      std::printf(
          "{\"r\": %d, \"contig_us\": %.2f, \"rows_us\": %.2f, \"packed_us\": %.2f, \"gathered_us\": %.2f, "
          "\"split_us\": %s}\n",
          r, us[0], us[1], us[2], us[3], split);
  }
  std::fflush(stdout);
  MPI_Finalize();
  return 0;
}
