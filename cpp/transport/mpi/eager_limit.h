#pragma once
// The largest message the job's MPI sends over shared memory without the receiver's help.
// Above it a message moves by rendezvous: MPICH's ch4 reads it with one CMA copy (from
// MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD, 8 KiB by default), Open MPI's sm/vader BTL past its
// eager limit (4 KiB by default); either way the receiver must poll while it moves.
#include <cstddef>

namespace reverie {

// Reads the limit through the MPI tool interface (so a user's setting counts); 4 KiB when
// the library names none. MPI must be initialised.
size_t shm_eager_bytes();

}  // namespace reverie
