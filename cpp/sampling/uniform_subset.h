#pragma once
// Uniform draws of k distinct integers from [0, n) (Floyd's algorithm, then shuffled).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/rng.h"

namespace reverie {

// Writes min(k, n) distinct values of [0, n) to out, in random order; returns how many.
// `marks` is caller-owned scratch of at least n bytes, all zero on entry and on return;
// pass nullptr to use an O(k^2) membership scan instead (fine for k up to a few hundred).
uint64_t uniform_subset(uint64_t n, uint64_t k, Rng& rng, uint64_t* out, uint8_t* marks);

}  // namespace reverie
