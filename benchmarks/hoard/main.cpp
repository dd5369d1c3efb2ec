// Memory under a partial-frame hoarding attack, with and without a buffer budget: N hostile connections each
// announce a frame of the codec's largest size and send all of it but the last bytes, then wait. Without a
// budget the server holds every partial frame; with one (listener_options::buffer_budget) it closes the
// largest holders with over_budget and holds at most the budget.
//
//   unbudgeted  tether::listener, length_prefixed_codec (1 MiB frames), no budget: the baseline.
//   budgeted    the same with buffer_budget = --budget.
//
// Method: the server runs pinned to CPU1, the attacking client in a separate process on CPU0 (blocking connects
// and writes). A first reading (the server's mallinfo2 heap and VmRSS) before the attack, a second one 1 s after
// the client has written everything it could; then an honest client on a fresh connection sends 100 messages of
// 10 KB and counts their echoes, which says whether the server still serves. Teardown with RST.
//
//   tether_bench_hoard [--quick] [--connections 5000] [--bytes 1000000] [--budget 64MiB-in-bytes]
//   tether_bench_hoard serve --budget BYTES            (used by the driver)
//   tether_bench_hoard attack --port P --connections N --bytes B   (used by the driver)
#include "../support/control.hpp"
#include "../support/flags.hpp"
#include "../support/procfs.hpp"
#include "../support/process.hpp"

#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/listener.hpp>

#include <asio/io_context.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using bench::child_process;

constexpr int server_cpu = 1;
constexpr int client_cpu = 0;
constexpr std::uint32_t announced_frame = 1024 * 1024;  // length_prefixed_codec's max_payload_size

std::string frame_header(std::uint32_t length) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
          static_cast<char>(length), '\0'};
}

int serve(std::size_t budget) {
  asio::io_context io{1};
  tether::listener server{io, {.backlog = 4096, .buffer_budget = budget}, tether::length_prefixed_codec{}};
  server.on_message([](auto& conn, std::string_view payload) { conn.send(payload); });
  if (auto ec = server.start()) {
    fmt::print(stderr, "server cannot listen: {}\n", ec.message());
    return 1;
  }
  bench::control_channel control{io,
                                 [&](std::string_view) {
                                   bench::control_channel::reply(fmt::format(
                                       "report {} {} {} {} {}", bench::heap_in_use(), bench::resident_bytes(::getpid()),
                                       server.stats().buffered_bytes(),
                                       server.stats().closed(tether::close_reason::over_budget), server.connections()));
                                 },
                                 [&] { server.stop(0ms); }};
  control.start();
  bench::control_channel::reply(fmt::format("port {}", server.local_endpoint().port()));
  io.run();
  return 0;
}

int connect_to(std::uint16_t port) {
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
    std::perror("connect");
    if (fd >= 0)
      ::close(fd);
    return -1;
  }
  return fd;
}

// Everything or nothing; a connection the server closed fails the rest of its write.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// An honest client: 100 messages of 10 KB, each echo awaited for at most 5 s.
std::size_t probe(std::uint16_t port) {
  const int fd = connect_to(port);
  if (fd < 0)
    return 0;
  const timeval wait{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  const std::string message = frame_header(10 * 1024) + std::string(10 * 1024, 'p');
  std::array<char, 64 * 1024> buffer{};
  std::size_t echoed = 0;
  for (int i = 0; i < 100 && write_all(fd, message); ++i) {
    std::size_t received = 0;
    while (received < message.size()) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n <= 0)
        break;
      received += static_cast<std::size_t>(n);
    }
    if (received != message.size())
      break;
    ++echoed;
  }
  ::close(fd);
  return echoed;
}

int attack(std::uint16_t port, std::size_t count, std::size_t bytes) {
  std::vector<int> sockets;
  const std::string hoard = frame_header(announced_frame) + std::string(bytes, 'h');
  for (std::string command; std::getline(std::cin, command);) {
    if (command == "attack") {
      std::size_t written = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const int fd = connect_to(port);
        if (fd < 0)
          break;
        sockets.push_back(fd);
        written += write_all(fd, hoard) ? 1 : 0;
      }
      fmt::print("attacked {} {}\n", sockets.size(), written);
    } else if (command == "probe") {
      fmt::print("probed {}\n", probe(port));
    } else {
      break;
    }
    std::fflush(stdout);
  }
  const linger abortive{1, 0};
  for (const int fd : sockets) {
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
    ::close(fd);
  }
  return 0;
}

struct report {
  std::int64_t heap = 0;
  std::int64_t rss = 0;
  std::uint64_t buffered = 0;
  std::uint64_t over_budget = 0;
  std::size_t connections = 0;
};

report ask(child_process& server) {
  if (!server.send_line("report"))
    throw std::runtime_error{"the server stopped reading its commands"};
  const auto line = server.expect("report ", 10s);
  if (!line)
    throw std::runtime_error{"the server did not report"};
  report r;
  std::istringstream fields{line->substr(7)};
  fields >> r.heap >> r.rss >> r.buffered >> r.over_budget >> r.connections;
  return r;
}

struct outcome {
  std::int64_t heap = 0;  // growth over the attack
  std::int64_t rss = 0;
  report after;
  std::size_t written = 0;  // hoards the server took whole
  std::size_t echoed = 0;   // of the honest client's 100 messages
};

outcome run_once(std::size_t budget, std::size_t n, std::size_t bytes) {
  const std::string self = bench::self_executable();
  child_process server{{self, "serve", "--budget", std::to_string(budget)}, server_cpu};
  const auto announced = server.expect("port ", 10s);
  if (!announced)
    throw std::runtime_error{"the server did not start"};
  child_process client{{self, "attack", "--port", announced->substr(5), "--connections", std::to_string(n), "--bytes",
                        std::to_string(bytes)},
                       client_cpu};
  std::this_thread::sleep_for(1s);
  const report before = ask(server);
  client.send_line("attack");
  const auto attacked = client.expect("attacked ", 300s);
  if (!attacked)
    throw std::runtime_error{"the attack did not finish"};
  std::istringstream fields{attacked->substr(9)};
  std::size_t connected = 0;
  outcome result;
  fields >> connected >> result.written;
  if (connected != n)
    throw std::runtime_error{fmt::format("the attacker opened {} of {} connections", connected, n)};
  std::this_thread::sleep_for(1s);
  result.after = ask(server);
  result.heap = result.after.heap - before.heap;
  result.rss = result.after.rss - before.rss;
  client.send_line("probe");
  const auto probed = client.expect("probed ", 60s);
  result.echoed = probed ? std::stoul(probed->substr(7)) : 0;
  client.send_line("close");
  client.wait(60s);
  server.stop(10s);
  return result;
}

struct options {
  std::size_t connections = 5000;
  std::size_t bytes = 1'000'000;
  std::size_t budget = 64 * 1024 * 1024;
};

int drive(const options& opts) {
  bench::begin_driver();
  fmt::print("Partial-frame hoarding: {} connections each announce a {} B frame and send {} B of it. Server on CPU{}, "
             "attacker in a separate process on CPU{}.\n",
             opts.connections, announced_frame, opts.bytes, server_cpu, client_cpu);
  const outcome unbudgeted = run_once(0, opts.connections, opts.bytes);
  if (bench::interrupted())
    return 130;
  const outcome budgeted = run_once(opts.budget, opts.connections, opts.bytes);
  const auto mib = [](std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); };
  fmt::print("  {:<34} {:>12} {:>12} {:>14} {:>12} {:>14}\n", "server", "heap MiB", "RSS MiB", "buffered MiB",
             "over_budget", "honest echoes");
  const auto row = [&](const std::string& name, const outcome& o) {
    fmt::print("  {:<34} {:>12.1f} {:>12.1f} {:>14.1f} {:>12} {:>10} / 100\n", name, mib(o.heap), mib(o.rss),
               mib(static_cast<std::int64_t>(o.after.buffered)), o.after.over_budget, o.echoed);
  };
  row("unbudgeted (baseline)", unbudgeted);
  row(fmt::format("buffer_budget = {:.0f} MiB", mib(static_cast<std::int64_t>(opts.budget))), budgeted);
  const double ratio = static_cast<double>(budgeted.rss) / static_cast<double>(std::max<std::int64_t>(1, unbudgeted.rss));
  fmt::print("  budgeted / unbudgeted RSS growth: {:.3f}x; budgeted heap growth {:.2f}x the budget; the honest "
             "client was {} under attack\n",
             ratio, static_cast<double>(budgeted.heap) / static_cast<double>(opts.budget),
             budgeted.echoed == 100 ? "served" : "NOT served");
  return budgeted.echoed == 100 && budgeted.after.buffered <= opts.budget ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode == "serve") {
      bench::flags given{argc, argv, 2};
      const auto budget = given.integer<std::size_t>("--budget", 0);
      given.finish();
      return serve(budget);
    }
    if (mode == "attack") {
      bench::flags given{argc, argv, 2};
      const auto port = given.integer<std::uint16_t>("--port", 0);
      const auto count = given.integer<std::size_t>("--connections", 0);
      const auto bytes = given.integer<std::size_t>("--bytes", 0);
      given.finish();
      return attack(port, count, bytes);
    }
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.connections = 200;
      opts.bytes = 200'000;
      opts.budget = 8 * 1024 * 1024;
    }
    opts.connections = given.integer("--connections", opts.connections);
    opts.bytes = given.integer("--bytes", opts.bytes);
    opts.budget = given.integer("--budget", opts.budget);
    given.finish();
    if (opts.connections == 0 || opts.connections > 19'000)
      throw bench::usage_error{"--connections must be between 1 and 19000 (20000 descriptors per process)"};
    if (opts.bytes >= announced_frame)
      throw bench::usage_error{"--bytes must stay below the announced frame, 1048576"};
    if (opts.budget == 0)
      throw bench::usage_error{"--budget must be positive"};
    return drive(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_hoard: {}\nusage: tether_bench_hoard [--quick] [--connections 5000] [--bytes 1000000] "
               "[--budget 67108864]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_hoard: {}\n", e.what());
    return 1;
  }
}
