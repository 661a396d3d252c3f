// tuning.h: the run-time scale of the machine-specific hot windows (REVERIE_HOT_WINDOW_SCALE).
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

}  // namespace
}  // namespace reverie::tuning
