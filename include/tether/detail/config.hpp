// Included first by every tether header: compiler gates and the Asio flavour tether builds on.
#pragma once

#if __cplusplus < 202002L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 202002L)
#error "tether requires C++20"
#endif

// tether is written against standalone Asio; the build system defines this, but a plain
// #include of tether (no CMake) must still select standalone mode.
#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif

#if defined(_WIN32)
#define TETHER_PLATFORM_WINDOWS 1
#elif defined(__linux__)
#define TETHER_PLATFORM_LINUX 1
#elif defined(__APPLE__)
#define TETHER_PLATFORM_DARWIN 1
#elif defined(__FreeBSD__)
#define TETHER_PLATFORM_FREEBSD 1
#endif
// Anything else is a POSIX system whose socket options tether does not know: see platform_posix_other.hpp.
