#pragma once
// How the job's MPI moves messages between ranks of one node, read through the MPI tool
// interface (so a user's settings count):
// - eager_bytes: the largest message sent without the receiver's help. Above it a message
//   moves by rendezvous: MPICH's ch4 reads it with one CMA copy (from
//   MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD, 8 KiB by default), Open MPI's sm/vader BTL past
//   its eager limit (4 KiB by default); either way the receiver must poll while it moves.
//   4 KiB when the library names none.
// - gathers_in_place: a send whose datatype scatters over memory (rows of chosen slots)
//   still moves by one copy, straight from those rows into a contiguous receive: MPICH's
//   CMA reads the sender's blocks as one iovec list (process_vm_readv). Libraries that
//   pack such sends through a bounce buffer instead (Open MPI's ob1) get false.
#include <cstddef>

namespace reverie {

struct ShmProtocol {
  size_t eager_bytes = 0;
  bool gathers_in_place = false;
};

// MPI must be initialised.
ShmProtocol shm_protocol();

}  // namespace reverie
