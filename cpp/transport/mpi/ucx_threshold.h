#pragma once
// UCX_RNDV_THRESH as UCX reads it: the message size from which UCX sends by rendezvous.
// Plain C++ (no MPI, no UCX): the MPI engine reads it where MPICH hands messages to UCX,
// which MPI does not report (shm_protocol.h).
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace reverie {

// One memory-units value of UCX ("16384", "16k", "8KB", "1m", "inf"): bytes, SIZE_MAX for
// inf; nullopt for "auto" (UCX decides) or anything it cannot read.
inline std::optional<size_t> parse_ucx_bytes(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "inf") return std::numeric_limits<size_t>::max();
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;
  size_t n = 0, used = 0;
  constexpr size_t kMost = std::numeric_limits<size_t>::max();
  for (; used < text.size() && std::isdigit(static_cast<unsigned char>(text[used])); ++used) {
    const size_t digit = static_cast<size_t>(text[used] - '0');
    if (n > (kMost - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  const int shift = unit.empty() ? 0 : unit == "k" ? 10 : unit == "m" ? 20 : unit == "g" ? 30 : -1;
  if (shift < 0 || n > (kMost >> shift)) return std::nullopt;
  return n << shift;
}

// UCX_RNDV_THRESH's value (nullptr: unset) for messages within a node (intra) or between
// nodes: "intra:16k,inter:auto" names each, a value without a key is the default for the
// scope not named ("16k,inter:auto"). nullopt where UCX decides.
inline std::optional<size_t> ucx_rndv_thresh(const char* value, bool intra) {
  if (value == nullptr) return std::nullopt;
  const std::string all(value), scope = intra ? "intra:" : "inter:";
  std::optional<size_t> plain, scoped;
  size_t at = 0;
  while (at <= all.size()) {
    const size_t end = std::min(all.find(',', at), all.size());
    const std::string item = all.substr(at, end - at);
    if (item.rfind(scope, 0) == 0) {
      scoped = parse_ucx_bytes(item.substr(scope.size()));
    } else if (item.find(':') == std::string::npos) {
      plain = parse_ucx_bytes(item);
    }
    at = end + 1;
  }
  return all.find(scope) != std::string::npos ? scoped : plain;
}

}  // namespace reverie
