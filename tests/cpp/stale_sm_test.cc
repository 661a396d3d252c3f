#include "transport/thallium/stale_sm.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace reverie {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// A unix socket bound at `path`, open (live) until closed.
int bind_socket(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

class StaleSm : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/reverie-stale-sm-XXXXXX";
    root_ = mkdtemp(tmpl);
    tmp_ = root_ + "/tmp";
    shm_ = root_ + "/shm";
    mkdir(tmp_.c_str(), 0700);
    mkdir(shm_.c_str(), 0700);
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  // Mercury's layout for (pid, n): tmp/na_sm-<pid>-<n>/sock and shm/na_sm-<pid>-<n>.
  std::string leftover(pid_t pid, int n, bool live) {
    const std::string name = "na_sm-" + std::to_string(pid) + "-" + std::to_string(n);
    mkdir((tmp_ + "/" + name).c_str(), 0700);
    const int fd = bind_socket(tmp_ + "/" + name + "/sock");
    if (!live) close(fd);
    std::fclose(std::fopen((shm_ + "/" + name).c_str(), "w"));
    return name;
  }

  std::string root_, tmp_, shm_;
};

TEST_F(StaleSm, DeadProcessLeftoverIsRemoved) {
  const std::string name = leftover(4242, 0, /*live=*/false);
  EXPECT_FALSE(unix_socket_bound(tmp_ + "/" + name + "/sock"));
  const auto removed = remove_stale_sm(4242, tmp_, shm_);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(exists(tmp_ + "/" + name));
  EXPECT_FALSE(exists(shm_ + "/" + name));
}

TEST_F(StaleSm, LiveSocketIsKept) {
  const std::string name = leftover(4242, 0, /*live=*/true);
  EXPECT_TRUE(unix_socket_bound(tmp_ + "/" + name + "/sock"));
  EXPECT_TRUE(remove_stale_sm(4242, tmp_, shm_).empty());
  EXPECT_TRUE(exists(tmp_ + "/" + name + "/sock"));
  EXPECT_TRUE(exists(shm_ + "/" + name));
}

TEST_F(StaleSm, OtherPidsAreNotTouched) {
  const std::string other = leftover(4243, 0, /*live=*/false);
  const std::string prefix_clash = leftover(42420, 0, /*live=*/false);  // na_sm-42420-0 is not pid 4242's
  EXPECT_TRUE(remove_stale_sm(4242, tmp_, shm_).empty());
  EXPECT_TRUE(exists(tmp_ + "/" + other));
  EXPECT_TRUE(exists(tmp_ + "/" + prefix_clash));
}

}  // namespace
}  // namespace reverie
