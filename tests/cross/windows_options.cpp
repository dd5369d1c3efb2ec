// Every socket option through tether's Windows path. Cross-compiled with mingw-w64 by ctest so the Windows
// code cannot rot on a Linux-only CI, and run under Wine: each option must either round-trip or be reported
// as not_supported (Wine, like Windows before 1709, lacks some), never fail otherwise.
#include <tether/tether.hpp>

#include <fmt/core.h>

using namespace std::chrono_literals;
namespace sockopt = tether::sockopt;

template <class Value>
bool round_trip(SOCKET socket, const Value& wanted) {
  Value effective{};
  auto ec = tether::set_option(socket, wanted);
  if (!ec)
    ec = tether::get_option(socket, effective);
  if (ec) {
    fmt::print("{}: {}\n", wanted, ec.message());
    return ec == std::errc::not_supported;
  }
  fmt::print("{} -> {}\n", wanted, effective);
  return true;
}

int main() {
  WSADATA wsa;
  if (::WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
    return 1;
  const SOCKET socket = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (socket == INVALID_SOCKET)
    return 1;
  // Every option is tried, so one failure does not hide the others.
  bool ok = true;
  ok &= round_trip(socket, sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 3});
  ok &= round_trip(socket, sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 10});
  ok &= round_trip(socket, sockopt::user_timeout{30s});
  ok &= round_trip(socket, sockopt::linger::abortive());
  ok &= round_trip(socket, sockopt::linger::timed(5s));
  ok &= round_trip(socket, sockopt::reuse_address{true});
  ok &= round_trip(socket, sockopt::reuse_port{true});
  ok &= round_trip(socket, sockopt::no_delay{true});
  ok &= round_trip(socket, sockopt::send_buffer_size{65536});
  ok &= round_trip(socket, sockopt::receive_buffer_size{65536});
  sockopt::tcp_info info;
  const auto ec = tether::get_option(socket, info);
  fmt::print("tcp_info: {}\n", ec.message());
  ok &= ec == std::errc::not_supported;
  const auto refused = tether::set_option(socket, sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 256});
  fmt::print("count 256: {}\n", refused.message());
  ok &= refused == tether::error::keepalive_count_out_of_range;
  // GetTickCount64 minus QueryUnbiasedInterruptTime: part of the time since boot at most.
  const auto suspended = std::chrono::duration_cast<std::chrono::milliseconds>(tether::time_suspended());
  fmt::print("time suspended since boot: {} ms\n", suspended.count());
  ok &= suspended <= std::chrono::milliseconds{static_cast<long long>(::GetTickCount64())};
  ::closesocket(socket);
  ::WSACleanup();
  return ok ? 0 : 1;
}
