// A descriptor held in reserve (libuv's answer to EMFILE): a process out of descriptors cannot accept, so the
// connections in its queue wait there, and their clients' connects hang, until a descriptor is free. With one
// kept in reserve, the process can let go of it, accept the queued connections one by one in the slot it freed,
// close each at once so its client learns at once, and take the reserve back.
#pragma once

#include <tether/detail/native_socket.hpp>

#include <cstddef>

#if !defined(TETHER_PLATFORM_WINDOWS)
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace tether::detail {

#if defined(TETHER_PLATFORM_WINDOWS)
inline constexpr bool spare_descriptor_supported = false;

// Windows has no per-process descriptor limit for sockets to run into; the listener refuses the option there.
class spare_descriptor {
public:
  bool reserve() noexcept { return false; }
  bool held() const noexcept { return false; }
  template <class OnRefused>
  std::size_t refuse_queued(native_socket, bool, std::size_t, OnRefused&&) noexcept {
    return 0;
  }
};
#else
inline constexpr bool spare_descriptor_supported = true;

class spare_descriptor {
public:
  spare_descriptor() = default;
  spare_descriptor(const spare_descriptor&) = delete;
  spare_descriptor& operator=(const spare_descriptor&) = delete;
  ~spare_descriptor() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  // Takes a descriptor into reserve unless one is held; false when none is free.
  bool reserve() noexcept {
    if (fd_ < 0)
      fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd_ >= 0;
  }
  bool held() const noexcept { return fd_ >= 0; }

  // Frees the reserve, accepts up to `at_most` connections waiting on `listening` and closes each at once (with
  // a RST when `abortive`), calling on_refused(address, length) for each, then takes the reserve back. The bound
  // keeps a queue that refills as fast as it drains from holding the thread. Returns how many were refused.
  template <class OnRefused>
  std::size_t refuse_queued(native_socket listening, bool abortive, std::size_t at_most, OnRefused&& on_refused) {
    if (fd_ < 0)
      return 0;
    ::close(fd_);
    fd_ = -1;
    // An empty queue must answer EAGAIN rather than block the thread.
    if (const int flags = ::fcntl(listening, F_GETFL); flags >= 0 && !(flags & O_NONBLOCK))
      (void)::fcntl(listening, F_SETFL, flags | O_NONBLOCK);
    std::size_t refused = 0;
    while (refused < at_most) {
      sockaddr_storage address{};
      socklen_t length = sizeof address;
      const int accepted = ::accept(listening, reinterpret_cast<sockaddr*>(&address), &length);
      if (accepted < 0) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        break;
      }
      if (abortive)
        (void)set_raw_option(accepted, SOL_SOCKET, SO_LINGER, ::linger{1, 0});
      ::close(accepted);
      ++refused;
      on_refused(reinterpret_cast<const sockaddr*>(&address), length);
    }
    reserve();
    return refused;
  }

private:
  int fd_ = -1;
};
#endif

} // namespace tether::detail
