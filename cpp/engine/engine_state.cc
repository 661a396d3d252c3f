#include "engine/rehearsal_engine.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common/errors.h"
#include "common/tuning.h"
#include "engine/engine_timing.h"

// The rehearsal engine's planning state for checkpoints: quiesce and snapshot, restore.

namespace reverie {

using namespace engine_detail;
using namespace tuning::engine;

EngineState RehearsalEngine::quiesce_and_snapshot() {
  std::unique_lock lock(mu_);
  drive_parked_ = parked_draw() != nullptr;
  worker_cv_.notify_one();  // inserts queued without waking the worker
  const bool quiet = cv_.wait_for(lock, options_.timeout, [&] {
    const auto busy = [](const Draw& d) { return d.pending && !d.finished; };
    return queue_count_ == 0 && !applying_ && !busy(draws_[0]) && !busy(draws_[1]);
  });
  if (!quiet) throw TimeoutError("save: pending adds and draws did not finish within the timeout");
  return EngineState{select_rng_.state(), draw_rng_.state(), sizes_, pass_.state()};
}

void RehearsalEngine::restore(const EngineState& state) {
  if (!Rng::usable(state.select_rng)) throw std::invalid_argument("state: select_rng is all zero");
  if (!Rng::usable(state.draw_rng)) throw std::invalid_argument("state: draw_rng is all zero");
  if (const char* error = PassOrder::check(state.pass)) throw std::invalid_argument(std::string("state: ") + error);
  std::lock_guard lock(mu_);
  if (state.sizes.size() != sizes_.size())
    throw std::invalid_argument("state: sizes are for " + std::to_string(state.sizes.size()) + " ranks, not " +
                                std::to_string(sizes_.size()));
  select_rng_.set_state(state.select_rng);
  draw_rng_.set_state(state.draw_rng);
  sizes_ = state.sizes;
  pass_.set_state(state.pass);
  // The restored sizes count as heard now; what the server heard before is dropped.
  std::fill(full_.begin(), full_.end(), false);
  std::fill(growing_.begin(), growing_.end(), true);  // confirmed by the next draw
  std::fill(heard_at_.begin(), heard_at_.end(), draws_begun_);
  if (transport_) {
    const PeerSizes& heard = transport_->peer_sizes();
    seen_changes_ = heard.changes();
    for (int p = 0; p < world_size(); ++p) seen_stamp_[p] = heard.get(p).stamp;
  }
}

}  // namespace reverie
