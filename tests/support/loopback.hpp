// Loopback helpers for tests: connected socket pairs and the kernel's view of TCP states.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
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

// Linux numbers TCP states as /proc/net/tcp prints them (hex): 01 established, 06 time_wait. Matching both
// ports names one connection: a local port alone may still hold an older connection's TIME_WAIT entry.
inline std::vector<int> tcp_states_of(std::uint16_t local_port, std::uint16_t remote_port) {
  std::vector<int> states;
  std::ifstream table{"/proc/net/tcp"};
  std::string line;
  std::getline(table, line);
  while (std::getline(table, line)) {
    std::istringstream fields{line};
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const auto local_colon = local.find(':');
    const auto remote_colon = remote.find(':');
    if (local_colon == std::string::npos || remote_colon == std::string::npos)
      continue;
    if (std::stoul(local.substr(local_colon + 1), nullptr, 16) == local_port &&
        std::stoul(remote.substr(remote_colon + 1), nullptr, 16) == remote_port)
      states.push_back(static_cast<int>(std::stoul(state, nullptr, 16)));
  }
  return states;
}

constexpr int proc_tcp_time_wait = 0x06;

template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds limit = std::chrono::seconds{5}) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (predicate())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return predicate();
}

} // namespace tether::test
