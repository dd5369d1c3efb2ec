// An echo server in the server namespace of a fault network (network.hpp), run on the caller's io_context.
#pragma once

#include "network.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/timer_wheel.hpp>

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace tether::fault {

// Accepts in the server namespace and answers every ping (a connection does so by itself), never pinging:
// the idle periods are the client's alone.
struct namespaced_echo_server {
  using server_connection = tether::connection<tether::line_codec>;

  namespaced_echo_server(asio::io_context& io, network& net)
      : io(io), acceptor(io), wheel(io, {.tick = std::chrono::milliseconds{20}}) {
    netns_scope inside{net.server};
    acceptor.open(asio::ip::tcp::v4());
    acceptor.bind({asio::ip::make_address(network::server_address), 0});
    acceptor.listen();
    settings.on_message = [](server_connection& c, std::string_view line) { (void)c.send(line); };
    accept_next();
  }
  void accept_next() {
    acceptor.async_accept(io, [this](const std::error_code& ec, server_connection::socket_type socket) {
      if (ec)
        return;
      std::erase_if(served, [](const auto& c) { return c->is_closed(); });
      served.push_back(server_connection::create(std::move(socket), settings, wheel));
      served.back()->start();
      accept_next();
    });
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  asio::io_context& io;
  asio::ip::tcp::acceptor acceptor;
  tether::timer_wheel wheel;
  tether::connection_context<tether::line_codec> settings;
  std::vector<std::shared_ptr<server_connection>> served;
};

} // namespace tether::fault
