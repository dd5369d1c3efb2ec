// The operating system's socket handle and the raw setsockopt/getsockopt calls, reporting failures as
// std::error_code in the system category (the same codes Asio reports).
#pragma once

#include <tether/detail/platform.hpp>

#include <system_error>

#if !defined(TETHER_PLATFORM_WINDOWS)
#include <cerrno>
#include <unistd.h>
#endif

namespace tether::detail {

#if defined(TETHER_PLATFORM_WINDOWS)
using native_socket = SOCKET;
using option_length = int;
inline constexpr native_socket invalid_socket = INVALID_SOCKET;
inline std::error_code last_socket_error() noexcept { return {::WSAGetLastError(), std::system_category()}; }
inline void close_socket(native_socket handle) noexcept { ::closesocket(handle); }
#else
using native_socket = int;
using option_length = socklen_t;
inline constexpr native_socket invalid_socket = -1;
inline std::error_code last_socket_error() noexcept { return {errno, std::system_category()}; }
inline void close_socket(native_socket handle) noexcept { ::close(handle); }
#endif

template <class T>
std::error_code set_raw_option(native_socket socket, int level, int name, const T& value) noexcept {
  if (::setsockopt(socket, level, name, reinterpret_cast<const char*>(&value), static_cast<option_length>(sizeof value)) != 0)
    return last_socket_error();
  return {};
}

// Returns the number of bytes the kernel wrote, which callers check before trusting the value.
template <class T>
std::error_code get_raw_option(native_socket socket, int level, int name, T& value, option_length& length) noexcept {
  length = static_cast<option_length>(sizeof value);
  if (::getsockopt(socket, level, name, reinterpret_cast<char*>(&value), &length) != 0)
    return last_socket_error();
  return {};
}

inline std::error_code set_int_option(native_socket socket, int level, int name, int value) noexcept {
  return set_raw_option(socket, level, name, value);
}

// Windows may answer a boolean option with a single byte; zero-initialising keeps the rest of the int clean.
inline std::error_code get_int_option(native_socket socket, int level, int name, int& value) noexcept {
  value = 0;
  option_length length = 0;
  return get_raw_option(socket, level, name, value, length);
}

} // namespace tether::detail
