#pragma once
// Draws that walk passes over [0, n): successive draws take consecutive runs of one random
// order of [0, n), so every index is drawn once per pass before any is drawn again, as an
// epoch over a replay memory does. Each draw is still a uniform k-subset of [0, n) (its
// run of a random order); what changes is that successive draws are no longer independent.
//
// The order is a keyed bijection, a 4-round Feistel network over the smallest power of 4
// that holds n, restricted to [0, n) by cycle walking: a pass needs no memory beyond its
// key, its position and n (a checkpoint saves those three words). A new pass, with a new
// key from the caller's generator, starts when n differs from the pass's n or when fewer
// than k indices are left in it (those are skipped: by symmetry every index is equally
// likely to be among them, so each draw stays uniform).
#include <algorithm>
#include <cstdint>

#include "common/rng.h"

namespace reverie {

class PassOrder {
 public:
  struct State {
    uint64_t key = 0;
    uint64_t position = 0;  // indices of this pass already drawn
    uint64_t n = 0;         // the domain this pass was made for; 0: no pass yet
  };

  // Writes min(k, n) distinct values of [0, n) to out; returns how many.
  uint64_t next(uint64_t n, uint64_t k, Rng& rng, uint64_t* out) {
    k = std::min(k, n);
    if (k == 0) return 0;
    if (n != state_.n || n - state_.position < k) start(n, rng);
    for (uint64_t i = 0; i < k; ++i) out[i] = at(state_.position + i);
    state_.position += k;
    return k;
  }

  const State& state() const { return state_; }
  // Empty when `state` could be set for draws, else what is wrong.
  static const char* check(const State& state) {
    if (state.position > state.n) return "pass: position is past the end of its pass";
    return nullptr;
  }
  void set_state(const State& state) {
    state_ = state;
    half_bits_ = half_bits(state.n);
  }

 private:
  void start(uint64_t n, Rng& rng) {
    state_ = State{rng.next(), 0, n};
    half_bits_ = half_bits(n);
  }

  // Bits of each Feistel half: 4^half_bits >= n.
  static unsigned half_bits(uint64_t n) {
    unsigned bits = 1;
    while (bits < 32 && (uint64_t{1} << (2 * bits)) < n) ++bits;
    return bits;
  }

  // The position-th index of this pass's order.
  uint64_t at(uint64_t position) const {
    uint64_t v = permute(position);
    while (v >= state_.n) v = permute(v);  // cycle walking: ends within [0, n)
    return v;
  }

  uint64_t permute(uint64_t v) const {
    const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
    uint64_t left = v >> half_bits_, right = v & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t mixed = left ^ (mix(right ^ state_.key ^ (round * 0x9e3779b97f4a7c15ULL)) & mask);
      left = right;
      right = mixed;
    }
    return (left << half_bits_) | right;
  }

  static uint64_t mix(uint64_t z) {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  State state_{};
  unsigned half_bits_ = 1;
};

}  // namespace reverie
