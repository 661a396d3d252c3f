#pragma once
// How the job's MPI moves messages, read through the MPI tool interface at start-up (so a
// user's settings count), per path between two ranks:
// - shared memory (ranks of one node, unless the library is told to route them through
//   its network module):
//   - eager_bytes: the largest message sent without the receiver's help. Above it a message
//     moves by rendezvous: MPICH's ch4 reads it with one CMA copy (from
//     MPIR_CVAR_CH4_IPC_CMA_P2P_THRESHOLD, 8 KiB by default), Open MPI's sm BTL past its
//     eager limit (btl_sm_eager_limit, 4 KiB by default); either way the receiver must poll
//     while it moves. 4 KiB when the library names none.
//   - gathers_in_place: a send whose datatype scatters over memory (rows of chosen slots)
//     still moves by one copy, straight from those rows into a contiguous receive: MPICH's
//     CMA reads the sender's blocks as one iovec list (process_vm_readv). Libraries that
//     pack such sends through a bounce buffer instead (Open MPI's ob1) get false.
// - network (ranks of different nodes, or any two when shared memory is off: MPICH's
//   MPIR_CVAR_NOLOCAL, Open MPI without its sm BTL): net_eager_bytes, Open MPI's
//   btl_tcp_eager_limit; MPICH's OFI module's MPIR_CVAR_CH4_OFI_EAGER_THRESHOLD (below it
//   no handshake; -1, the default: none up to the provider's largest message, taken as
//   kMostEagerBytes); else 4 KiB (MPICH's UCX module keeps its limits inside UCX).
//   Scattered sends are never assumed to move in place there.
//   - net_splits_rows: MPICH's UCX module. UCX sends past a few KB by rendezvous (a
//     handshake, then the receiver reads), so rows a few times the 4 KiB limit go as
//     eager-sized pieces instead of a handshake each (tuning::mpi::kMostRowPieces), unless
//     UCX_RNDV_THRESH (ucx_intra_rndv_bytes within a node, ucx_inter_rndv_bytes between
//     nodes; 0 where UCX decides) sends them eagerly whole.
// An implementation without a control variable (or without the tool interface) gets the
// fallbacks: nothing here is MPICH-only.
// The way a reply's rows travel can also be forced (REVERIE_MPI_REPLY, the same on every
// rank): rows (a message per row, straight from the slots), packed (copied into one message
// per field) or gathered (a hindexed_block datatype over the slots, kGatherRows rows per
// message). auto (the default) picks per path as above. Which is fastest depends on the
// library, its path and the row size: benchmarks/remote_fetch.py --launch times all three
// in plain MPI beside the engine (the floor columns).
#include <cstddef>
#include <cstdint>

namespace reverie {

enum class ReplyWay : uint8_t { kAuto = 0, kRows, kPacked, kGathered, kInvalid };

// REVERIE_MPI_REPLY's value (nullptr or empty: auto); kInvalid for anything else.
ReplyWay parse_reply_way(const char* value);
const char* reply_way_name(ReplyWay way);

struct ShmProtocol {
  size_t eager_bytes = 0;
  bool gathers_in_place = false;
  size_t net_eager_bytes = 0;
  bool shared_memory = true;  // the library moves messages between ranks of one node through shared memory
  bool net_splits_rows = false;  // MPICH's UCX module: rows past the network eager limit go in pieces
  size_t ucx_intra_rndv_bytes = 0;  // UCX_RNDV_THRESH: UCX's rendezvous threshold within a node
  size_t ucx_inter_rndv_bytes = 0;  // and between nodes (0: UCX decides; SIZE_MAX: never)
  ReplyWay reply_way = ReplyWay::kAuto;  // from REVERIE_MPI_REPLY
};

// MPI must be initialised.
ShmProtocol shm_protocol();

// The path between two ranks, from what each one read (both compute the same).
struct PeerPath {
  bool shared_memory = false;  // same node and both libraries use shared memory
  size_t eager_bytes = 0;      // the smaller of the two ranks' limits for this path
  bool gathers_in_place = false;
  bool splits_rows = false;  // network path, both ranks' library UCX-based (net_splits_rows)
  size_t ucx_rndv_bytes = 0;  // rows under this go eagerly whole (UCX_RNDV_THRESH; 0: UCX decides)
  ReplyWay way = ReplyWay::kAuto;  // REVERIE_MPI_REPLY (every rank must ask the same)
};

// Both ranks' views, whether they share a node (same MPI_COMM_TYPE_SHARED communicator)
// and a host (processor name: UCX's intra-node scope, also where MPI keeps shared memory out).
PeerPath peer_path(const ShmProtocol& a, const ShmProtocol& b, bool same_node, bool same_host);

}  // namespace reverie
