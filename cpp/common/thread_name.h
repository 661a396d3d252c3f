#pragma once
// Names the calling thread (shown by top -H, gdb, py-spy) so users can tell Reverie's
// background threads from the training thread. Linux keeps at most 15 characters.
#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace reverie {

inline void name_this_thread(const char* name) {
#ifdef __linux__
  prctl(PR_SET_NAME, name, 0, 0, 0);
#else
  (void)name;
#endif
}

}  // namespace reverie
