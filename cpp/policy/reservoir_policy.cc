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
  if (saturated_) return 0;
  return classes_.empty() ? capacity_ : capacity_ / classes_.size();
}

std::optional<uint32_t> ReservoirPolicy::class_index(int64_t label) {
  if (fixed_classes_) return static_cast<uint32_t>(label);
  if (auto it = index_of_label_.find(label); it != index_of_label_.end()) return it->second;
  if (classes_.size() >= capacity_) {
    saturated_ = true;  // quota 0 from now on: this label could never be stored
    return std::nullopt;
  }
  index_of_label_.emplace(label, static_cast<uint32_t>(classes_.size()));
  classes_.push_back(ClassState{label, 0, {}});
  return static_cast<uint32_t>(classes_.size() - 1);
}

std::optional<uint32_t> ReservoirPolicy::offer(int64_t label, Rng& rng) {
  const auto index = class_index(label);
  if (!index) return std::nullopt;
  const uint32_t cls = *index;
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

void ReservoirPolicy::check_restorable(const std::vector<ClassState>& classes, bool saturated) const {
  const auto fail = [](const std::string& what) { throw std::invalid_argument("state: " + what); };
  if (fixed_classes_ && classes.size() != *fixed_classes_)
    fail("class count " + std::to_string(classes.size()) + " does not match num_classes " +
         std::to_string(*fixed_classes_));
  if (fixed_classes_ && saturated) fail("saturated is only for adaptive quotas");
  if (!fixed_classes_ && classes.size() > capacity_)
    fail(std::to_string(classes.size()) + " classes for " + std::to_string(capacity_) + " slots");
  std::unordered_map<int64_t, size_t> labels;
  size_t total = 0;
  for (size_t c = 0; c < classes.size(); ++c) {
    const ClassState& cs = classes[c];
    const std::string which = "class " + std::to_string(c) + " (label " + std::to_string(cs.label) + ")";
    if (fixed_classes_ && cs.label != static_cast<int64_t>(c)) fail(which + ": expected label " + std::to_string(c));
    if (cs.label < 0) fail(which + ": labels must be >= 0");
    if (!labels.emplace(cs.label, c).second) fail(which + ": label appears twice");
    if (cs.seen < cs.members.size()) fail(which + ": seen is smaller than its member count");
    if (fixed_classes_ && cs.members.size() > capacity_ / *fixed_classes_)
      fail(which + ": more members than its quota " + std::to_string(capacity_ / *fixed_classes_));
    total += cs.members.size();
  }
  if (total > capacity_) fail("more members than capacity");
  std::vector<uint8_t> used(total, 0);
  for (const auto& c : classes)
    for (uint32_t s : c.members) {
      if (s >= total || used[s]) fail("slots must be distinct and in [0, size)");
      used[s] = 1;
    }
}

void ReservoirPolicy::restore(std::vector<ClassState> classes, bool saturated) {
  check_restorable(classes, saturated);
  size_t total = 0;
  for (const auto& c : classes) total += c.members.size();
  saturated_ = saturated;
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
