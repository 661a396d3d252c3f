// transport/mpi/ucx_threshold.h: UCX_RNDV_THRESH as UCX reads it.
#include "transport/mpi/ucx_threshold.h"

#include <gtest/gtest.h>

#include <limits>

namespace reverie {
namespace {

constexpr size_t kInf = std::numeric_limits<size_t>::max();

TEST(UcxBytes, ReadsUcxMemoryUnits) {
  EXPECT_EQ(parse_ucx_bytes("16384"), 16384u);
  EXPECT_EQ(parse_ucx_bytes("16k"), 16384u);
  EXPECT_EQ(parse_ucx_bytes("8KB"), 8192u);
  EXPECT_EQ(parse_ucx_bytes("1m"), 1u << 20);
  EXPECT_EQ(parse_ucx_bytes("2G"), size_t{2} << 30);
  EXPECT_EQ(parse_ucx_bytes("512b"), 512u);
  EXPECT_EQ(parse_ucx_bytes("inf"), kInf);
}

TEST(UcxBytes, LeavesToUcxWhatItCannotRead) {
  for (const char* text : {"auto", "", "k", "-4k", "16q", "16kk", "99999999999999999999g"})
    EXPECT_FALSE(parse_ucx_bytes(text).has_value()) << text;
}

TEST(UcxRndvThresh, PlainValueAppliesToBothScopes) {
  EXPECT_EQ(ucx_rndv_thresh("16k", true), 16384u);
  EXPECT_EQ(ucx_rndv_thresh("16k", false), 16384u);
  EXPECT_FALSE(ucx_rndv_thresh(nullptr, true).has_value());
  EXPECT_FALSE(ucx_rndv_thresh("auto", false).has_value());
}

TEST(UcxRndvThresh, ScopedValuesApplyToTheirScope) {
  EXPECT_EQ(ucx_rndv_thresh("intra:16k,inter:auto", true), 16384u);
  EXPECT_FALSE(ucx_rndv_thresh("intra:16k,inter:auto", false).has_value());
  EXPECT_EQ(ucx_rndv_thresh("intra:inf,inter:8k", true), kInf);
  // A value without a key is the default for the scope not named.
  EXPECT_EQ(ucx_rndv_thresh("16k,inter:auto", true), 16384u);
  EXPECT_FALSE(ucx_rndv_thresh("16k,inter:auto", false).has_value());
  EXPECT_FALSE(ucx_rndv_thresh("auto,inter:16k", true).has_value());
  EXPECT_EQ(ucx_rndv_thresh("auto,inter:16k", false), 16384u);
}

}  // namespace
}  // namespace reverie
