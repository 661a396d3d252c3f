#pragma once
// Internal to the MPI engine (its three files: mpi_transport.cc for the life cycle,
// mpi_fetch.cc for the requester side, mpi_server.cc for the owner side): tags, error
// checks and request helpers.
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/backoff.h"

namespace reverie::mpi_detail {

inline constexpr int kRequestTag = 1;
inline constexpr int kAnonymousReplyTag = 2;  // answers a request whose header (so id) is unreadable
inline constexpr int kReplyTagBase = 16;
inline constexpr uint64_t kReplyTagSpan = 8192;  // 16 + 2 * 8192 stays under the guaranteed MPI_TAG_UB

inline int header_tag(uint64_t id) { return kReplyTagBase + static_cast<int>(2 * (id % kReplyTagSpan)); }
inline int payload_tag(uint64_t id) { return header_tag(id) + 1; }

inline void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string("mpi transport: ") + what + ": " + std::string(msg, len));
}

inline void tighten_timer_slack_once() {
  thread_local bool done = false;
  if (!done) Backoff::tighten_timer_slack();
  done = true;
}

// Withdraws requests still open after a failure or a timeout (receives are cancelled so
// no late message lands in memory that is reused later).
inline void withdraw(MPI_Request* reqs, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i] == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&reqs[i]);
    MPI_Request_free(&reqs[i]);
  }
}

inline size_t open_requests(const MPI_Request* reqs, size_t n) {
  return static_cast<size_t>(std::count_if(reqs, reqs + n, [](MPI_Request r) { return r != MPI_REQUEST_NULL; }));
}

// Tests every request of [reqs, reqs + n): 1 when all completed, 0 when some are open,
// -1 when one completed with an error (e.g. a message longer than its receive).
inline int test_all(MPI_Request* reqs, size_t n) {
  int result = 1;
  for (size_t i = 0; i < n; ++i) {
    if (reqs[i] == MPI_REQUEST_NULL) continue;
    int flag = 0;
    MPI_Status status;
    if (MPI_Test(&reqs[i], &flag, &status) != MPI_SUCCESS) return -1;
    if (!flag) result = 0;
  }
  return result;
}

}  // namespace reverie::mpi_detail
