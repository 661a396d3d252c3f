#pragma once
// Chooses which rows of a minibatch are offered to the buffer: `wanted` of `n`, uniformly,
// in row order (selection sampling, no scratch memory).
#include <cstddef>
#include <cstdint>

#include "common/rng.h"

namespace reverie {

template <typename OnRow>
void select_candidates(uint64_t n, uint64_t wanted, Rng& rng, OnRow&& on_row) {
  if (wanted == 0 || wanted > n) wanted = n;
  for (uint64_t i = 0; i < n && wanted > 0; ++i) {
    if (rng.below(n - i) >= wanted) continue;
    --wanted;
    on_row(i);
  }
}

}  // namespace reverie
