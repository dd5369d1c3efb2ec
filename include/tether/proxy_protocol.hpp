// Serving behind an L4 balancer or TLS terminator that speaks the HAProxy PROXY protocol (HAProxy's send-proxy
// and send-proxy-v2, nginx's proxy_protocol, AWS NLB): the balancer opens every connection, so without the
// header remote(), max_per_address and the logs all see the balancer.
//
//   tether::listener server{io, {.port = 7000, .max_per_address = 16,
//                                .proxy_protocol = {.trusted = {tether::ip_network::parse("10.0.0.0/8", ec)}}}};
//
// A connection from a trusted source must begin with a header (version 1 or 2, detected by its signature)
// within header_timeout; it becomes a connection only then, under the client's address: remote() and the
// per-address limits use it, and connection::proxy() keeps the balancer's. LOCAL (version 2) and UNKNOWN
// (version 1) headers are the balancer's own connections, its health checks: they are served under the
// balancer's address, with proxy()->local set. A trusted source that sends anything else, or ends or resets the
// connection first, is refused (on_reject: protocol_error, handshake_failed for the timeout, peer_closed or
// peer_reset) before the codec sees a byte.
//
// Any other source is served as it is, at once, and may not send a header: a connection whose first bytes are
// one closes with protocol_error. Its first bytes reach the codec once they cannot begin a header (a strict
// prefix of a signature, such as a lone "\r\n", waits for the next bytes).
#pragma once

#include <tether/error.hpp>
#include <tether/ip_network.hpp>

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <system_error>
#include <vector>

namespace tether {

struct proxy_protocol_options {
  // The balancers allowed to send a header; while empty, the listener expects a header from nobody.
  std::vector<ip_network> trusted{};
  std::chrono::milliseconds header_timeout{std::chrono::seconds{3}};
  // Version 2 headers with their TLVs; version 1 has its own fixed limit of 107 bytes. The specification asks
  // receivers to take at least 232.
  std::size_t max_header_size = 1024;

  bool enabled() const noexcept { return !trusted.empty(); }

  bool trusts(const asio::ip::address& source) const noexcept {
    return std::any_of(trusted.begin(), trusted.end(), [&](const ip_network& n) { return n.contains(source); });
  }

  std::error_code validate() const noexcept {
    if (header_timeout.count() <= 0)
      return error::proxy_header_timeout_not_positive;
    if (max_header_size < 232)
      return error::proxy_max_header_size_too_small;
    return {};
  }
};

// How a connection reached this server through a balancer, as its PROXY protocol header said.
struct proxy_details {
  asio::ip::tcp::endpoint proxy;        // the balancer's end of the TCP connection
  asio::ip::tcp::endpoint destination;  // the address the client connected to, as the balancer saw it; unset if local
  int version = 0;                      // 1 (text) or 2 (binary)
  bool local = false;                   // the balancer's own connection (a health check): remote() is the balancer
};

} // namespace tether
