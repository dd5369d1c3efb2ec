// Memory per idle connection: what a server process grows by per connection it holds, and what the kernel holds
// per connection pair, for tether and for the plain Asio design it replaces.
//
//   tether  tether::listener, line_codec, all four liveness strategies active (bounds beyond the run).
//   asio    a shared_ptr session per connection with a 64-byte buffer and a pending async_read_some, plus one
//           asio::steady_timer with a pending async_wait: the usual way to watch a connection in plain Asio.
//
// Method (as in the reference measurements of this machine): the server runs pinned to CPU1 and the client in a
// separate process on CPU0. Page cache is dropped, then after 1.5 s a first reading is taken; the client opens
// N connections with blocking connect, and 2 s after the server has accepted all of them a second reading is
// taken. A reading is /proc/meminfo, /proc/net/sockstat, /proc/slabinfo, each process's VmRSS and the server's
// own mallinfo2 heap figure. Teardown sends RST so that no TIME_WAIT carries into the next run. Variants
// alternate within each round; each figure is the median over the rounds.
//
//   tether_bench_memory [--quick] [--connections 1000,5000,10000] [--rounds 3] [--data FILE]
//   tether_bench_memory serve --variant tether|asio      (used by the driver)
//   tether_bench_memory hold --port P --connections N    (used by the driver)
#include "../support/all_strategies.hpp"
#include "../support/control.hpp"
#include "../support/flags.hpp"
#include "../support/procfs.hpp"
#include "../support/process.hpp"
#include "../support/summary.hpp"
#include "openssl_floor.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/tls.hpp>

#include "test_certificates.hpp"
#include <tether/connection.hpp>
#include <tether/listener.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using bench::child_process;

constexpr int server_cpu = 1;
constexpr int client_cpu = 0;

std::string report_line(std::size_t connections) {
  return fmt::format("report {} {} {}", connections, bench::heap_in_use(), bench::resident_bytes(::getpid()));
}

template <class Codec>
int serve_tether(Codec codec) {
  asio::io_context io{1};
  tether::listener server{io, {.backlog = 4096}, std::move(codec), bench::all_four_strategies()};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  if (auto ec = server.start()) {
    fmt::print(stderr, "tether server cannot listen: {}\n", ec.message());
    return 1;
  }
  bench::control_channel control{
      io, [&](std::string_view) { bench::control_channel::reply(report_line(server.connections())); },
      [&] { server.stop(0ms); }};
  control.start();
  bench::control_channel::reply(fmt::format("port {}", server.local_endpoint().port()));
  io.run();
  return 0;
}

class asio_session : public std::enable_shared_from_this<asio_session> {
public:
  asio_session(asio::ip::tcp::socket socket, std::size_t& live)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), live_(live) {
    ++live_;
  }
  asio_session(const asio_session&) = delete;
  asio_session& operator=(const asio_session&) = delete;
  ~asio_session() { --live_; }

  void start() {
    read();
    timer_.expires_after(1h);
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (!ec)
        self->socket_.close();
    });
  }

private:
  void read() {
    socket_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](const std::error_code& ec, std::size_t) {
      if (ec) {
        self->timer_.cancel();
        return;
      }
      self->read();
    });
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, 64> buffer_;
  std::size_t& live_;
};

int serve_asio() {
  asio::io_context io{1};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  acceptor.listen(4096);
  std::size_t live = 0;
  std::function<void()> accept_next = [&] {
    acceptor.async_accept([&](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec)
        return;
      std::make_shared<asio_session>(std::move(socket), live)->start();
      accept_next();
    });
  };
  accept_next();
  bench::control_channel control{io, [&](std::string_view) { bench::control_channel::reply(report_line(live)); },
                                 [&] { io.stop(); }};
  control.start();
  bench::control_channel::reply(fmt::format("port {}", acceptor.local_endpoint().port()));
  io.run();
  return 0;
}

// A TLS server needs a certificate: one made for this run, and a client context that skips verification (the
// benchmark measures memory, not trust).
int serve_tls() {
  const tether::test::test_certificates files;
  std::error_code ec;
  auto context = tether::tls_server_context(files.server_certificate_file(), files.server_key_file(), ec);
  if (!context) {
    fmt::print(stderr, "tls server context: {}\n", ec.message());
    return 1;
  }
  return serve_tether(tether::tls_codec<tether::line_codec>{.context = context});
}

// Opens the connections when told to (each upgraded to WebSocket, or through a TLS handshake, first), and resets
// them all when told to close (or when the driver goes away).
int hold(std::uint16_t port, std::size_t count, bool upgrade, bool tls) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> tls_context{SSL_CTX_new(TLS_client_method()), &SSL_CTX_free};
  std::vector<std::unique_ptr<SSL, decltype(&SSL_free)>> sessions;
  constexpr std::string_view request = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                       "Sec-WebSocket-Version: 13\r\n\r\n";
  std::vector<int> sockets;
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (std::string command; std::getline(std::cin, command) && command == "connect";) {
    for (std::size_t i = 0; i < count; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
        std::perror("connect");
        break;
      }
      sockets.push_back(fd);
      if (tls) {
        sessions.emplace_back(SSL_new(tls_context.get()), &SSL_free);
        SSL_set_fd(sessions.back().get(), fd);
        if (SSL_connect(sessions.back().get()) != 1) {
          std::fprintf(stderr, "the TLS handshake failed\n");
          break;
        }
      }
      if (upgrade) {
        std::array<char, 512> answer{};
        if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size()) ||
            ::read(fd, answer.data(), answer.size()) <= 0 || std::string_view{answer.data()}.substr(0, 12) != "HTTP/1.1 101") {
          std::fprintf(stderr, "the WebSocket upgrade failed\n");
          break;
        }
      }
    }
    fmt::print("connected {}\n", sockets.size());
    std::fflush(stdout);
  }
  const linger abortive{1, 0};
  for (const int fd : sockets) {
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
    ::close(fd);
  }
  return 0;
}

struct reading {
  std::map<std::string, std::int64_t> meminfo;
  bench::sockstat sockets;
  std::int64_t proc_inodes = 0;  // slab bytes of proc_inode_cache: the /proc fd-scan artifact
  std::int64_t server_heap = 0;
  std::int64_t server_rss = 0;
  std::int64_t client_rss = 0;
  std::size_t accepted = 0;
};

struct server_report {
  std::size_t connections = 0;
  std::int64_t heap = 0;
  std::int64_t rss = 0;
};

server_report ask(child_process& server) {
  if (!server.send_line("report"))
    throw std::runtime_error{"the server stopped reading its commands"};
  const auto line = server.expect("report ", 10s);
  if (!line)
    throw std::runtime_error{"the server did not report"};
  server_report report;
  std::istringstream fields{line->substr(7)};
  fields >> report.connections >> report.heap >> report.rss;
  return report;
}

reading take_reading(child_process& server, child_process& client) {
  reading r;
  const auto report = ask(server);
  r.meminfo = bench::read_meminfo();
  r.sockets = bench::read_sockstat();
  r.proc_inodes = bench::slab_cache_bytes("proc_inode_cache");
  r.server_heap = report.heap;
  r.server_rss = report.rss;
  r.accepted = report.connections;
  r.client_rss = bench::resident_bytes(client.pid());
  return r;
}

// Per-connection growth between two readings of one run.
struct growth {
  double server_heap = 0;
  double server_rss = 0;
  double client_rss = 0;
  double slab = 0;           // per pair
  double unreclaimable = 0;  // per pair
  double proc_inodes = 0;    // per pair
  double sockets_used = 0;
  double tcp_memory = 0;
  double tcp_time_wait = 0;
};

growth measure_once(const std::string& variant, std::size_t n) {
  const std::string self = bench::self_executable();
  child_process server{{self, "serve", "--variant", variant}, server_cpu};
  const auto announced = server.expect("port ", 10s);
  if (!announced)
    throw std::runtime_error{"the " + variant + " server did not start"};
  std::vector<std::string> hold_command{self, "hold", "--port", announced->substr(5), "--connections", std::to_string(n)};
  if (variant == "websocket")
    hold_command.push_back("--upgrade");
  if (variant == "tls")
    hold_command.push_back("--tls");
  child_process client{hold_command, client_cpu};
  std::this_thread::sleep_for(1500ms);
  const reading before = take_reading(server, client);
  client.send_line("connect");
  const auto connected = client.expect("connected ", 120s);
  if (!connected || connected->substr(10) != std::to_string(n))
    throw std::runtime_error{"the client could not open " + std::to_string(n) + " connections"};
  const auto accept_deadline = std::chrono::steady_clock::now() + 30s;
  while (ask(server).connections < n) {
    if (std::chrono::steady_clock::now() > accept_deadline || bench::interrupted())
      throw std::runtime_error{"the server did not accept every connection"};
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(2s);
  const reading after = take_reading(server, client);
  client.send_line("close");
  client.wait(30s);
  server.stop(10s);

  const double count = static_cast<double>(n);
  const auto per = [&](std::int64_t a, std::int64_t b) { return static_cast<double>(b - a) / count; };
  return {per(before.server_heap, after.server_heap),
          per(before.server_rss, after.server_rss),
          per(before.client_rss, after.client_rss),
          per(before.meminfo.at("Slab"), after.meminfo.at("Slab")),
          per(before.meminfo.at("SUnreclaim"), after.meminfo.at("SUnreclaim")),
          per(before.proc_inodes, after.proc_inodes),
          per(before.sockets.sockets_used, after.sockets.sockets_used),
          per(before.sockets.tcp_memory_bytes, after.sockets.tcp_memory_bytes),
          per(before.sockets.tcp_time_wait, after.sockets.tcp_time_wait)};
}

struct options {
  std::vector<std::size_t> connections{1000, 5000, 10'000};
  std::size_t rounds = 3;
  std::string data_file;
};

growth median_growth(const std::vector<growth>& runs) {
  const auto median_of = [&](double growth::*field) {
    std::vector<double> values;
    for (const auto& run : runs)
      values.push_back(run.*field);
    return bench::median(values);
  };
  return {median_of(&growth::server_heap),  median_of(&growth::server_rss),    median_of(&growth::client_rss),
          median_of(&growth::slab),         median_of(&growth::unreclaimable), median_of(&growth::proc_inodes),
          median_of(&growth::sockets_used), median_of(&growth::tcp_memory),    median_of(&growth::tcp_time_wait)};
}

void print_sizes() {
  using bare = tether::connection<tether::line_codec>;
  using watched = tether::connection<tether::line_codec, bench::all_four_strategies_type>;
  fmt::print("sizeof(tether::connection<line_codec>)                          {:>4} B\n", sizeof(bare));
  fmt::print("sizeof(tether::connection<line_codec, four strategies>)        {:>4} B\n", sizeof(watched));
  fmt::print("  of which socket {} B, wheel node {} B, liveness state {} B, activity {} B, remote endpoint {} B\n",
             sizeof(watched::socket_type), sizeof(tether::wheel_node), sizeof(bench::all_four_strategies_type::state),
             sizeof(tether::activity), sizeof(asio::ip::tcp::endpoint));
  fmt::print("sizeof(asio::ip::tcp::socket) {} B, sizeof(asio::steady_timer) {} B\n", sizeof(asio::ip::tcp::socket),
             sizeof(asio::steady_timer));
}

int drive(const options& opts) {
  bench::begin_driver();
  const bool can_drop_caches = ::geteuid() == 0;
  fmt::print("Memory per idle connection. Server on CPU{}, client in a separate process on CPU{}; {} round(s), "
             "variants alternating; medians.\n{}\n",
             server_cpu, client_cpu, opts.rounds,
             can_drop_caches ? "Page cache dropped before each run."
                             : "Not root: page cache not dropped, slab figures unavailable; kernel figures are rough.");
  print_sizes();
  const std::array<std::string, 4> variants{"tether", "websocket", "tls", "asio"};
  const double openssl_floor = bench::memory::openssl_bytes_per_idle_session(1000);
  std::ofstream data;
  if (!opts.data_file.empty()) {
    data.open(opts.data_file);
    data << "# N tether_heap tether_rss asio_heap asio_rss slab_per_pair unreclaimable_per_pair proc_inode_per_pair\n";
  }
  for (const std::size_t n : opts.connections) {
    std::map<std::string, std::vector<growth>> runs;
    for (std::size_t round = 0; round < opts.rounds && !bench::interrupted(); ++round) {
      for (std::size_t k = 0; k < variants.size(); ++k) {
        const auto& variant = variants[(round + k) % variants.size()];
        if (can_drop_caches)
          bench::drop_caches();
        runs[variant].push_back(measure_once(variant, n));
      }
    }
    if (bench::interrupted())
      return 130;
    const growth tether = median_growth(runs["tether"]);
    const growth websocket = median_growth(runs["websocket"]);
    const growth tls = median_growth(runs["tls"]);
    const growth asio = median_growth(runs["asio"]);
    fmt::print("\nN = {} idle connections\n", n);
    fmt::print("  {:<42} {:>12} {:>12} {:>14}\n", "server process, per connection", "heap B", "RSS B", "client RSS B");
    fmt::print("  {:<42} {:>12.0f} {:>12.0f} {:>14.0f}\n", "tether (line_codec, 4 strategies)", tether.server_heap,
               tether.server_rss, tether.client_rss);
    fmt::print("  {:<42} {:>12.0f} {:>12.0f} {:>14.0f}\n", "tether (websocket_codec, 4 strategies)",
               websocket.server_heap, websocket.server_rss, websocket.client_rss);
    fmt::print("  {:<42} {:>12.0f} {:>12.0f} {:>14.0f}\n", "asio (64 B buffer, read + steady_timer wait)",
               asio.server_heap, asio.server_rss, asio.client_rss);
    fmt::print("  {:<42} {:>12.0f} {:>12.0f} {:>14.0f}\n", "tether (tls_codec<line_codec>, 4 strategies)",
               tls.server_heap, tls.server_rss, tls.client_rss);
    fmt::print("  an idle WebSocket connection costs {:+.0f} B heap, {:+.0f} B RSS against line_codec\n",
               websocket.server_heap - tether.server_heap, websocket.server_rss - tether.server_rss);
    fmt::print("  an idle TLS connection costs {:+.0f} B heap, {:+.0f} B RSS against plain TCP (record buffers "
               "released);\n    of which OpenSSL's own session, measured bare in this process: {:.0f} B heap\n",
               tls.server_heap - tether.server_heap, tls.server_rss - tether.server_rss, openssl_floor);
    const double tether_user = std::max(tether.server_heap, tether.server_rss);
    fmt::print("  tether / asio: heap {:.2f}x, RSS {:.2f}x; goal <= 512 B user space per connection: {:.0f} B -> {}\n",
               tether.server_heap / asio.server_heap, tether.server_rss / asio.server_rss, tether_user,
               tether_user <= 512 ? "met" : "NOT met");
    const auto kernel = [&](const char* name, const growth& g) {
      fmt::print("  kernel, {:<7} per pair: Slab {:>6.0f} B (SUnreclaim {:>5.0f}, /proc fd-scan inodes {:>5.0f}, "
                 "Slab without them {:>6.0f}); sockets +{:.2f}/conn, TCP mem {:+.0f} B, TIME_WAIT {:+.2f}\n",
                 name, g.slab, g.unreclaimable, g.proc_inodes, g.slab - g.proc_inodes, g.sockets_used, g.tcp_memory,
                 g.tcp_time_wait);
    };
    kernel("tether", tether);
    kernel("asio", asio);
    if (data.is_open())
      data << fmt::format("{} {:.0f} {:.0f} {:.0f} {:.0f} {:.0f} {:.0f} {:.0f}\n", n, tether.server_heap,
                          tether.server_rss, asio.server_heap, asio.server_rss, (tether.slab + asio.slab) / 2,
                          (tether.unreclaimable + asio.unreclaimable) / 2, (tether.proc_inodes + asio.proc_inodes) / 2);
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode == "serve") {
      bench::flags given{argc, argv, 2};
      const std::string variant = given.text("--variant", "");
      given.finish();
      if (variant == "tether")
        return serve_tether(tether::line_codec{});
      if (variant == "websocket")
        return serve_tether(tether::websocket_codec{.path = ""});
      if (variant == "tls")
        return serve_tls();
      if (variant == "asio")
        return serve_asio();
      throw bench::usage_error{"--variant is one of tether, websocket, tls, asio"};
    }
    if (mode == "hold") {
      bench::flags given{argc, argv, 2};
      const auto port = given.integer<std::uint16_t>("--port", 0);
      const auto count = given.integer<std::size_t>("--connections", 0);
      const bool upgrade = given.has("--upgrade");
      const bool tls = given.has("--tls");
      given.finish();
      return hold(port, count, upgrade, tls);
    }
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.connections = {1000};
      opts.rounds = 1;
    }
    opts.connections = given.counts("--connections", opts.connections);
    opts.rounds = given.integer("--rounds", opts.rounds);
    opts.data_file = given.text("--data", "");
    given.finish();
    if (opts.rounds == 0)
      throw bench::usage_error{"--rounds must be positive"};
    for (const auto n : opts.connections) {
      if (n > 19'000)
        throw bench::usage_error{"--connections above 19000 would pass the 20000 descriptors one process may open"};
    }
    return drive(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_memory: {}\nusage: tether_bench_memory [--quick] [--connections 1000,5000,10000] "
               "[--rounds 3] [--data FILE]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_memory: {}\n", e.what());
    return 1;
  }
}
