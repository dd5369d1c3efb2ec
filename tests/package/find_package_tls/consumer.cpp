// A consumer of the installed package's TLS component: a TLS client context from the system's store, and a
// WebSocket-over-TLS codec type, built and run against the installed headers and OpenSSL.
#include <tether/codec/websocket_codec.hpp>
#include <tether/tls.hpp>

#include <cstdio>
#include <system_error>

int main() {
  std::error_code ec;
  const auto trust = tether::tls_client_context("", ec);
  const tether::tls_codec<tether::websocket_codec> wss{.context = trust, .side = tether::tls_role::client};
  std::printf("tls client context: %s\n", wss.context ? "made" : ec.message().c_str());
  return wss.context ? 0 : 1;
}
