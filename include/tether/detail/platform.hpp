// Selects the socket-option facts of the platform being compiled for: option names, units and the
// ranges its kernel accepts. Every conversion and range check in tether reads them from here.
#pragma once

#include <tether/detail/config.hpp>

namespace tether::detail {

struct value_range {
  long long min;
  long long max;
  constexpr bool contains(long long value) const noexcept { return value >= min && value <= max; }
};

} // namespace tether::detail

#if defined(TETHER_PLATFORM_WINDOWS)
#include <tether/detail/platform_windows.hpp>
#elif defined(TETHER_PLATFORM_LINUX)
#include <tether/detail/platform_linux.hpp>
#elif defined(TETHER_PLATFORM_DARWIN)
#include <tether/detail/platform_darwin.hpp>
#elif defined(TETHER_PLATFORM_FREEBSD)
#include <tether/detail/platform_freebsd.hpp>
#else
#include <tether/detail/platform_posix_other.hpp>
#endif
