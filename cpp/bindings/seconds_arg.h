#pragma once
// Seconds from Python as a millisecond duration. NaN, infinity and values past ~116 days
// are rejected: converting them to an integer count is undefined behaviour, and every
// blocking wait must end (a wait with no limit is not offered).
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

namespace reverie {

inline constexpr double kMaxWaitSeconds = 1e7;

inline std::chrono::milliseconds seconds_arg(double seconds, const char* name, bool allow_zero = false) {
  const bool in_range = allow_zero ? seconds >= 0 : seconds > 0;
  if (!std::isfinite(seconds) || !in_range || seconds > kMaxWaitSeconds)
    throw std::invalid_argument(std::string(name) + ": expected finite seconds " + (allow_zero ? ">= 0" : "> 0") +
                                " and at most 1e7, got " + std::to_string(seconds));
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

}  // namespace reverie
