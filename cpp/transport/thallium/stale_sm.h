#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace reverie {

// Mercury's na+sm listens on a unix socket /tmp/na_sm-<pid>-<n>/sock and keeps its queues in
// /dev/shm/na_sm-<pid>-<n>. A process killed without closing leaves both behind, and a later
// process given the same pid then cannot start na+sm (pids wrap; seen after crash tests).
// A leftover for `pid` whose socket no live process has bound (/proc/net/unix) can only be a
// dead process's: no other live process has this pid. Removes those and returns their
// paths; one whose socket is live (an engine of this process) is kept.
std::vector<std::string> remove_stale_sm(pid_t pid, const std::string& tmp_dir = "/tmp",
                                         const std::string& shm_dir = "/dev/shm");

// Whether a live unix socket is bound at `path` (listed in /proc/net/unix).
bool unix_socket_bound(const std::string& path);

}  // namespace reverie
