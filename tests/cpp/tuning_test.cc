// tuning.h: the run-time options of machine-specific values (REVERIE_HOT_WINDOW_SCALE,
// REVERIE_IDLE_SLEEP_US).
#include "common/tuning.h"

#include <gtest/gtest.h>

#include <chrono>

namespace reverie::tuning {
namespace {

TEST(HotWindowScale, AcceptsPositiveNumbersUpToTheLimit) {
  EXPECT_EQ(parse_hot_window_scale("1"), 1.0);
  EXPECT_EQ(parse_hot_window_scale("0.5"), 0.5);
  EXPECT_EQ(parse_hot_window_scale("4e1"), 40.0);
  EXPECT_EQ(parse_hot_window_scale("1000"), kMostHotWindowScale);
}

TEST(HotWindowScale, RefusesWhatIsNotAScale) {
  for (const char* text : {"", "0", "-2", "fast", "2x", "1e9", "nan", "inf"}) {
    EXPECT_FALSE(parse_hot_window_scale(text).has_value()) << text;
  }
}

TEST(HotWindowScale, ScalesTheChosenWindow) {
  EXPECT_EQ(hot_window(us{50}, 1.0), us{50});
  EXPECT_EQ(hot_window(us{50}, 4.0), us{200});
  EXPECT_EQ(hot_window(us{30}, 0.5), us{15});
}

TEST(HotWindowScale, DefaultKeepsTheMeasuredValues) {
  // ctest runs without REVERIE_HOT_WINDOW_SCALE: the values are the dev box's.
  ASSERT_EQ(std::getenv(kHotWindowScaleEnv), nullptr);
  EXPECT_EQ(engine::kHotWait, us{20});
  EXPECT_EQ(mpi::kIdleSpin, us{50});
  EXPECT_EQ(thallium::kReplySpin, us{30});
}

TEST(IdleSleep, AcceptsWholeMicrosecondsWithinTheLimits) {
  EXPECT_EQ(parse_idle_sleep("500"), us{500});
  EXPECT_EQ(parse_idle_sleep("50"), kLeastIdleSleep);
  EXPECT_EQ(parse_idle_sleep("1000000"), kMostIdleSleep);
}

TEST(IdleSleep, RefusesWhatIsNotASleep) {
  for (const char* text : {"", "0", "49", "-500", "500us", "0.5", "1000001", "fast"}) {
    EXPECT_FALSE(parse_idle_sleep(text).has_value()) << text;
  }
}

TEST(IdleSleep, DerivedFromTheCoresEachRankHas) {
  ASSERT_EQ(std::getenv(kIdleSleepEnv), nullptr);
  EXPECT_EQ(mpi::kIdleMaxSleep, kDefaultIdleSleep);
  EXPECT_EQ(idle_max_sleep(1.0), kSpareCoreIdleSleep);  // a core per rank (GPU jobs): answer fast
  EXPECT_EQ(idle_max_sleep(8.0), kSpareCoreIdleSleep);
  EXPECT_EQ(idle_max_sleep(0.5), kCrowdedIdleSleep);  // more ranks than cores: spare the CPU
  EXPECT_LT(kSpareCoreIdleSleep, kCrowdedIdleSleep);
  for (const us sleep : {kSpareCoreIdleSleep, kCrowdedIdleSleep}) {
    EXPECT_LE(mpi::server_min_sleep(sleep), sleep);
    EXPECT_LE(mpi::server_min_sleep(sleep), us{1000});
  }
}

}  // namespace
}  // namespace reverie::tuning
