#pragma once
// A deadline passed. Surfaces in Python as the built-in TimeoutError.
#include <stdexcept>

namespace reverie {

struct TimeoutError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace reverie
