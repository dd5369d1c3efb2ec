// How long the machine has spent suspended since it booted. steady_clock, which every tether deadline uses,
// stops while the machine sleeps (on Linux, where it is CLOCK_MONOTONIC; elsewhere that depends on the standard
// library); a boot clock does not, and the difference between them grows by the length of
// each suspension. A client that sees it grow knows that its connections went unwatched for that long
// (connector_options::resume_check).
//
// Linux: CLOCK_BOOTTIME minus CLOCK_MONOTONIC. macOS: mach_continuous_time() minus mach_absolute_time().
// Windows: GetTickCount64(), which counts sleep, minus QueryUnbiasedInterruptTime(), which does not (to the tick
// count's 10-16 ms resolution). Other platforms: always zero, so a suspension goes unnoticed there.
#pragma once

#include <tether/detail/config.hpp>

#include <chrono>

#if defined(TETHER_PLATFORM_LINUX)
#include <time.h>
#elif defined(TETHER_PLATFORM_DARWIN)
#include <mach/mach_time.h>
#elif defined(TETHER_PLATFORM_WINDOWS)
#include <winsock2.h>  // before windows.h, as Asio needs it
#include <windows.h>
#endif

namespace tether {

inline std::chrono::nanoseconds time_suspended() noexcept {
  using std::chrono::nanoseconds;
#if defined(TETHER_PLATFORM_LINUX)
  timespec boot{};
  timespec monotonic{};
  if (::clock_gettime(CLOCK_BOOTTIME, &boot) != 0 || ::clock_gettime(CLOCK_MONOTONIC, &monotonic) != 0)
    return nanoseconds{0};
  const auto since_boot = std::chrono::seconds{boot.tv_sec} + nanoseconds{boot.tv_nsec};
  const auto awake = std::chrono::seconds{monotonic.tv_sec} + nanoseconds{monotonic.tv_nsec};
  // The two reads are a few nanoseconds apart; never report less than nothing.
  return since_boot > awake ? since_boot - awake : nanoseconds{0};
#elif defined(TETHER_PLATFORM_DARWIN)
  mach_timebase_info_data_t timebase{};
  if (::mach_timebase_info(&timebase) != KERN_SUCCESS || timebase.denom == 0)
    return nanoseconds{0};
  const auto continuous = ::mach_continuous_time();
  const auto absolute = ::mach_absolute_time();
  const auto ticks = continuous > absolute ? continuous - absolute : 0;
  return nanoseconds{static_cast<nanoseconds::rep>(static_cast<long double>(ticks) * timebase.numer / timebase.denom)};
#elif defined(TETHER_PLATFORM_WINDOWS)
  ULONGLONG unbiased = 0;  // 100 ns units
  if (!::QueryUnbiasedInterruptTime(&unbiased))
    return nanoseconds{0};
  const auto with_sleep = std::chrono::milliseconds{static_cast<long long>(::GetTickCount64())};
  const auto awake = nanoseconds{static_cast<long long>(unbiased) * 100};
  return with_sleep > awake ? std::chrono::duration_cast<nanoseconds>(with_sleep - awake) : nanoseconds{0};
#else
  return nanoseconds{0};
#endif
}

} // namespace tether
