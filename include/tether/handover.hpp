// Restarting a server without losing a connection: the running process hands its listening sockets to its
// successor over a Unix socket, as nginx, HAProxy and Envoy do on a hot restart.
//
// Closing a listening socket resets the connections waiting in its accept queue, and on Linux that holds for
// a socket of a SO_REUSEPORT group too: its queue is not moved to the sockets that stay. Passing the socket
// itself avoids that: there is one accept queue, both processes accept from it while the successor starts,
// and the old process lets go of its copy only once the successor says it accepts. Then it stops as
// listener::stop(drain) does: goaway with a reconnect hint, and a reset for what is still open after `drain`.
//
//   tether::listener server{io, {.port = 7000, .handover = {.path = "/run/chat/handover.sock"}}, ...};
//   server.on_handed_over([] { fmt::print("a new process took over; draining\n"); });
//   server.start();  // takes over from the process at the path, if one answers; binds the port otherwise
//
// Every generation does the same: start() first asks the process at `path` for its sockets and, with none
// there, binds afresh; it then serves `path` for the next generation. Anyone who can connect to `path` may
// ask for the sockets, so keep it in a directory only the service's user can enter; on top of that a request
// from a process of another user is refused. POSIX only (start() reports handover_not_supported on Windows).
#pragma once

#include <tether/detail/config.hpp>
#include <tether/detail/socket_handover.hpp>
#include <tether/error.hpp>

#include <chrono>
#include <string>
#include <system_error>

namespace tether {

struct handover_options {
  std::string path{};                            // a Unix socket path; empty = off
  std::chrono::milliseconds timeout{5000};       // for each exchange with the predecessor or the successor
  std::chrono::milliseconds drain{30'000};       // how long a listener that handed over lets its connections leave

  std::error_code validate() const noexcept;
};

inline std::error_code handover_options::validate() const noexcept {
  if (path.empty())
    return {};
  if (!detail::handover_supported)
    return error::handover_not_supported;
  if (path.size() >= detail::max_handover_path)
    return error::handover_path_too_long;
  if (timeout.count() <= 0)
    return error::handover_timeout_not_positive;
  if (drain.count() < 0)
    return error::handover_drain_negative;
  return {};
}

} // namespace tether
