// Wall-clock budgets for tests that run on slow machines and under sanitizers.
//
// A test waits for an event with an upper bound (how long a drain may take, how late a detection may come) that
// holds on a quiet machine; ThreadSanitizer makes this process several times slower, AddressSanitizer about
// twice. CMake sets TETHER_TEST_TIME_SCALE per build configuration, and every upper bound a test waits for or
// asserts is multiplied by it. Lower bounds are never scaled: they are what the library promises (a timeout
// never fires early), and slowness can only push events later.
//
// Each checked budget prints one line, "TIMING | what | measured N ms | budget M ms | room R ms", so a run's log
// shows how much room every time-bound check had.
#pragma once

#include <chrono>
#include <cstdio>
#include <string_view>

#ifndef TETHER_TEST_TIME_SCALE
#error "TETHER_TEST_TIME_SCALE comes from tests/CMakeLists.txt"
#endif

namespace tether::test {

inline constexpr int time_scale = TETHER_TEST_TIME_SCALE;
static_assert(time_scale >= 1, "TETHER_TEST_TIME_SCALE must be a whole number >= 1");

template <class Rep, class Period>
constexpr auto scaled(std::chrono::duration<Rep, Period> budget) noexcept {
  return budget * time_scale;
}

// True when `measured` is within `budget` (already scaled by the caller); prints the TIMING line either way.
template <class Measured, class Budget>
bool within_budget(std::string_view what, Measured measured, Budget budget) {
  const auto measured_ms = std::chrono::duration<double, std::milli>(measured).count();
  const auto budget_ms = std::chrono::duration<double, std::milli>(budget).count();
  std::printf("TIMING | %.*s | measured %.1f ms | budget %.1f ms | room %.1f ms\n", static_cast<int>(what.size()),
              what.data(), measured_ms, budget_ms, budget_ms - measured_ms);
  std::fflush(stdout);
  return measured <= budget;
}

} // namespace tether::test
