// The TLS load, identical for both TLS servers: the ping-pong of clients.hpp inside a TLS session, and full
// handshakes back to back. The client trusts any certificate (the servers make their own at startup) and never
// resumes a session, so every handshake is a full one; blocking OpenSSL calls on a socket whose waits are bounded.
#pragma once

#include "clients.hpp"

#include <openssl/ssl.h>

#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include <sys/socket.h>

namespace bench::echo {

class tls_client_session {
public:
  tls_client_session(SSL_CTX* context, std::uint16_t port) : socket_(port), ssl_(SSL_new(context)) {
    if (!ssl_ || SSL_set_fd(ssl_.get(), socket_.fd()) != 1 || SSL_connect(ssl_.get()) != 1)
      throw std::runtime_error{"the TLS handshake with the echo server failed"};
  }

  void round_trip() {
    const auto& text = message();
    if (SSL_write(ssl_.get(), text.data(), static_cast<int>(text.size())) != static_cast<int>(text.size()))
      throw std::runtime_error{"TLS write to the echo server failed"};
    std::array<char, message_size> echoed;
    std::size_t received = 0;
    while (received < echoed.size()) {
      const int n = SSL_read(ssl_.get(), echoed.data() + received, static_cast<int>(echoed.size() - received));
      if (n <= 0)
        throw std::runtime_error{"the TLS echo server stopped answering"};
      received += static_cast<std::size_t>(n);
    }
    if (std::memcmp(echoed.data(), text.data(), text.size()) != 0)
      throw std::runtime_error{"the TLS echo server answered with other bytes"};
  }

  // Leaves with a reset: thousands of handshakes a second would otherwise fill the port range with TIME_WAIT.
  void abort() {
    const linger abortive{1, 0};
    ::setsockopt(socket_.fd(), SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
  }

private:
  struct ssl_deleter {
    void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
  };
  loopback_socket socket_;
  std::unique_ptr<SSL, ssl_deleter> ssl_;
};

class tls_client_context {
public:
  tls_client_context() : context_(SSL_CTX_new(TLS_client_method())) {
    if (!context_)
      throw std::runtime_error{"cannot make a TLS client context"};
    SSL_CTX_set_session_cache_mode(context_.get(), SSL_SESS_CACHE_OFF);
  }
  SSL_CTX* get() const noexcept { return context_.get(); }

private:
  struct context_deleter {
    void operator()(SSL_CTX* context) const noexcept { SSL_CTX_free(context); }
  };
  std::unique_ptr<SSL_CTX, context_deleter> context_;
};

// Round trips inside one TLS session, measured as ping_pong measures them.
inline ping_pong_result tls_ping_pong(std::uint16_t port, pid_t server, std::size_t warm_up,
                                      std::chrono::milliseconds duration) {
  const tls_client_context context;
  tls_client_session session{context.get(), port};
  for (std::size_t i = 0; i < warm_up; ++i)
    session.round_trip();
  std::vector<std::int64_t> nanoseconds;
  const auto cpu_before = cpu_time(server);
  const auto start = clock_type::now();
  auto previous = start;
  while (previous < start + duration && !interrupted()) {
    session.round_trip();
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

struct handshake_result {
  double handshakes_per_second = 0;
  double server_cpu_microseconds = 0;  // per handshake
};

// Connect, full handshake, one echo (so the server has finished its side), reset; again until `duration` ends.
inline handshake_result handshakes(std::uint16_t port, pid_t server, std::chrono::milliseconds duration) {
  const tls_client_context context;
  const auto cpu_before = cpu_time(server);
  const auto start = clock_type::now();
  std::size_t completed = 0;
  while (clock_type::now() < start + duration && !interrupted()) {
    tls_client_session session{context.get(), port};
    session.round_trip();
    session.abort();
    ++completed;
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  const double cpu = std::chrono::duration<double, std::micro>(cpu_time(server) - cpu_before).count();
  const double count = static_cast<double>(completed);
  return {count / seconds, count > 0 ? cpu / count : 0};
}

} // namespace bench::echo
