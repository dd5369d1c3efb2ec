// Loopback helpers for tests: connected socket pairs and the kernel's view of TCP states.
#pragma once

#include "time_budget.hpp"

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tether::test {

inline const asio::ip::address loopback = asio::ip::address_v4::loopback();

struct socket_pair {
  asio::ip::tcp::socket client;
  asio::ip::tcp::socket server;
};

// A fresh listener on an ephemeral loopback port; reuse_address is left off so tests control it.
inline asio::ip::tcp::acceptor make_listener(asio::io_context& io, std::uint16_t port = 0) {
  asio::ip::tcp::acceptor acceptor{io};
  acceptor.open(asio::ip::tcp::v4());
  acceptor.bind({loopback, port});
  acceptor.listen();
  return acceptor;
}

inline socket_pair connect_pair(asio::io_context& io, asio::ip::tcp::acceptor& acceptor) {
  asio::ip::tcp::socket client{io};
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();
  return {std::move(client), std::move(server)};
}

// The kernel's TCP states for one connection, named as ss(8) names them ("ESTAB", "TIME-WAIT"). Matching both
// ports names one connection: a local port alone may still hold an older connection's TIME_WAIT entry. ss asks
// the kernel through netlink with the filter applied there, so this stays fast on a machine holding millions
// of sockets, where reading /proc/net/tcp would take minutes.
inline std::vector<std::string> tcp_states_of(std::uint16_t local_port, std::uint16_t remote_port) {
  const std::string command = "ss -Htan '( sport = :" + std::to_string(local_port) +
                              " and dport = :" + std::to_string(remote_port) + " )'";
  std::vector<std::string> states;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe{::popen(command.c_str(), "r"), &::pclose};
  if (!pipe)
    return states;
  char line[512];
  while (std::fgets(line, sizeof line, pipe.get())) {
    std::istringstream fields{line};
    std::string state;
    fields >> state;
    states.push_back(state);
  }
  return states;
}

inline const std::string tcp_time_wait = "TIME-WAIT";

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds limit = scaled(std::chrono::milliseconds{5000})) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (predicate())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return predicate();
}

} // namespace tether::test
