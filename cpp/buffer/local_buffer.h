#pragma once
// One rank's rehearsal buffer: slot arena + reservoir policy + locks. Thread-safe.
// Inserts take the writer lock; reads (local draws, serving peers) share the reader lock.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/columns.h"
#include "common/rng.h"
#include "policy/reservoir_policy.h"
#include "sampling/pass_order.h"
#include "store/slot_arena.h"

namespace reverie {

struct BufferOptions {
  size_t capacity = 0;
  std::optional<uint32_t> num_classes;  // nullopt: adaptive quotas
  uint32_t candidates = 0;              // per add() call; 0: offer every row
  uint64_t seed = 0;
  bool passes = false;  // sample() walks passes over the slots (PassOrder), not independent draws
};

class LocalBuffer {
 public:
  LocalBuffer(SampleLayout layout, BufferOptions options);

  const SampleLayout& layout() const { return arena_.layout(); }
  size_t capacity() const { return arena_.capacity(); }
  size_t nbytes() const;
  size_t size() const;

  // Empty string when every label of rows[0, n) may be offered, else what is wrong.
  std::string check_labels(const int64_t* labels, size_t n) const;

  // Offers `candidates` uniformly chosen rows of `rows` (all when 0 or >= rows.rows).
  // Throws std::invalid_argument (changing nothing) when a label is not accepted.
  // Returns how many were stored.
  size_t add(const ConstColumns& rows);
  // As add(), unless the writer lock is taken (peers being served): then nullopt, nothing done.
  std::optional<size_t> try_add(const ConstColumns& rows);

  // Copies min(r, size()) distinct slots, uniform without replacement, to rows [0, k) of
  // `out` (with BufferOptions::passes, the next run of the current pass). Returns k.
  size_t sample(uint32_t r, const Columns& out);

  // Copies slots[0, k) to rows [first_row, first_row + k) of `out`. Returns false,
  // copying nothing, when a slot is not in [0, size()).
  bool gather(const uint32_t* slots, size_t k, const Columns& out, size_t first_row) const;

  // Runs fn(arena columns, size) under the reader lock (used to expose slots to peers).
  void read(const std::function<void(const Columns&, size_t)>& fn) const;
  // The arena and its size under the reader lock, held until `lock` is released: for rows
  // that a peer reads after this call returns (an open reply).
  struct ReadAccess {
    std::shared_lock<std::shared_mutex> lock;
    Columns columns;
    size_t size = 0;
  };
  ReadAccess read_access() const;

  std::vector<std::pair<int64_t, size_t>> class_counts() const;

  struct State {
    std::vector<ReservoirPolicy::ClassState> classes;
    Rng::State insert_rng{};
    Rng::State sample_rng{};
    bool saturated = false;  // adaptive: more labels seen than slots (ReservoirPolicy::saturated)
    PassOrder::State pass{};  // BufferOptions::passes: where sample() is in its pass
  };
  // Policy and RNG state, and (when `rows` is given) a copy of slots [0, size) into it,
  // taken under one lock so contents and counters agree. nullopt when size() != rows->rows.
  std::optional<State> snapshot(const Columns* rows) const;
  State state() const { return *snapshot(nullptr); }
  // Replaces contents, policy and RNG state; `rows` holds slots [0, size) in order.
  // Throws std::invalid_argument, changing nothing, when check_state() would object.
  void restore(const State& state, const ConstColumns& rows);
  // Empty when `state` with row labels[0, n) could be restored into a buffer with these
  // options, else what is wrong: restore()'s checks without allocating the slots.
  static std::string check_state(const State& state, const int64_t* labels, size_t n, size_t capacity,
                                 std::optional<uint32_t> num_classes);

 private:
  // Throws std::invalid_argument when a label is not accepted (before any lock is taken).
  void check_rows(const ConstColumns& rows) const;
  static ReservoirPolicy checked_policy(const State& state, const int64_t* labels, size_t n, size_t capacity,
                                        std::optional<uint32_t> num_classes);
  // Offers the candidates of `rows` to the policy and copies the accepted ones (mu_ held).
  size_t insert_locked(const ConstColumns& rows);

  SlotArena arena_;
  ReservoirPolicy policy_;
  uint32_t candidates_;
  bool passes_;
  PassOrder pass_;
  Rng insert_rng_;
  Rng sample_rng_;
  std::vector<uint64_t> sample_scratch_;
  std::vector<uint8_t> sample_marks_;

  mutable std::shared_mutex mu_;
  mutable std::mutex sample_mu_;  // guards sample_rng_ and the scratch under a shared mu_
};

}  // namespace reverie
