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
      auto session = std::make_shared<asio_echo_session<asio::ssl::stream<asio::ip::tcp::socket>>>(std::move(socket),
                                                                                                  *context);
      session->stream().async_handshake(asio::ssl::stream_base::server, [session](const std::error_code& ec) {
        if (!ec)
          session->read();
      });
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
