// The two TLS echo servers under comparison, both with the same server context (tether::tls_server_context: one
// certificate made at startup, no session cache) and the same announcement and exit as servers.hpp:
//
//   tether-tls  tether::listener with tls_codec<line_codec> and all four liveness strategies active.
//   asio-ssl    plain Asio with asio::ssl::stream, written the way Asio's SSL example is: a session per
//               connection that handshakes, then reads with async_read_some and answers lines with async_write.
#pragma once

#include "servers.hpp"

#include "test_certificates.hpp"

#include <tether/tls.hpp>

#include <asio/ssl.hpp>

namespace bench::echo {

class asio_ssl_echo_session : public std::enable_shared_from_this<asio_ssl_echo_session> {
public:
  asio_ssl_echo_session(asio::ip::tcp::socket socket, asio::ssl::context& context)
      : stream_(std::move(socket), context) {}

  void start() {
    stream_.async_handshake(asio::ssl::stream_base::server, [self = shared_from_this()](const std::error_code& ec) {
      if (!ec)
        self->read();
    });
  }

private:
  void read() {
    stream_.async_read_some(asio::buffer(input_), [self = shared_from_this()](const std::error_code& ec,
                                                                              std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const std::error_code& ec, std::size_t n) {
    if (ec)
      return;
    echo_lines({input_.data(), n}, partial_, replies_);
    if (replies_.empty()) {
      read();
      return;
    }
    asio::async_write(stream_, asio::buffer(replies_),
                      [self = shared_from_this()](const std::error_code& ec, std::size_t) {
                        if (ec)
                          return;
                        self->replies_.clear();
                        self->read();
                      });
  }

  asio::ssl::stream<asio::ip::tcp::socket> stream_;
  std::array<char, 1024> input_;
  std::string partial_;
  std::string replies_;
};

inline std::shared_ptr<asio::ssl::context> benchmark_server_context(const tether::test::test_certificates& files) {
  std::error_code ec;
  auto context = tether::tls_server_context(files.server_certificate_file(), files.server_key_file(), ec);
  if (!context)
    throw std::runtime_error{"cannot make the TLS server context: " + ec.message()};
  return context;
}

inline int serve_tether_tls() {
  const tether::test::test_certificates files;
  return serve_tether(tether::tls_codec<tether::line_codec>{.context = benchmark_server_context(files)});
}

inline int serve_asio_ssl() {
  const tether::test::test_certificates files;
  const auto context = benchmark_server_context(files);
  asio::io_context io{1};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  std::function<void()> accept_next = [&] {
    acceptor.async_accept([&](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec)
        return;
      socket.set_option(asio::ip::tcp::no_delay{true});
      std::make_shared<asio_ssl_echo_session>(std::move(socket), *context)->start();
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

} // namespace bench::echo
