#pragma once
// Class-balanced reservoir: decides which slot a candidate goes to, or that it is dropped.
// Every class keeps a uniform sample of all candidates of that class ever offered.
// Quotas are fixed (capacity / num_classes) or adaptive (capacity / classes seen so far);
// an adaptive buffer makes room for a new class by evicting uniformly chosen members of
// the class furthest over its quota, lazily, when a slot is needed.
// Slots in use are always [0, size()): slots are filled in order and an evicted slot is
// reused at once, so a slot index is also a stable position for samplers.
// Not thread-safe: the owning buffer serialises calls.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/rng.h"

namespace reverie {

class ReservoirPolicy {
 public:
  struct ClassState {
    int64_t label = 0;
    uint64_t seen = 0;               // candidates of this class offered so far
    std::vector<uint32_t> members;   // slots holding this class
  };

  // num_classes: fixed quotas over labels [0, num_classes); nullopt: adaptive quotas.
  ReservoirPolicy(size_t capacity, std::optional<uint32_t> num_classes);

  // Throws std::invalid_argument naming `capacity` or `num_classes` when the constructor
  // would reject them (callers use it to fail before allocating storage).
  static void check_options(size_t capacity, std::optional<uint32_t> num_classes);

  // Whether `label` may be offered (fixed: in [0, num_classes); adaptive: >= 0).
  bool accepts(int64_t label) const;

  // Offers one candidate; returns the slot to overwrite, or nullopt to drop it.
  // Precondition: accepts(label).
  std::optional<uint32_t> offer(int64_t label, Rng& rng);

  size_t capacity() const { return capacity_; }
  size_t size() const { return size_; }
  bool adaptive() const { return !fixed_classes_.has_value(); }
  std::optional<uint32_t> num_classes() const { return fixed_classes_; }
  size_t quota() const;
  const std::vector<ClassState>& classes() const { return classes_; }
  // Adaptive: more distinct labels were offered than there are slots, so every quota is 0.
  // Labels past the capacity-th are not tracked: the bookkeeping is bounded by capacity.
  bool saturated() const { return saturated_; }
  int64_t label_of(uint32_t slot) const { return classes_[slot_class_[slot]].label; }

  // Rebuilds the policy from checkpointed class states. Throws std::invalid_argument,
  // changing nothing, unless: fixed quotas have one state per label in order, adaptive
  // labels are distinct, >= 0 and at most capacity of them; seen >= members; fixed classes
  // hold at most their quota; member slots are distinct and exactly [0, size).
  void restore(std::vector<ClassState> classes, bool saturated = false);

 private:
  std::optional<uint32_t> class_index(int64_t label);
  void check_restorable(const std::vector<ClassState>& classes, bool saturated) const;
  uint32_t evict_for_new_member(Rng& rng);
  void attach(uint32_t slot, uint32_t cls);
  void detach(uint32_t slot);

  size_t capacity_;
  std::optional<uint32_t> fixed_classes_;
  size_t size_ = 0;
  bool saturated_ = false;
  std::vector<ClassState> classes_;
  std::unordered_map<int64_t, uint32_t> index_of_label_;
  std::vector<uint32_t> slot_class_;
  std::vector<uint32_t> slot_position_;
};

}  // namespace reverie
