// Capacity: hold as many concurrent live connections as the machine allows, with heartbeat and the idle reaper
// running on every one of them, and show that none is falsely declared dead.
//
// One process may open 20000 descriptors, so the servers are sharded over processes sharing one port with
// SO_REUSEPORT, and the clients over processes that each connect from source addresses of their own (127.0.a.b,
// a few per process, bound with IP_BIND_ADDRESS_NO_PORT so that the kernel picks the port at connect time).
// Clients answer the servers' pings and send nothing else: the heartbeat is the only traffic while holding.
//
// Checks before starting (descriptors left in fs.file-max, MemAvailable against the memory the reference
// measured per pair); a setup that stops making progress ends the run early with what was reached. Every child
// process is stopped on the way out, and dies with the driver if the driver is killed.
//
//   tether_bench_capacity [--quick] [--connections 20000] [--hold 10s] [--processes P]
//                         [--heartbeat-interval 2s] [--heartbeat-timeout 2s] [--read-idle 30min]
//                         [--connect-rate N] [--stall-limit 20s] [--setup-limit 10min]
//   The full attempt (a ping costs each end 10-20 us of CPU here, more as the connection count grows, so a
//   million connections on 2 cores want an interval of about a minute):
//     tether_bench_capacity --connections 1000000 --hold 120s --connect-rate 5000
//                           --heartbeat-interval 60s --heartbeat-timeout 20s
#include "peers.hpp"

#include "../support/flags.hpp"
#include "../support/procfs.hpp"
#include "../support/process.hpp"

#include <tether/close_reason.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bench::child_process;
using clock_type = std::chrono::steady_clock;

// Per process: the descriptor limit is 20000, and SO_REUSEPORT's hash spreads connections over the servers
// within a few percent, so each process is planned well below it.
constexpr std::size_t most_per_process = 16'000;
constexpr std::size_t default_per_process = 15'000;
// Kernel and user memory per connection pair measured on this machine (limits-on-this-machine.md), with room.
constexpr std::int64_t planned_bytes_per_pair = 14 * 1024;
// Setup stops short of this much MemAvailable, so that other work on the machine (and the kernel) keeps room.
std::int64_t memory_floor() {
  return std::min(std::int64_t{3} << 30, bench::read_meminfo().at("MemTotal") / 8);
}

struct options {
  std::size_t connections = 20'000;
  std::chrono::milliseconds hold = 10s;
  std::size_t processes = 0;  // per side; 0 = enough for default_per_process each
  std::chrono::milliseconds heartbeat_interval = 2s;
  std::chrono::milliseconds heartbeat_timeout = 2s;
  std::chrono::milliseconds read_idle = 30min;
  double connect_rate = 0;  // connects per second over all clients; 0 = unpaced
  std::chrono::milliseconds stall_limit = 20s;
  std::chrono::milliseconds setup_limit = 10min;
};

std::int64_t free_descriptors() {
  std::ifstream file{"/proc/sys/fs/file-nr"};
  std::int64_t allocated = 0;
  std::int64_t unused = 0;
  std::int64_t maximum = 0;
  file >> allocated >> unused >> maximum;
  return maximum - allocated;
}

std::size_t ephemeral_ports() {
  std::ifstream file{"/proc/sys/net/ipv4/ip_local_port_range"};
  std::size_t low = 0;
  std::size_t high = 0;
  file >> low >> high;
  return high >= low ? high - low + 1 : 0;
}

std::string gib(std::int64_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30)); }

// Each source address keeps its connections to one server port well below half of the ephemeral range: Linux
// looks for a free port among those of one parity first, and past ~14k connections per (source, destination)
// connect() slows down by an order of magnitude (limits-on-this-machine.md) while the port search burns CPU.
constexpr std::size_t connections_per_source = 4000;

// Distinct for every client and never 127.0.0.1, where the servers listen.
std::string source_addresses(std::size_t client, std::size_t per_client) {
  std::string list;
  for (std::size_t k = 0; k < per_client; ++k) {
    const std::size_t index = client * per_client + k;
    list += fmt::format("{}127.0.{}.{}", k == 0 ? "" : ",", 1 + index / 250, 1 + index % 250);
  }
  return list;
}

struct fleet {
  fleet() = default;
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  // Every client resets its connections at once, however the run ends, before anyone waits for anyone.
  ~fleet() {
    for (auto& client : clients)
      client.close_input();
    for (auto& client : clients)
      client.stop(30s);
    for (auto& server : servers)
      server.close_input();
  }

  std::vector<child_process> servers;
  std::vector<child_process> clients;
};

// Asks every process at once and then collects the answers, so that a round of questions takes as long as the
// slowest process rather than the sum of all of them.
std::vector<std::string> ask_all(std::vector<child_process>& processes, const char* what) {
  for (auto& process : processes)
    process.send_line("report");
  std::vector<std::string> answers;
  for (auto& process : processes) {
    auto line = process.expect("report ", 30s);
    if (!line && bench::interrupted())
      throw std::runtime_error{"interrupted"};
    if (!line)
      throw std::runtime_error{fmt::format("{} {} stopped answering", what, process.pid())};
    answers.push_back(std::move(*line));
  }
  return answers;
}
struct totals {
  std::int64_t live = 0;
  std::uint64_t accepted = 0;
  std::uint64_t heartbeats = 0;
  std::int64_t slowest_heartbeat_us = 0;
  std::int64_t server_heap = 0;
  std::int64_t server_rss = 0;
  std::int64_t client_rss = 0;  // growth since the clients started
  std::uint64_t connected = 0;
  std::uint64_t failed = 0;
  bool clients_finished = true;
  bench::capacity::close_counts server_closes{};
  bench::capacity::close_counts client_closes{};
  std::string first_error;
};

totals add_up(fleet& all) {
  totals t;
  for (const auto& line : ask_all(all.servers, "server")) {
    const auto r = bench::capacity::parse_server_report(line);
    t.live += r.live;
    t.accepted += r.opened;
    t.heartbeats += r.heartbeats;
    t.slowest_heartbeat_us = std::max(t.slowest_heartbeat_us, r.slowest_heartbeat_us);
    t.server_heap += r.heap;
    t.server_rss += r.rss;
    for (std::size_t i = 0; i < r.closes.size(); ++i)
      t.server_closes[i] += r.closes[i];
  }
  for (const auto& line : ask_all(all.clients, "client")) {
    const auto r = bench::capacity::parse_client_report(line);
    t.connected += r.connected;
    t.failed += r.failed;
    t.client_rss += r.rss - r.rss_before_connecting;
    t.clients_finished = t.clients_finished && r.finished;
    for (std::size_t i = 0; i < r.closes.size(); ++i)
      t.client_closes[i] += r.closes[i];
    if (t.first_error.empty())
      t.first_error = r.first_error;
  }
  return t;
}

std::chrono::nanoseconds cpu_of(const std::vector<child_process>& processes) {
  std::chrono::nanoseconds total{0};
  for (const auto& process : processes)
    total += bench::cpu_time(process.pid());
  return total;
}

struct kernel_reading {
  std::int64_t slab = 0;
  std::int64_t unreclaimable = 0;
  std::int64_t available = 0;
  std::int64_t proc_inodes = 0;
  bench::sockstat sockets;
};

kernel_reading read_kernel() {
  const auto meminfo = bench::read_meminfo();
  return {meminfo.at("Slab"), meminfo.at("SUnreclaim"), meminfo.at("MemAvailable"),
          bench::slab_cache_bytes("proc_inode_cache"), bench::read_sockstat()};
}

std::string closes_text(const bench::capacity::close_counts& counts) {
  std::string text;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] != 0)
      text += fmt::format(" {}={}", tether::close_reason_name(static_cast<tether::close_reason>(r)), counts[r]);
  }
  return text.empty() ? " none" : text;
}

bench::capacity::close_counts difference(const bench::capacity::close_counts& later,
                                         const bench::capacity::close_counts& earlier) {
  bench::capacity::close_counts d{};
  for (std::size_t i = 0; i < d.size(); ++i)
    d[i] = later[i] - earlier[i];
  return d;
}

// Refuses a plan the machine cannot carry, before anything is started.
std::optional<std::string> unworkable(const options& opts, std::size_t per_process) {
  if (per_process > most_per_process)
    return fmt::format("{} connections per process is over the {} one process can hold safely (20000 descriptors); "
                       "use more --processes",
                       per_process, most_per_process);
  if (connections_per_source > ephemeral_ports() / 2)
    return fmt::format("{} connections per source address need more than half of the {} ephemeral ports",
                       connections_per_source, ephemeral_ports());
  const auto descriptors = static_cast<std::int64_t>(2 * opts.connections + 10'000);
  if (free_descriptors() < descriptors)
    return fmt::format("fs.file-max leaves {} descriptors, {} needed", free_descriptors(), descriptors);
  const auto available = bench::read_meminfo().at("MemAvailable");
  const auto needed = static_cast<std::int64_t>(opts.connections) * planned_bytes_per_pair;
  if (available < needed + memory_floor())
    return fmt::format("about {} needed at {} B per pair, plus {} kept free; MemAvailable is {}", gib(needed),
                       planned_bytes_per_pair, gib(memory_floor()), gib(available));
  if (opts.read_idle <= opts.setup_limit + opts.hold)
    return "--read-idle must exceed --setup-limit plus --hold: the clients are silent, so the reaper would rightly "
           "close them";
  return std::nullopt;
}

int drive(const options& opts) {
  bench::begin_driver();
  const std::size_t processes =
      opts.processes != 0 ? opts.processes : (opts.connections + default_per_process - 1) / default_per_process;
  const std::size_t per_process = (opts.connections + processes - 1) / processes;
  const std::size_t sources_per_client = (per_process + connections_per_source - 1) / connections_per_source;
  fmt::print("Capacity: {} connections over {} server and {} client processes (~{} each, {} source addresses per "
             "client), heartbeat {} ms / {} ms, idle reaper read_idle {} s, hold {} s, connects {}\n",
             opts.connections, processes, processes, per_process, sources_per_client, opts.heartbeat_interval.count(),
             opts.heartbeat_timeout.count(), opts.read_idle.count() / 1000, opts.hold.count() / 1000,
             opts.connect_rate > 0 ? fmt::format("paced at {:.0f}/s", opts.connect_rate) : std::string{"unpaced"});
  if (const auto problem = unworkable(opts, per_process)) {
    fmt::print("STOPPED before starting: {}\n", *problem);
    return 1;
  }
  if (::geteuid() == 0)
    bench::drop_caches();
  std::this_thread::sleep_for(1500ms);
  const kernel_reading empty = read_kernel();

  const std::string self = bench::self_executable();
  fleet all;
  std::string port = "0";
  for (std::size_t i = 0; i < processes; ++i) {
    all.servers.emplace_back(std::vector<std::string>{
        self, "serve", "--port", port, "--heartbeat-interval", fmt::format("{}ms", opts.heartbeat_interval.count()),
        "--heartbeat-timeout", fmt::format("{}ms", opts.heartbeat_timeout.count()), "--read-idle",
        fmt::format("{}ms", opts.read_idle.count())});
    const auto announced = all.servers.back().expect("port ", 10s);
    if (!announced)
      throw std::runtime_error{"a server did not start"};
    port = announced->substr(5);
  }
  const totals idle_servers = add_up(all);

  const auto setup_start = clock_type::now();
  std::size_t assigned = 0;
  for (std::size_t i = 0; i < processes; ++i) {
    const std::size_t share = std::min(per_process, opts.connections - assigned);
    assigned += share;
    all.clients.emplace_back(std::vector<std::string>{
        self, "connect", "--port", port, "--sources", source_addresses(i, sources_per_client), "--connections",
        std::to_string(share),
        "--rate", fmt::format("{:.0f}", opts.connect_rate / static_cast<double>(processes))});
  }

  const std::int64_t keep_available = memory_floor();
  totals now = add_up(all);
  std::int64_t slowest_in_setup_us = now.slowest_heartbeat_us;
  std::uint64_t progress_mark = 0;
  auto last_progress = clock_type::now();
  auto last_print = clock_type::now();
  std::string stopped_early;
  while (!bench::interrupted()) {
    std::this_thread::sleep_for(500ms);
    now = add_up(all);
    slowest_in_setup_us = std::max(slowest_in_setup_us, now.slowest_heartbeat_us);
    const auto t = clock_type::now();
    if (now.connected + now.failed > progress_mark) {
      progress_mark = now.connected + now.failed;
      last_progress = t;
    }
    if (now.clients_finished && now.accepted >= now.connected)
      break;
    if (t - last_print >= 5s) {
      last_print = t;
      fmt::print("  setup {:>4.0f} s: {} connected, {} failed, {} live at the servers\n",
                 std::chrono::duration<double>(t - setup_start).count(), now.connected, now.failed, now.live);
    }
    if (t - last_progress > opts.stall_limit) {
      stopped_early = fmt::format("setup stalled: no new connection for {} s", opts.stall_limit.count() / 1000);
      break;
    }
    if (const auto available = bench::read_meminfo().at("MemAvailable"); available < keep_available) {
      stopped_early = fmt::format("MemAvailable fell to {}", gib(available));
      break;
    }
    if (t - setup_start > opts.setup_limit) {
      stopped_early = fmt::format("setup took longer than {} s", opts.setup_limit.count() / 1000);
      break;
    }
  }
  const double setup_seconds = std::chrono::duration<double>(clock_type::now() - setup_start).count();
  fmt::print("  setup: {} connected in {:.1f} s ({:.0f}/s), {} failed{}\n", now.connected, setup_seconds,
             static_cast<double>(now.connected) / setup_seconds, now.failed,
             now.first_error.empty() ? "" : " (first error: " + now.first_error + ")");
  fmt::print("  closes during setup: servers{}; clients{}; slowest heartbeat round trip {:.0f} ms\n",
             closes_text(now.server_closes), closes_text(now.client_closes),
             static_cast<double>(slowest_in_setup_us) / 1000);
  if (!stopped_early.empty())
    fmt::print("  STOPPED EARLY: {}; holding what was reached\n", stopped_early);
  if (bench::interrupted())
    return 130;

  std::this_thread::sleep_for(2s);
  const totals held = add_up(all);
  const kernel_reading loaded = read_kernel();
  const auto server_cpu_start = cpu_of(all.servers);
  const auto client_cpu_start = cpu_of(all.clients);
  const auto hold_start = clock_type::now();
  std::int64_t fewest_live = held.live;
  std::int64_t slowest_in_hold_us = 0;
  totals during = held;
  while (!bench::interrupted() && clock_type::now() - hold_start < opts.hold) {
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(5s, opts.hold));
    during = add_up(all);
    fewest_live = std::min(fewest_live, during.live);
    slowest_in_hold_us = std::max(slowest_in_hold_us, during.slowest_heartbeat_us);
    fmt::print("  hold {:>4.0f} s: {} live, {} heartbeats answered, server closes:{}\n",
               std::chrono::duration<double>(clock_type::now() - hold_start).count(), during.live,
               during.heartbeats - held.heartbeats, closes_text(difference(during.server_closes, held.server_closes)));
  }
  const double hold_seconds = std::chrono::duration<double>(clock_type::now() - hold_start).count();
  const auto server_cpu = cpu_of(all.servers) - server_cpu_start;
  const auto client_cpu = cpu_of(all.clients) - client_cpu_start;
  const totals end = add_up(all);
  fewest_live = std::min(fewest_live, end.live);
  slowest_in_hold_us = std::max(slowest_in_hold_us, end.slowest_heartbeat_us);

  const auto pairs = static_cast<double>(held.live);
  const auto per_pair = [&](std::int64_t before, std::int64_t after) {
    return static_cast<double>(after - before) / pairs;
  };
  const auto server_closes = difference(end.server_closes, held.server_closes);
  const auto client_closes = difference(end.client_closes, held.client_closes);
  const auto false_deaths = server_closes[static_cast<std::size_t>(tether::close_reason::heartbeat_timeout)] +
                            server_closes[static_cast<std::size_t>(tether::close_reason::idle_timeout)];
  const double heartbeats = static_cast<double>(end.heartbeats - held.heartbeats);
  const double rounds = heartbeats / pairs;

  fmt::print("\nCapacity results ({} connections requested, {} processes per side)\n", opts.connections, processes);
  fmt::print("  connections held: {} at the start of the hold, at least {} throughout {:.0f} s, {} at the end\n",
             held.live, fewest_live, hold_seconds, end.live);
  fmt::print("  kernel per connection pair: Slab {:.0f} B (SUnreclaim {:.0f} B, /proc fd-scan inodes {:.0f} B, "
             "Slab without them {:.0f} B = {:.0f} B per socket)\n",
             per_pair(empty.slab, loaded.slab), per_pair(empty.unreclaimable, loaded.unreclaimable),
             per_pair(empty.proc_inodes, loaded.proc_inodes),
             per_pair(empty.slab - empty.proc_inodes, loaded.slab - loaded.proc_inodes),
             per_pair(empty.slab - empty.proc_inodes, loaded.slab - loaded.proc_inodes) / 2);
  fmt::print("  sockstat: sockets {:+}, TCP inuse {:+}, TCP memory {:+} B, TIME_WAIT {:+}\n",
             loaded.sockets.sockets_used - empty.sockets.sockets_used,
             loaded.sockets.tcp_in_use - empty.sockets.tcp_in_use,
             loaded.sockets.tcp_memory_bytes - empty.sockets.tcp_memory_bytes,
             loaded.sockets.tcp_time_wait - empty.sockets.tcp_time_wait);
  fmt::print("  user space per connection: servers heap {:.0f} B, RSS {:.0f} B; clients RSS {:.0f} B\n",
             per_pair(idle_servers.server_heap, held.server_heap), per_pair(idle_servers.server_rss, held.server_rss),
             static_cast<double>(held.client_rss) / pairs);
  fmt::print("  MemAvailable dropped by {:.0f} B per pair ({} in all)\n", per_pair(loaded.available, empty.available),
             gib(empty.available - loaded.available));
  fmt::print("  heartbeat: {:.0f} pings answered in {:.0f} s = {:.2f} rounds over all connections; slowest round trip "
             "{:.1f} ms\n",
             heartbeats, hold_seconds, rounds, static_cast<double>(slowest_in_hold_us) / 1000);
  if (heartbeats > 0) {
    const double server_seconds = std::chrono::duration<double>(server_cpu).count();
    const double client_seconds = std::chrono::duration<double>(client_cpu).count();
    fmt::print("  CPU per heartbeat round (every connection pinged once): servers {:.3f} s, clients {:.3f} s; "
               "per ping: servers {:.2f} us, clients {:.2f} us\n",
               server_seconds / rounds, client_seconds / rounds, server_seconds / heartbeats * 1e6,
               client_seconds / heartbeats * 1e6);
    fmt::print("  CPU while holding: servers {:.1f}% of one core, clients {:.1f}%\n",
               100 * server_seconds / hold_seconds, 100 * client_seconds / hold_seconds);
  }
  fmt::print("  closes while holding: servers{}; clients{}\n", closes_text(server_closes), closes_text(client_closes));
  fmt::print("  falsely declared dead (heartbeat_timeout + idle_timeout among held connections): {} -> {}\n",
             false_deaths, false_deaths == 0 ? "none" : "SOME");
  fmt::print("  goal 1,000,000 connections: {} held -> {}\n", fewest_live,
             fewest_live >= 1'000'000 ? "met" : "NOT met");

  return stopped_early.empty() ? 0 : 3;
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode == "serve") {
      bench::flags given{argc, argv, 2};
      bench::capacity::server_config config;
      config.port = given.integer<std::uint16_t>("--port", 0);
      config.heartbeat_interval = given.duration("--heartbeat-interval", 2s);
      config.heartbeat_timeout = given.duration("--heartbeat-timeout", 2s);
      config.read_idle = given.duration("--read-idle", 30min);
      given.finish();
      return bench::capacity::serve(config);
    }
    if (mode == "connect") {
      bench::flags given{argc, argv, 2};
      bench::capacity::client_config config;
      config.port = given.integer<std::uint16_t>("--port", 0);
      for (const auto& address : bench::split(given.text("--sources", "127.0.1.1"), ','))
        config.sources.push_back(asio::ip::make_address(address));
      config.connections = given.integer<std::size_t>("--connections", 0);
      config.rate = static_cast<double>(given.integer<std::size_t>("--rate", 0));
      given.finish();
      return bench::capacity::connect(config);
    }
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.connections = 4000;
      opts.hold = 3s;
      opts.processes = 2;
      opts.heartbeat_interval = 1s;
      opts.heartbeat_timeout = 1s;
    }
    opts.connections = given.integer("--connections", opts.connections);
    opts.hold = given.duration("--hold", opts.hold);
    opts.processes = given.integer("--processes", opts.processes);
    opts.heartbeat_interval = given.duration("--heartbeat-interval", opts.heartbeat_interval);
    opts.heartbeat_timeout = given.duration("--heartbeat-timeout", opts.heartbeat_timeout);
    opts.read_idle = given.duration("--read-idle", opts.read_idle);
    opts.connect_rate = static_cast<double>(given.integer<std::size_t>("--connect-rate", 0));
    opts.stall_limit = given.duration("--stall-limit", opts.stall_limit);
    opts.setup_limit = given.duration("--setup-limit", opts.setup_limit);
    given.finish();
    if (opts.connections == 0 || opts.hold.count() <= 0 || opts.heartbeat_interval.count() <= 0 ||
        opts.heartbeat_timeout.count() <= 0)
      throw bench::usage_error{"--connections, --hold and the heartbeat durations must be positive"};
    return drive(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_capacity: {}\nusage: tether_bench_capacity [--quick] [--connections N] [--hold 10s] "
               "[--processes P] [--heartbeat-interval 2s] [--heartbeat-timeout 2s] [--read-idle 30min] "
               "[--connect-rate N] [--stall-limit 20s] [--setup-limit 10min]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_capacity: {}\n", e.what());
    return 1;
  }
}
