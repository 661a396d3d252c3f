#include "transport/mpi/shm_protocol.h"

#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "common/tuning.h"
#include "transport/mpi/ucx_threshold.h"

namespace reverie {
namespace {

constexpr size_t kFallbackBytes = tuning::mpi::kFallbackEagerBytes;
constexpr size_t kMostBytes = tuning::mpi::kMostEagerBytes;

// The value of integer control variable `name`, if the library has it.
std::optional<int64_t> read_cvar(const char* name) {
  int index = 0;
  if (MPI_T_cvar_get_index(name, &index) != MPI_SUCCESS) return std::nullopt;
  MPI_T_cvar_handle handle;
  int count = 0;
  if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) != MPI_SUCCESS) return std::nullopt;
  std::optional<int64_t> out;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  int type_size = 0;
  int name_len = 0, verbosity = 0, bind = 0, scope = 0, desc_len = 0;
  MPI_T_enum enumtype;
  if (count == 1 &&
      MPI_T_cvar_get_info(index, nullptr, &name_len, &verbosity, &type, &enumtype, nullptr, &desc_len, &bind,
                          &scope) == MPI_SUCCESS &&
      MPI_Type_size(type, &type_size) == MPI_SUCCESS) {
    alignas(8) unsigned char value[16] = {};
    if (type_size <= 8 && MPI_T_cvar_read(handle, value) == MPI_SUCCESS) {
      if (type == MPI_INT) {
        out = *reinterpret_cast<const int*>(value);
      } else if (type_size == 8) {
        out = static_cast<int64_t>(*reinterpret_cast<const uint64_t*>(value));
      } else if (type_size == 4) {
        out = *reinterpret_cast<const uint32_t*>(value);
      }
    }
  }
  MPI_T_cvar_handle_free(&handle);
  return out;
}

// The value of string control variable `name` (a list such as Open MPI's "btl"), if any.
std::optional<std::string> read_string_cvar(const char* name) {
  int index = 0;
  if (MPI_T_cvar_get_index(name, &index) != MPI_SUCCESS) return std::nullopt;
  int name_len = 0, verbosity = 0, bind = 0, scope = 0, desc_len = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_T_enum enumtype;
  if (MPI_T_cvar_get_info(index, nullptr, &name_len, &verbosity, &type, &enumtype, nullptr, &desc_len, &bind,
                          &scope) != MPI_SUCCESS ||
      type != MPI_CHAR)
    return std::nullopt;
  MPI_T_cvar_handle handle;
  int count = 0;
  if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) != MPI_SUCCESS) return std::nullopt;
  std::optional<std::string> out;
  std::string value(static_cast<size_t>(std::max(count, 0)) + 1, '\0');
  if (MPI_T_cvar_read(handle, value.data()) == MPI_SUCCESS) out = std::string(value.c_str());
  MPI_T_cvar_handle_free(&handle);
  return out;
}

// Whether Open MPI's component list `btl` ("self,sm,tcp", "^sm", "" for all) takes the
// shared-memory BTL (named sm, or vader in Open MPI 4).
bool lists_sm(const std::string& btl) {
  if (btl.empty()) return true;
  const bool excluding = btl[0] == '^';
  bool named = false;
  size_t at = excluding ? 1 : 0;
  while (at <= btl.size()) {
    const size_t end = std::min(btl.find(',', at), btl.size());
    const std::string item = btl.substr(at, end - at);
    named = named || item == "sm" || item == "vader";
    at = end + 1;
  }
  return excluding ? !named : named;
}

// MPICH's network module for this job ("ucx", "ofi"; empty for another library or where
// MPICH names none): the one chosen by MPIR_CVAR_CH4_NETMOD (read from the environment
// under any of MPICH's three spellings: MPICH 5.0.2's tool interface reads it back empty),
// else the first of the device's list in the version string ("MPICH Device: ch4:ucx
// ofi"), else "ofi" for a library with OFI control variables and no UCX ones (MPICH built
// for OFI fabrics only, as vendors ship it).
std::string mpich_netmod() {
  const auto lower = [](std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    return name;
  };
  if (auto chosen = read_string_cvar("MPIR_CVAR_CH4_NETMOD"); chosen && !chosen->empty()) return lower(*chosen);
  for (const char* name : {"MPIR_CVAR_CH4_NETMOD", "MPICH_CH4_NETMOD", "MPIR_PARAM_CH4_NETMOD"})
    if (const char* chosen = std::getenv(name); chosen != nullptr && *chosen != '\0') return lower(chosen);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(version, &len) == MPI_SUCCESS) {
    const std::string text(version, static_cast<size_t>(len));
    const size_t line = text.find("MPICH Device:");
    const size_t device = line == std::string::npos ? line : text.find("ch4:", line);
    if (device != std::string::npos) {
      const size_t from = device + 4;
      return text.substr(from, text.find_first_of(" ,\n", from) - from);
    }
  }
  int index = 0;
  const bool ofi = MPI_T_cvar_get_index("MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD", &index) == MPI_SUCCESS;
  const bool ucx = MPI_T_cvar_get_index("MPIR_CVAR_CH4_UCX_ENABLE_UCC", &index) == MPI_SUCCESS;
  return ofi && !ucx ? "ofi" : "";
}

}  // namespace

ReplyWay parse_reply_way(const char* value) {
  const std::string v = value == nullptr ? "" : value;
  if (v.empty() || v == "auto") return ReplyWay::kAuto;
  if (v == "rows") return ReplyWay::kRows;
  if (v == "packed") return ReplyWay::kPacked;
  if (v == "gathered") return ReplyWay::kGathered;
  return ReplyWay::kInvalid;
}

const char* reply_way_name(ReplyWay way) {
  switch (way) {
    case ReplyWay::kAuto: return "auto";
    case ReplyWay::kRows: return "rows";
    case ReplyWay::kPacked: return "packed";
    case ReplyWay::kGathered: return "gathered";
    case ReplyWay::kInvalid: break;
  }
  return "invalid";
}

ShmProtocol shm_protocol() {
  ShmProtocol out;
  out.reply_way = parse_reply_way(std::getenv(tuning::mpi::kReplyWayEnv));
  out.eager_bytes = kFallbackBytes;
  out.net_eager_bytes = kFallbackBytes;
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) return out;
  std::optional<int64_t> limit;
  const auto cma = read_cvar("MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD");
  if (cma && *cma > 0) {
    limit = *cma - 1;  // MPICH: a message of the threshold or more goes by CMA
    const auto enabled = read_cvar("MPIR_CVAR_CH4_CMA_ENABLE");
    out.gathers_in_place = enabled && *enabled != 0;
  } else if (auto sm = read_cvar("btl_sm_eager_limit"); sm && *sm > 0) {
    limit = sm;  // Open MPI 5
  } else if (auto vader = read_cvar("btl_vader_eager_limit"); vader && *vader > 0) {
    limit = vader;  // Open MPI 4
  }
  // MPICH routes every message through its network module with MPIR_CVAR_NOLOCAL; Open MPI
  // leaves shared memory out when its "btl" list does.
  if (const auto nolocal = read_cvar("MPIR_CVAR_NOLOCAL"); nolocal && *nolocal != 0) out.shared_memory = false;
  if (const auto btl = read_string_cvar("btl"); btl && !lists_sm(*btl)) out.shared_memory = false;
  if (const auto tcp = read_cvar("btl_tcp_eager_limit"); tcp && *tcp > 0)
    out.net_eager_bytes = std::min(static_cast<size_t>(*tcp), kMostBytes);
  // MPICH's OFI module sends a message below MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD with one
  // fi_tsend and no handshake of its own; at -1 (its default) every message up to the
  // provider's largest. Rows up to the limit then travel packed and callers answer them:
  // 2 ranks drawing 12 KB rows over OFI's tcp provider took 2.5x (7 rows) and 4.3x (28) the
  // raw exchange sent a row per message, 1.5x and 1.4x packed (2-core VM).
  const std::string netmod = mpich_netmod();
  out.net_splits_rows = netmod == "ucx";
  const char* rndv = std::getenv("UCX_RNDV_THRESH");
  out.ucx_intra_rndv_bytes = ucx_rndv_thresh(rndv, true).value_or(0);
  out.ucx_inter_rndv_bytes = ucx_rndv_thresh(rndv, false).value_or(0);
  if (netmod == "ofi") {
    const auto threshold = read_cvar("MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD");  // "below": the largest is one less
    out.net_eager_bytes = threshold && *threshold >= 0
                              ? std::min(static_cast<size_t>(std::max<int64_t>(*threshold, 1) - 1), kMostBytes)
                              : kMostBytes;
  }
  MPI_T_finalize();
  if (limit) out.eager_bytes = std::min(static_cast<size_t>(*limit), kMostBytes);
  if (!out.shared_memory) out.gathers_in_place = false;
  return out;
}

PeerPath peer_path(const ShmProtocol& a, const ShmProtocol& b, bool same_node, bool same_host) {
  PeerPath out;
  out.shared_memory = same_node && a.shared_memory && b.shared_memory;
  out.way = a.reply_way;  // the same on both: MpiTransport refuses ranks that differ
  if (out.shared_memory) {
    out.eager_bytes = std::min(a.eager_bytes, b.eager_bytes);
    out.gathers_in_place = a.gathers_in_place && b.gathers_in_place;
  } else {
    out.eager_bytes = std::min(a.net_eager_bytes, b.net_eager_bytes);
    out.splits_rows = a.net_splits_rows && b.net_splits_rows;
    out.ucx_rndv_bytes = same_host ? std::min(a.ucx_intra_rndv_bytes, b.ucx_intra_rndv_bytes)
                                   : std::min(a.ucx_inter_rndv_bytes, b.ucx_inter_rndv_bytes);
  }
  return out;
}

}  // namespace reverie
