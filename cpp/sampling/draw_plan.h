#pragma once
// Global plan for one draw: r samples uniformly without replacement from the union of all
// ranks' buffers, so a rank holding n_j of N samples supplies each draw with probability
// n_j / N. The plan lists, per rank, which of its slots to fetch and where they land.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "sampling/pass_order.h"

namespace reverie {

class DrawPlan {
 public:
  explicit DrawPlan(size_t max_draws = 0) { reserve(max_draws); }

  void reserve(size_t max_draws);

  // Plans min(r, sum(counts)) draws. Allocation-free once reserved for r and counts.size().
  // With `pass`, the draw is the next run of its pass over the union (see PassOrder).
  void plan(const std::vector<uint64_t>& counts, uint32_t r, Rng& rng, PassOrder* pass = nullptr);

  size_t total() const { return slots_.size(); }
  size_t num_ranks() const { return offset_.empty() ? 0 : offset_.size() - 1; }
  // Rank p's slots are slots()[offset(p) .. offset(p + 1)); its rows land at the same rows.
  size_t offset(size_t rank) const { return offset_[rank]; }
  size_t count(size_t rank) const { return offset_[rank + 1] - offset_[rank]; }
  const std::vector<uint32_t>& slots() const { return slots_; }

 private:
  std::vector<uint64_t> global_;
  std::vector<uint32_t> slots_;
  std::vector<size_t> offset_;
};

}  // namespace reverie
