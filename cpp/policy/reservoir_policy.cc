#include "policy/reservoir_policy.h"

#include <stdexcept>
#include <string>

namespace reverie {

ReservoirPolicy::ReservoirPolicy(size_t capacity, std::optional<uint32_t> num_classes)
    : capacity_(capacity), fixed_classes_(num_classes) {
  check_options(capacity, num_classes);
  slot_class_.resize(capacity);
  slot_position_.resize(capacity);
  if (!num_classes) return;
  classes_.resize(*num_classes);
  for (uint32_t c = 0; c < *num_classes; ++c) {
    classes_[c].label = c;
    classes_[c].members.reserve(quota());
  }
}

void ReservoirPolicy::check_options(size_t capacity, std::optional<uint32_t> num_classes) {
  if (capacity == 0) throw std::invalid_argument("capacity: expected at least 1");
  if (capacity >= UINT32_MAX) throw std::invalid_argument("capacity: expected fewer than 2^32 - 1 slots");
  if (!num_classes) return;
  if (*num_classes == 0) throw std::invalid_argument("num_classes: expected at least 1");
  if (capacity < *num_classes)
    throw std::invalid_argument("capacity: expected at least num_classes (" + std::to_string(*num_classes) +
                                ") slots, got " + std::to_string(capacity));
}

bool ReservoirPolicy::accepts(int64_t label) const {
  if (label < 0) return false;
  return adaptive() || label < static_cast<int64_t>(*fixed_classes_);
}

size_t ReservoirPolicy::quota() const {
  if (fixed_classes_) return capacity_ / *fixed_classes_;
  return classes_.empty() ? capacity_ : capacity_ / classes_.size();
}

uint32_t ReservoirPolicy::class_index(int64_t label) {
  if (fixed_classes_) return static_cast<uint32_t>(label);
  auto [it, inserted] = index_of_label_.try_emplace(label, static_cast<uint32_t>(classes_.size()));
  if (inserted) classes_.push_back(ClassState{label, 0, {}});
  return it->second;
}

std::optional<uint32_t> ReservoirPolicy::offer(int64_t label, Rng& rng) {
  const uint32_t cls = class_index(label);
  ClassState& state = classes_[cls];
  state.seen += 1;
  if (state.members.size() < quota()) {
    const uint32_t slot = size_ < capacity_ ? static_cast<uint32_t>(size_++) : evict_for_new_member(rng);
    attach(slot, cls);
    return slot;
  }
  // Reservoir step over the class's current members: keeps them a uniform sample.
  const uint64_t j = rng.below(state.seen);
  if (j < state.members.size()) return state.members[j];
  return std::nullopt;
}

uint32_t ReservoirPolicy::evict_for_new_member(Rng& rng) {
  const size_t q = quota();
  size_t victim = classes_.size();
  size_t excess = 0;
  for (size_t c = 0; c < classes_.size(); ++c) {
    const size_t n = classes_[c].members.size();
    if (n > q && n - q > excess) {
      excess = n - q;
      victim = c;
    }
  }
  if (victim == classes_.size()) throw std::logic_error("reservoir: full buffer with no class over quota");
  const auto& members = classes_[victim].members;
  const uint32_t slot = members[rng.below(members.size())];
  detach(slot);
  return slot;
}

void ReservoirPolicy::attach(uint32_t slot, uint32_t cls) {
  slot_class_[slot] = cls;
  slot_position_[slot] = static_cast<uint32_t>(classes_[cls].members.size());
  classes_[cls].members.push_back(slot);
}

void ReservoirPolicy::detach(uint32_t slot) {
  auto& members = classes_[slot_class_[slot]].members;
  const uint32_t pos = slot_position_[slot];
  members[pos] = members.back();
  slot_position_[members[pos]] = pos;
  members.pop_back();
}

void ReservoirPolicy::restore(std::vector<ClassState> classes) {
  if (fixed_classes_ && classes.size() != *fixed_classes_)
    throw std::invalid_argument("state: class count does not match num_classes");
  size_t total = 0;
  for (const auto& c : classes) total += c.members.size();
  if (total > capacity_) throw std::invalid_argument("state: more members than capacity");
  std::vector<uint8_t> used(capacity_, 0);
  for (const auto& c : classes)
    for (uint32_t s : c.members) {
      if (s >= total || used[s]) throw std::invalid_argument("state: slots must be distinct and in [0, size)");
      used[s] = 1;
    }
  classes_ = std::move(classes);
  index_of_label_.clear();
  size_ = total;
  for (uint32_t c = 0; c < classes_.size(); ++c) {
    if (!fixed_classes_) index_of_label_[classes_[c].label] = c;
    for (uint32_t p = 0; p < classes_[c].members.size(); ++p) {
      slot_class_[classes_[c].members[p]] = c;
      slot_position_[classes_[c].members[p]] = p;
    }
  }
}

}  // namespace reverie
