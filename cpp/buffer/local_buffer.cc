#include "buffer/local_buffer.h"

#include <stdexcept>

#include "policy/candidate_selection.h"
#include "sampling/uniform_subset.h"

namespace reverie {
namespace {

// The policy checks the same, but only after the arena is allocated: a bad capacity must
// fail before gigabytes are allocated and zeroed.
const BufferOptions& validated(const BufferOptions& options) {
  ReservoirPolicy::check_options(options.capacity, options.num_classes);
  return options;
}

}  // namespace

LocalBuffer::LocalBuffer(SampleLayout layout, BufferOptions options)
    : arena_(std::move(layout), validated(options).capacity),
      policy_(options.capacity, options.num_classes),
      candidates_(options.candidates),
      passes_(options.passes),
      insert_rng_(options.seed),
      sample_rng_(options.seed ^ 0x5deece66dULL),
      sample_scratch_(options.capacity),
      sample_marks_(options.capacity, 0) {}

size_t LocalBuffer::nbytes() const {
  return arena_.nbytes() + policy_.capacity() * (2 * sizeof(uint32_t) + sizeof(uint64_t) + 1);
}

size_t LocalBuffer::size() const {
  std::shared_lock lock(mu_);
  return policy_.size();
}

std::string LocalBuffer::check_labels(const int64_t* labels, size_t n) const {
  for (size_t i = 0; i < n; ++i) {
    if (policy_.accepts(labels[i])) continue;
    std::string expected = policy_.adaptive() ? "labels >= 0"
                                              : "labels in [0, " + std::to_string(*policy_.num_classes()) + ")";
    return "labels: expected " + expected + ", got " + std::to_string(labels[i]) + " at index " +
           std::to_string(i);
  }
  return {};
}

size_t LocalBuffer::add(const ConstColumns& rows) {
  check_rows(rows);
  std::unique_lock lock(mu_);
  return insert_locked(rows);
}

std::optional<size_t> LocalBuffer::try_add(const ConstColumns& rows) {
  check_rows(rows);
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return std::nullopt;
  return insert_locked(rows);
}

void LocalBuffer::check_rows(const ConstColumns& rows) const {
  const auto* labels = reinterpret_cast<const int64_t*>(rows.base[layout().label_column()]);
  if (auto error = check_labels(labels, rows.rows); !error.empty()) throw std::invalid_argument(error);
}

size_t LocalBuffer::insert_locked(const ConstColumns& rows) {
  const auto* labels = reinterpret_cast<const int64_t*>(rows.base[layout().label_column()]);
  size_t stored = 0;
  select_candidates(rows.rows, candidates_, insert_rng_, [&](uint64_t i) {
    if (auto slot = policy_.offer(labels[i], insert_rng_)) {
      arena_.copy_in(*slot, rows, i);
      ++stored;
    }
  });
  return stored;
}

size_t LocalBuffer::sample(uint32_t r, const Columns& out) {
  std::shared_lock lock(mu_);
  std::lock_guard sample_lock(sample_mu_);
  const size_t k = passes_ ? pass_.next(policy_.size(), r, sample_rng_, sample_scratch_.data())
                           : uniform_subset(policy_.size(), r, sample_rng_, sample_scratch_.data(), sample_marks_.data());
  arena_.copy_out_rows(sample_scratch_.data(), k, out, 0);
  return k;
}

bool LocalBuffer::gather(const uint32_t* slots, size_t k, const Columns& out, size_t first_row) const {
  std::shared_lock lock(mu_);
  for (size_t i = 0; i < k; ++i)
    if (slots[i] >= policy_.size()) return false;
  arena_.copy_out_rows(slots, k, out, first_row);
  return true;
}

void LocalBuffer::read(const std::function<void(const Columns&, size_t)>& fn) const {
  const ReadAccess access = read_access();
  fn(access.columns, access.size);
}

LocalBuffer::ReadAccess LocalBuffer::read_access() const {
  std::shared_lock lock(mu_);
  const size_t size = policy_.size();
  return ReadAccess{std::move(lock), arena_.columns(), size};
}

std::vector<std::pair<int64_t, size_t>> LocalBuffer::class_counts() const {
  std::shared_lock lock(mu_);
  std::vector<std::pair<int64_t, size_t>> counts;
  for (const auto& c : policy_.classes())
    if (c.seen > 0 || !c.members.empty()) counts.emplace_back(c.label, c.members.size());
  return counts;
}

std::optional<LocalBuffer::State> LocalBuffer::snapshot(const Columns* rows) const {
  std::shared_lock lock(mu_);
  std::lock_guard sample_lock(sample_mu_);
  if (rows != nullptr) {
    if (rows->rows != policy_.size()) return std::nullopt;
    for (size_t slot = 0; slot < rows->rows; ++slot) arena_.copy_out(slot, *rows, slot);
  }
  return State{policy_.classes(), insert_rng_.state(), sample_rng_.state(), policy_.saturated(), pass_.state()};
}

ReservoirPolicy LocalBuffer::checked_policy(const State& state, const int64_t* labels, size_t n, size_t capacity,
                                            std::optional<uint32_t> num_classes) {
  if (!Rng::usable(state.insert_rng)) throw std::invalid_argument("state: insert_rng is all zero");
  if (!Rng::usable(state.sample_rng)) throw std::invalid_argument("state: sample_rng is all zero");
  if (const char* error = PassOrder::check(state.pass)) throw std::invalid_argument(std::string("state: ") + error);
  ReservoirPolicy policy(capacity, num_classes);
  policy.restore(state.classes, state.saturated);
  if (n != policy.size()) throw std::invalid_argument("state: row count does not match the class members");
  for (const auto& c : state.classes)
    for (uint32_t slot : c.members)
      if (labels[slot] != c.label) throw std::invalid_argument("state: a sample's label does not match its class");
  return policy;
}

std::string LocalBuffer::check_state(const State& state, const int64_t* labels, size_t n, size_t capacity,
                                     std::optional<uint32_t> num_classes) {
  try {
    ReservoirPolicy::check_options(capacity, num_classes);
    checked_policy(state, labels, n, capacity, num_classes);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

void LocalBuffer::restore(const State& state, const ConstColumns& rows) {
  const auto* labels = reinterpret_cast<const int64_t*>(rows.base[layout().label_column()]);
  ReservoirPolicy policy = checked_policy(state, labels, rows.rows, policy_.capacity(), policy_.num_classes());
  std::unique_lock lock(mu_);
  std::lock_guard sample_lock(sample_mu_);
  policy_ = std::move(policy);
  for (size_t i = 0; i < rows.rows; ++i) arena_.copy_in(i, rows, i);
  insert_rng_.set_state(state.insert_rng);
  sample_rng_.set_state(state.sample_rng);
  pass_.set_state(state.pass);
}

}  // namespace reverie
