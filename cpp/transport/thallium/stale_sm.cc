#include "transport/thallium/stale_sm.h"

#include <fstream>

#include <dirent.h>
#include <unistd.h>

namespace reverie {
namespace {

std::vector<std::string> entries(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(prefix, 0) == 0) names.push_back(name);
  }
  closedir(d);
  return names;
}

// Removes `dir`'s plain entries, then `dir`; Mercury puts only its socket there.
bool remove_flat_dir(const std::string& dir) {
  for (const auto& name : entries(dir, "")) {
    if (name != "." && name != "..") unlink((dir + "/" + name).c_str());
  }
  return rmdir(dir.c_str()) == 0;
}

}  // namespace

bool unix_socket_bound(const std::string& path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  const std::string suffix = " " + path;
  while (std::getline(table, line)) {
    if (line.size() >= suffix.size() && line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

std::vector<std::string> remove_stale_sm(pid_t pid, const std::string& tmp_dir, const std::string& shm_dir) {
  std::vector<std::string> removed;
  const std::string prefix = "na_sm-" + std::to_string(pid) + "-";
  for (const auto& name : entries(tmp_dir, prefix)) {
    const std::string dir = tmp_dir + "/" + name;
    if (unix_socket_bound(dir + "/sock")) continue;
    if (remove_flat_dir(dir)) removed.push_back(dir);
    const std::string shm = shm_dir + "/" + name;
    if (unlink(shm.c_str()) == 0) removed.push_back(shm);
  }
  return removed;
}

}  // namespace reverie
