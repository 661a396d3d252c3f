#include "sampling/draw_plan.h"

#include <algorithm>

#include "sampling/uniform_subset.h"

namespace reverie {

void DrawPlan::reserve(size_t max_draws) {
  global_.reserve(max_draws);
  slots_.reserve(max_draws);
}

void DrawPlan::plan(const std::vector<uint64_t>& counts, uint32_t r, Rng& rng, PassOrder* pass) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  global_.resize(std::min<uint64_t>(r, total));
  if (pass != nullptr)
    pass->next(total, global_.size(), rng, global_.data());
  else
    uniform_subset(total, global_.size(), rng, global_.data(), nullptr);
  std::sort(global_.begin(), global_.end());

  offset_.assign(counts.size() + 1, 0);
  slots_.resize(global_.size());
  size_t next = 0;
  uint64_t rank_start = 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    offset_[p] = next;
    const uint64_t rank_end = rank_start + counts[p];
    while (next < global_.size() && global_[next] < rank_end) {
      slots_[next] = static_cast<uint32_t>(global_[next] - rank_start);
      ++next;
    }
    rank_start = rank_end;
  }
  offset_[counts.size()] = next;
}

}  // namespace reverie
