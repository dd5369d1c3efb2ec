// The load the echo servers are measured under, identical for every server: 64-byte newline-terminated
// messages over loopback with TCP_NODELAY, either one connection in strict ping-pong or many connections with
// one message in flight each. Every wait is bounded, so a server that stops answering fails the run instead
// of hanging it.
#pragma once

#include "../support/procfs.hpp"
#include "../support/process.hpp"
#include "../support/summary.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace bench::echo {

using clock_type = std::chrono::steady_clock;

inline constexpr std::size_t message_size = 64;

// Printable, no leading DLE (which line_codec reserves), newline last.
inline const std::array<char, message_size>& message() {
  static const std::array<char, message_size> text = [] {
    std::array<char, message_size> bytes{};
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i)
      bytes[i] = static_cast<char>('a' + i % 26);
    bytes.back() = '\n';
    return bytes;
  }();
  return text;
}

class loopback_socket {
public:
  explicit loopback_socket(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0)
      throw system_failure("socket");
    const int on = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    const timeval patience{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof patience);
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
      ::close(fd_);
      throw system_failure("connect to the echo server");
    }
  }
  loopback_socket(const loopback_socket&) = delete;
  loopback_socket& operator=(const loopback_socket&) = delete;
  ~loopback_socket() { ::close(fd_); }

  int fd() const noexcept { return fd_; }

  // One message out, its echo back, compared byte for byte.
  void round_trip() {
    const auto& text = message();
    if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw system_failure("write to the echo server");
    std::array<char, message_size> echoed;
    std::size_t received = 0;
    while (received < echoed.size()) {
      const ssize_t n = ::read(fd_, echoed.data() + received, echoed.size() - received);
      if (n <= 0)
        throw std::runtime_error{"the echo server stopped answering"};
      received += static_cast<std::size_t>(n);
    }
    if (std::memcmp(echoed.data(), text.data(), text.size()) != 0)
      throw std::runtime_error{"the echo server answered with other bytes"};
  }

  // The WebSocket upgrade, for the WebSocket variant of the same load; the 101 is all the server sends before
  // the first echo, so one read up to the end of its head is enough.
  void upgrade_to_websocket() {
    constexpr std::string_view request = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                         "Sec-WebSocket-Version: 13\r\n\r\n";
    if (::write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size()))
      throw system_failure("write the upgrade request");
    std::string head;
    std::array<char, 512> chunk;
    while (head.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::read(fd_, chunk.data(), chunk.size());
      if (n <= 0)
        throw std::runtime_error{"the WebSocket server did not answer the upgrade"};
      head.append(chunk.data(), static_cast<std::size_t>(n));
    }
    if (!head.starts_with("HTTP/1.1 101 "))
      throw std::runtime_error{"the WebSocket server refused the upgrade"};
  }

  // The same 64 bytes as one masked binary frame (clients must mask; a fixed key is enough here), and their
  // unmasked echo frame.
  void websocket_round_trip() {
    static const std::string frame = [] {
      const std::array<char, 4> key{'\x11', '\x22', '\x33', '\x44'};
      std::string bytes{"\x82", 1};
      bytes += static_cast<char>(0x80 | message_size);
      bytes.append(key.data(), key.size());
      for (std::size_t i = 0; i < message_size; ++i)
        bytes += static_cast<char>(message()[i] ^ key[i % 4]);
      return bytes;
    }();
    if (::write(fd_, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size()))
      throw system_failure("write to the echo server");
    std::array<char, 2 + message_size> echoed;
    std::size_t received = 0;
    while (received < echoed.size()) {
      const ssize_t n = ::read(fd_, echoed.data() + received, echoed.size() - received);
      if (n <= 0)
        throw std::runtime_error{"the echo server stopped answering"};
      received += static_cast<std::size_t>(n);
    }
    if (echoed[0] != '\x82' || std::memcmp(echoed.data() + 2, message().data(), message_size) != 0)
      throw std::runtime_error{"the echo server answered with other bytes"};
  }

  void make_non_blocking() {
    const int on = 1;
    ::ioctl(fd_, FIONBIO, &on);
  }

private:
  int fd_;
};

struct ping_pong_result {
  double round_trips_per_second = 0;
  double p50_microseconds = 0;
  double p99_microseconds = 0;
  double server_cpu_microseconds = 0;  // per round trip
};

enum class framing { lines, websocket };

// Round trips on one connection for `duration` after `warm_up` round trips, at most `limit` of them.
inline ping_pong_result ping_pong(std::uint16_t port, pid_t server, std::size_t warm_up,
                                  std::chrono::milliseconds duration, std::size_t limit = 20'000'000,
                                  framing with = framing::lines) {
  loopback_socket socket{port};
  if (with == framing::websocket)
    socket.upgrade_to_websocket();
  const auto round_trip = [&] {
    if (with == framing::websocket)
      socket.websocket_round_trip();
    else
      socket.round_trip();
  };
  for (std::size_t i = 0; i < warm_up; ++i)
    round_trip();
  std::vector<std::int64_t> nanoseconds;
  nanoseconds.reserve(std::min<std::size_t>(limit, 1'000'000));
  const auto cpu_before = cpu_time(server);
  const auto start = clock_type::now();
  const auto until = start + duration;
  auto previous = start;
  while (previous < until && nanoseconds.size() < limit && !interrupted()) {
    round_trip();
    const auto now = clock_type::now();
    nanoseconds.push_back((now - previous).count());
    previous = now;
  }
  const double seconds = std::chrono::duration<double>(previous - start).count();
  const double cpu = std::chrono::duration<double, std::micro>(cpu_time(server) - cpu_before).count();
  const double count = static_cast<double>(nanoseconds.size());
  return {count / seconds, static_cast<double>(percentile(nanoseconds, 50)) / 1000,
          static_cast<double>(percentile(nanoseconds, 99)) / 1000, cpu / count};
}

// A fixed number of round trips and nothing else: what the instruction counts are taken over.
inline void exact_round_trips(std::uint16_t port, std::size_t count) {
  loopback_socket socket{port};
  for (std::size_t i = 0; i < count && !interrupted(); ++i)
    socket.round_trip();
}

struct flood_result {
  double messages_per_second = 0;
  double server_cpu_microseconds = 0;  // per message
  std::uint64_t echoed = 0;            // warm-up included
};

// `connections` connections, each sending its next message as soon as the previous one is echoed, driven by
// one epoll loop; counted over `duration` after `warm_up`.
inline flood_result one_in_flight_each(std::uint16_t port, pid_t server, std::size_t connections,
                                       std::chrono::milliseconds warm_up, std::chrono::milliseconds duration) {
  std::vector<std::unique_ptr<loopback_socket>> sockets;
  std::vector<std::size_t> received(connections, 0);
  const int poller = ::epoll_create1(EPOLL_CLOEXEC);
  struct poller_guard {
    int fd;
    ~poller_guard() { ::close(fd); }
  } closes_poller{poller};
  for (std::size_t i = 0; i < connections; ++i) {
    sockets.push_back(std::make_unique<loopback_socket>(port));
    sockets.back()->make_non_blocking();
    epoll_event interest{EPOLLIN, {.u64 = i}};
    ::epoll_ctl(poller, EPOLL_CTL_ADD, sockets.back()->fd(), &interest);
  }
  const auto& text = message();
  const auto send = [&](std::size_t i) {
    if (::write(sockets[i]->fd(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw system_failure("write to the echo server");
  };
  for (std::size_t i = 0; i < connections; ++i)
    send(i);

  std::uint64_t completed = 0;
  std::uint64_t completed_at_start = 0;
  auto cpu_at_start = cpu_time(server);
  const auto begin = clock_type::now();
  const auto measuring_from = begin + warm_up;
  const auto until = measuring_from + duration;
  bool measuring = false;
  auto last_progress = begin;
  std::array<epoll_event, 128> ready;
  std::array<char, 4096> input;
  while (!interrupted()) {
    const int count = ::epoll_wait(poller, ready.data(), static_cast<int>(ready.size()), 200);
    const auto now = clock_type::now();
    if (!measuring && now >= measuring_from) {
      measuring = true;
      completed_at_start = completed;
      cpu_at_start = cpu_time(server);
    }
    if (now >= until)
      break;
    if (count > 0)
      last_progress = now;
    else if (now - last_progress > std::chrono::seconds{3})
      throw std::runtime_error{"the echo server stopped answering"};
    for (int e = 0; e < count; ++e) {
      const auto i = static_cast<std::size_t>(ready[static_cast<std::size_t>(e)].data.u64);
      const ssize_t n = ::read(sockets[i]->fd(), input.data(), input.size());
      if (n == 0 || (n < 0 && errno != EAGAIN))
        throw std::runtime_error{"the echo server closed a connection"};
      if (n < 0)
        continue;
      received[i] += static_cast<std::size_t>(n);
      if (received[i] >= message_size) {
        received[i] -= message_size;
        ++completed;
        send(i);
      }
    }
  }
  const auto end = clock_type::now();
  const double seconds = std::chrono::duration<double>(end - std::max(measuring_from, begin)).count();
  const double messages = static_cast<double>(completed - completed_at_start);
  const double cpu = std::chrono::duration<double, std::micro>(cpu_time(server) - cpu_at_start).count();
  return {messages / seconds, messages > 0 ? cpu / messages : 0, completed};
}

} // namespace bench::echo
