// The three echo servers under comparison. Each answers every newline-terminated message with the same line,
// listens on a free loopback port that it announces as "port <n>" on stdout, and exits on SIGTERM.
//
//   tether  tether::listener with line_codec and all four liveness strategies active (tether-websocket: the same
//           with websocket_codec, for the WebSocket comparison).
//   asio    the same server in plain Asio, written the way Asio's own examples are: a session per connection
//           that reads with async_read_some into its buffer and answers each complete line with async_write.
//   epoll   the floor: one level-triggered epoll loop in plain system calls.
#pragma once

#include "../support/all_strategies.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/listener.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>
#include <asio/write.hpp>

#include <fmt/core.h>

#include <array>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace bench::echo {

inline void announce_port(std::uint16_t port) {
  fmt::print("port {}\n", port);
  std::fflush(stdout);
}

// Appends every complete line of `input` to `replies`; an incomplete line waits in `partial` for its rest.
inline void echo_lines(std::string_view input, std::string& partial, std::string& replies) {
  std::size_t start = 0;
  for (auto newline = input.find('\n'); newline != std::string_view::npos; newline = input.find('\n', start)) {
    if (!partial.empty()) {
      replies += partial;
      partial.clear();
    }
    replies.append(input.substr(start, newline + 1 - start));
    start = newline + 1;
  }
  partial.append(input.substr(start));
}

// tether with either codec: line_codec, or websocket_codec (binary messages echoed as binary).
template <class Codec>
int serve_tether(Codec codec) {
  asio::io_context io{1};
  tether::listener server{io, {.backlog = 1024}, std::move(codec), all_four_strategies()};
  server.on_message([](auto& conn, std::string_view message) {
    if (conn.received_binary())
      conn.send_binary(message);
    else
      conn.send(message);
  });
  if (auto ec = server.start()) {
    fmt::print(stderr, "tether echo server cannot listen: {}\n", ec.message());
    return 1;
  }
  asio::signal_set stop{io, SIGTERM, SIGINT};
  stop.async_wait([&](const std::error_code&, int) { server.stop(std::chrono::milliseconds{100}); });
  announce_port(server.local_endpoint().port());
  io.run();
  return 0;
}

// Over a plain socket here, over asio::ssl::stream in tls_servers.hpp (which handshakes through stream() first).
template <class Stream>
class asio_echo_session : public std::enable_shared_from_this<asio_echo_session<Stream>> {
public:
  template <class... StreamArguments>
  explicit asio_echo_session(StreamArguments&&... arguments) : stream_(std::forward<StreamArguments>(arguments)...) {}

  Stream& stream() noexcept { return stream_; }

  void read() {
    stream_.async_read_some(asio::buffer(input_), [self = this->shared_from_this()](const std::error_code& ec,
                                                                              std::size_t n) { self->on_read(ec, n); });
  }

private:
  void on_read(const std::error_code& ec, std::size_t n) {
    if (ec)
      return;
    echo_lines({input_.data(), n}, partial_, replies_);
    if (replies_.empty()) {
      read();
      return;
    }
    asio::async_write(stream_, asio::buffer(replies_),
                      [self = this->shared_from_this()](const std::error_code& ec, std::size_t) {
                        if (ec)
                          return;
                        self->replies_.clear();
                        self->read();
                      });
  }

  Stream stream_;
  std::array<char, 1024> input_;
  std::string partial_;
  std::string replies_;
};

inline int serve_asio() {
  asio::io_context io{1};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  std::function<void()> accept_next = [&] {
    acceptor.async_accept([&](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec)
        return;
      socket.set_option(asio::ip::tcp::no_delay{true});
      std::make_shared<asio_echo_session<asio::ip::tcp::socket>>(std::move(socket))->read();
      accept_next();
    });
  };
  accept_next();
  asio::signal_set stop{io, SIGTERM, SIGINT};
  stop.async_wait([&](const std::error_code&, int) { io.stop(); });
  announce_port(acceptor.local_endpoint().port());
  io.run();
  return 0;
}

namespace detail {
// A reply that does not fit the socket buffer at once waits for room; with one message in flight per
// connection that never happens, but the floor must still be a correct server.
inline bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, 1000);
      continue;
    }
    return false;
  }
  return true;
}
} // namespace detail

inline int serve_epoll() {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int on = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(listener, 1024) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::perror("epoll echo server cannot listen");
    return 1;
  }
  sigset_t stop_signals;
  ::sigemptyset(&stop_signals);
  ::sigaddset(&stop_signals, SIGTERM);
  ::sigaddset(&stop_signals, SIGINT);
  ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  const int stop = ::signalfd(-1, &stop_signals, SFD_CLOEXEC);

  const int poller = ::epoll_create1(EPOLL_CLOEXEC);
  for (const int fd : {listener, stop}) {
    epoll_event interest{EPOLLIN, {.fd = fd}};
    ::epoll_ctl(poller, EPOLL_CTL_ADD, fd, &interest);
  }
  announce_port(ntohs(address.sin_port));

  std::vector<std::string> partial_by_fd;
  std::string replies;
  std::array<char, 1024> input;
  std::array<epoll_event, 64> ready;
  while (true) {
    const int count = ::epoll_wait(poller, ready.data(), static_cast<int>(ready.size()), -1);
    for (int i = 0; i < count; ++i) {
      const int fd = ready[static_cast<std::size_t>(i)].data.fd;
      if (fd == stop)
        return 0;
      if (fd == listener) {
        for (int peer; (peer = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          ::setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
          epoll_event interest{EPOLLIN, {.fd = peer}};
          ::epoll_ctl(poller, EPOLL_CTL_ADD, peer, &interest);
          if (partial_by_fd.size() <= static_cast<std::size_t>(peer))
            partial_by_fd.resize(static_cast<std::size_t>(peer) + 1);
        }
        continue;
      }
      const ssize_t n = ::read(fd, input.data(), input.size());
      if (n < 0 && errno == EAGAIN)
        continue;
      auto& partial = partial_by_fd[static_cast<std::size_t>(fd)];
      replies.clear();
      if (n > 0)
        echo_lines({input.data(), static_cast<std::size_t>(n)}, partial, replies);
      if (n <= 0 || !detail::write_all(fd, replies)) {
        partial.clear();
        ::close(fd);
      }
    }
  }
}

} // namespace bench::echo
