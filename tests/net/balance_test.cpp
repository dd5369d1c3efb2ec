// How a listener spreads connections over its shards: SO_REUSEPORT's hash over 10,000 connections, measured, and
// least_loaded, which keeps the shards even when their connections close unevenly.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/listener.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using tether::test::run_until;
using tether::test::scaled;
using line_listener = tether::listener<tether::line_codec>;

namespace {

// Opens `count` connections from a child process, so that the server's process holds only its own descriptors
// (10,000 pairs would pass the 20,000 one process may open), and keeps them until the parent closes the pipe.
// Forked before the listener starts its threads; it learns the port through the pipe.
struct connecting_child {
  explicit connecting_child(std::size_t count) {
    int hold[2];
    REQUIRE(::pipe(hold) == 0);
    std::fflush(stdout);  // a child must not inherit, and perhaps repeat, what this process has yet to print
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(hold[1]);
      std::uint16_t port = 0;
      if (::read(hold[0], &port, sizeof port) != sizeof port)
        ::_exit(1);
      asio::io_context io;
      std::vector<asio::ip::tcp::socket> sockets;
      sockets.reserve(count);
      std::error_code ec;
      for (std::size_t i = 0; i < count && !ec; ++i) {
        sockets.emplace_back(io);
        sockets.back().connect({tether::test::loopback, port}, ec);
      }
      char byte;
      [[maybe_unused]] const auto n = ::read(hold[0], &byte, 1);
      ::_exit(ec ? 1 : 0);
    }
    ::close(hold[0]);
    release = hold[1];
  }
  void connect_to(std::uint16_t port) const {
    REQUIRE(::write(release, &port, sizeof port) == sizeof port);
  }
  ~connecting_child() {
    if (release >= 0)
      ::close(release);
    if (pid > 0)
      ::waitpid(pid, nullptr, 0);
  }
  connecting_child(const connecting_child&) = delete;
  connecting_child& operator=(const connecting_child&) = delete;

  pid_t pid = -1;
  int release = -1;
};

std::string shares(const std::vector<std::size_t>& counts) {
  std::size_t total = 0;
  for (const auto n : counts)
    total += n;
  std::string text;
  for (const auto n : counts)
    text += fmt::format("{}{} ({:.1f} %)", text.empty() ? "" : " / ", n, 100.0 * static_cast<double>(n) / static_cast<double>(total));
  return text;
}

} // namespace

TEST_CASE("balance: 10,000 connections over two shards, as SO_REUSEPORT's hash spreads them and as least_loaded "
          "does") {
  const std::size_t total = 10'000 / static_cast<std::size_t>(tether::test::time_scale);
  for (const auto balance : {tether::listener_options::balancing::by_kernel,
                             tether::listener_options::balancing::least_loaded}) {
    const connecting_child clients{total};
    asio::io_context io;
    line_listener server{io, {.backlog = 4096, .reuse_port = true, .shards = 2, .balance = balance}};
    REQUIRE_FALSE(server.start());
    clients.connect_to(server.local_endpoint().port());
    REQUIRE(run_until(io, [&] { return server.connections() == total; }, scaled(60'000ms)));
    REQUIRE(run_until(io, [&] {
      const auto counts = server.shard_connections();
      return counts.size() == 2 && counts[0] + counts[1] == total;
    }));
    const auto counts = server.shard_connections();
    const bool by_kernel = balance == tether::listener_options::balancing::by_kernel;
    fmt::print("BALANCE | {} connections over 2 shards | {} | {}\n", total, by_kernel ? "SO_REUSEPORT hash" : "least_loaded",
               shares(counts));
    if (by_kernel) {
      // The hash of random source ports: about even, never exact; 45 % is ten standard deviations out.
      CHECK(counts[0] >= total * 45 / 100);
      CHECK(counts[1] >= total * 45 / 100);
    } else {
      CHECK(counts[0] >= total / 2 - 1);
      CHECK(counts[1] >= total / 2 - 1);
    }
    server.stop(0ms);
    REQUIRE(run_until(io, [&] { return server.connections() == 0; }, scaled(20'000ms)));
  }
}

TEST_CASE("balance: least_loaded sends new connections to the shard whose connections closed") {
  asio::io_context io;
  line_listener server{io, {.shards = 2, .balance = tether::listener_options::balancing::least_loaded}};
  std::mutex guard;
  std::map<std::uint16_t, std::thread::id> served_on;  // by client port
  server.on_accept([&](auto& conn) {
    const std::lock_guard lock{guard};
    served_on[conn.remote().port()] = std::this_thread::get_id();
  });
  REQUIRE_FALSE(server.start());
  const auto shard_0_thread = std::this_thread::get_id();

  std::vector<std::unique_ptr<asio::ip::tcp::socket>> clients;
  const auto connect = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      clients.push_back(std::make_unique<asio::ip::tcp::socket>(io));
      clients.back()->connect(server.local_endpoint());
    }
    REQUIRE(run_until(io, [&] {
      const std::lock_guard lock{guard};
      return served_on.size() == clients.size();
    }));
  };
  connect(40);
  CHECK(server.shard_connections() == std::vector<std::size_t>{20, 20});

  // Ten of shard 1's clients leave; the next ten connections all go there.
  std::size_t left = 0;
  for (auto& client : clients) {
    const auto port = client->local_endpoint().port();
    const bool on_shard_1 = [&] {
      const std::lock_guard lock{guard};
      return served_on.at(port) != shard_0_thread;
    }();
    if (on_shard_1 && left < 10) {
      client->close();
      ++left;
    }
  }
  REQUIRE(run_until(io, [&] { return server.shard_connections() == std::vector<std::size_t>{20, 10}; }));
  const std::size_t before = clients.size();
  connect(10);
  CHECK(server.shard_connections() == std::vector<std::size_t>{20, 20});
  for (std::size_t i = before; i < clients.size(); ++i) {
    const std::lock_guard lock{guard};
    CHECK(served_on.at(clients[i]->local_endpoint().port()) != shard_0_thread);
  }
  server.stop(0ms);
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
}
