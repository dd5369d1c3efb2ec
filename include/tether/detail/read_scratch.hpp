// The buffer every connection of a thread reads into, so that idle connections pin no read buffer of their own.
#pragma once

#include <tether/detail/config.hpp>

#include <array>

namespace tether::detail {

inline std::array<char, 64 * 1024>& read_scratch() noexcept {
  thread_local std::array<char, 64 * 1024> buffer;
  return buffer;
}

} // namespace tether::detail
