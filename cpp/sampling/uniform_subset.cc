#include "sampling/uniform_subset.h"

#include <algorithm>
#include <utility>

namespace reverie {

uint64_t uniform_subset(uint64_t n, uint64_t k, Rng& rng, uint64_t* out, uint8_t* marks) {
  k = std::min(k, n);
  uint64_t taken = 0;
  auto contains = [&](uint64_t v) {
    if (marks != nullptr) return marks[v] != 0;
    return std::find(out, out + taken, v) != out + taken;
  };
  for (uint64_t j = n - k; j < n; ++j) {
    uint64_t t = rng.below(j + 1);
    if (contains(t)) t = j;
    out[taken++] = t;
    if (marks != nullptr) marks[t] = 1;
  }
  for (uint64_t i = k; i > 1; --i) std::swap(out[i - 1], out[rng.below(i)]);
  if (marks != nullptr)
    for (uint64_t i = 0; i < k; ++i) marks[out[i]] = 0;
  return k;
}

}  // namespace reverie
