// echo_server: a tether::listener that sends every message back, with each liveness strategy behind a flag.
//
//   echo_server --listen 127.0.0.1:7000 --heartbeat 15s,5s --idle-timeout 5min --json
#include "common/cli.hpp"
#include "common/close_event.hpp"
#include "common/events.hpp"
#include "common/config_report.hpp"
#include "common/connection_flags.hpp"
#include "common/socket_report.hpp"

#include <tether/close_reason.hpp>
#include <tether/ip_network.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/idle_reaper.hpp>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace {

constexpr std::string_view usage = R"(usage: echo_server --listen ADDR:PORT [--threads N] [--reuse-port] [--codec line|length|websocket]
                   [--tls-cert FILE --tls-key FILE] [--proxy-protocol CIDR[,CIDR...]]
                   [--keepalive IDLE,INTERVAL,COUNT] [--user-timeout DUR] [--heartbeat INTERVAL,TIMEOUT]
                   [--min-peer-ping DUR] [--middlebox-timeout DUR] [--idle-timeout DUR] [--max-age DUR[,GRACE]] [--max-connections N] [--max-per-address N]
                   [--buffer-budget BYTES] [--handover PATH] [--json]

Sends every message back on the connection it came from. DUR is a whole number with ms, s, min or h (500ms, 3s,
2min). A liveness strategy runs only when its flag is given.

  --listen ADDR:PORT               where to listen: 127.0.0.1:7000, [::1]:7000; port 0 picks a free one
  --threads N                      N shards, each on its own thread with its own acceptor on the port
                                   (SO_REUSEPORT when N > 1: another process listening on the same port with
                                   SO_REUSEPORT then silently takes a share of the connections; the listening
                                   event says so in "port_shared"); default 1
  --reuse-port                     SO_REUSEPORT even with one shard: a new server process can bind the port
                                   while this one still serves (a rolling restart)
  --handover PATH                  restart without losing a connection: take the listening sockets over from the
                                   echo_server serving PATH (a Unix socket), if one does, instead of binding,
                                   and serve PATH for the next one; once a successor has taken them, stop as on
                                   SIGTERM (event handed_over)
  --codec line|length|websocket    framing: one message per line (default), a 4-byte length prefix, or WebSocket
                                   (RFC 6455, any path; text echoed as text, binary as binary; browsers and
                                   WebSocket libraries answer --heartbeat's pings by themselves)
  --tls-cert FILE --tls-key FILE   serve every codec over TLS with this certificate chain and private key (PEM)
  --proxy-protocol CIDR[,CIDR...]  connections from these networks (balancers: HAProxy send-proxy, nginx
                                   proxy_protocol) begin with a PROXY protocol v1 or v2 header naming the client,
                                   whose address then counts for --max-per-address and shows as "remote"; other
                                   sources may not send one
  --keepalive IDLE,INTERVAL,COUNT  kernel keepalive: after IDLE without traffic, COUNT probes INTERVAL apart
  --user-timeout DUR               drop a connection whose sent data stays unacknowledged for DUR
  --heartbeat INTERVAL,TIMEOUT     ping after INTERVAL without incoming bytes; close if nothing arrives within
                                   TIMEOUT of the ping
  --min-peer-ping DUR              with --heartbeat: the shortest average interval between a client's pings
                                   (bursts of 3 allowed). A faster client is first told so (an unsolicited pong
                                   "too_many_pings min-ping=MS"; an echo_client then pings less often), and
                                   closed with ping_flood only if it keeps on; default 1s, 0ms accepts any rate
  --middlebox-timeout DUR          the shortest idle timeout of a NAT, firewall or balancer in front: the
                                   configuration check reports at start whether the strategies keep it open
  --idle-timeout DUR               close connections that carried no message in either direction for DUR
                                   (heartbeats do not count)
  --max-age DUR[,GRACE]            send goaway to a connection once it is DUR old (each drawn within +-10 %), and
                                   reset it if it is still open GRACE later (default 30s); reason max_age
  --max-connections N              refuse connections beyond N open at once; default 0, unlimited
  --max-per-address N              refuse more than N open connections per remote address (the client's, behind
                                   --proxy-protocol); default 0, unlimited
  --buffer-budget BYTES            at most BYTES of partial messages and unsent echoes over all connections: the
                                   connections holding the most are closed first (over_budget); default 0,
                                   unlimited
  --json                           one JSON object per line on stdout, with an "event" field
  --help                           print this text

Prints what the configuration check (tether::check) finds in the strategies, one config_check event per finding
(severity, finding, message), the listening socket's options as the kernel holds them, then one line per event:
listening, accepted
(with the connection's options; behind --proxy-protocol "proxy", the balancer's address, and "proxy_header":
v1, v2, or "local" for the balancer's own health checks, in closed events too), heartbeat (rtt_us), rejected (reason), closed (reason, detail, after_ms since
the last byte received; close_code, the WebSocket status code the peer sent), handed_over, stopping, and
stopped (counts per close reason).

Runs until SIGINT or SIGTERM, then stops accepting, sends goaway to every peer, resets connections still open
5s later, prints the summary and exits 0. Exit status 1 when it cannot listen, 2 for a bad command line.
)";

// How long stop() lets peers finish after goaway before their connections are reset.
constexpr std::chrono::seconds stop_deadline{5};

struct server_options {
  asio::ip::tcp::endpoint listen;
  std::size_t threads = 1;
  examples::connection_flags connection;
  std::optional<std::chrono::milliseconds> min_peer_ping;
  tether::idle_reaper idle_reaper{};  // off unless --idle-timeout
  tether::max_age max_age{};  // off unless --max-age
  std::string tls_certificate;
  std::string tls_key;
  std::vector<tether::ip_network> proxy_sources;
  bool reuse_port = false;
  std::size_t max_connections = 0;
  std::size_t max_per_address = 0;
  std::size_t buffer_budget = 0;
  std::string handover;
  bool json = false;
};

// Returns nullopt when --help asked for the usage text instead.
std::optional<server_options> parse_command_line(int argc, char** argv) {
  server_options options;
  bool listen_given = false;
  bool help = false;
  examples::flag_parser flags;
  flags.value("--listen", "ADDR:PORT (e.g. 127.0.0.1:7000 or [::1]:7000)", [&](std::string_view v) {
    const auto endpoint = examples::parse_endpoint(v);
    if (!endpoint)
      return false;
    options.listen = *endpoint;
    listen_given = true;
    return true;
  });
  flags.value("--threads", "N (1..64)", [&](std::string_view v) {
    const auto n = examples::parse_integer<std::size_t>(v);
    if (!n || *n < 1 || *n > 64)
      return false;
    options.threads = *n;
    return true;
  });
  flags.toggle("--reuse-port", [&] { options.reuse_port = true; });
  flags.value("--handover", "PATH (a Unix socket path)", [&](std::string_view v) {
    if (v.empty())
      return false;
    options.handover = std::string{v};
    return true;
  });
  examples::add_connection_flags(flags, options.connection);
  flags.value("--idle-timeout", "DUR above 0 (e.g. 5min)", [&](std::string_view v) {
    const auto idle = examples::parse_duration(v);
    if (!idle || idle->count() == 0)
      return false;
    options.idle_reaper = tether::idle_reaper{.all_idle = *idle};
    return true;
  });
  flags.value("--min-peer-ping", "DUR (e.g. 1s; 0ms accepts any rate)", [&](std::string_view v) {
    options.min_peer_ping = examples::parse_duration(v);
    return options.min_peer_ping.has_value();
  });
  flags.value("--tls-cert", "FILE (a PEM certificate chain)", [&](std::string_view v) {
    options.tls_certificate = v;
    return !v.empty();
  });
  flags.value("--tls-key", "FILE (a PEM private key)", [&](std::string_view v) {
    options.tls_key = v;
    return !v.empty();
  });
  flags.value("--proxy-protocol", "CIDR[,CIDR...] (e.g. 10.0.0.0/8,127.0.0.1)", [&](std::string_view v) {
    options.proxy_sources.clear();
    for (const auto part : examples::split(v, ',')) {
      std::error_code ec;
      options.proxy_sources.push_back(tether::ip_network::parse(part, ec));
      if (ec)
        return false;
    }
    return !options.proxy_sources.empty();
  });
  flags.value("--max-age", "DUR[,GRACE] (e.g. 10min,30s)", [&](std::string_view v) {
    const auto limit = examples::parse_max_age(v);
    if (!limit)
      return false;
    options.max_age = *limit;
    return true;
  });
  flags.value("--max-connections", "N (0 = unlimited)", [&](std::string_view v) {
    const auto n = examples::parse_integer<std::size_t>(v);
    if (!n)
      return false;
    options.max_connections = *n;
    return true;
  });
  flags.value("--max-per-address", "N (0 = unlimited)", [&](std::string_view v) {
    const auto n = examples::parse_integer<std::size_t>(v);
    if (!n)
      return false;
    options.max_per_address = *n;
    return true;
  });
  flags.value("--buffer-budget", "BYTES (0 = unlimited)", [&](std::string_view v) {
    const auto n = examples::parse_integer<std::size_t>(v);
    if (!n)
      return false;
    options.buffer_budget = *n;
    return true;
  });
  flags.toggle("--json", [&] { options.json = true; });
  flags.toggle("--help", [&] { help = true; });
  flags.parse(argc, argv);
  if (help)
    return std::nullopt;
  if (!listen_given)
    throw examples::usage_error{"--listen is required: --listen ADDR:PORT"};
  if (options.min_peer_ping) {
    // The limit is the heartbeat strategy's: without it in the pack, pings are answered at any rate.
    if (!options.connection.heartbeat)
      throw examples::usage_error{"--min-peer-ping needs --heartbeat INTERVAL,TIMEOUT, whose strategy limits the "
                                  "peers' pings"};
    options.connection.heartbeat->min_peer_ping_interval = *options.min_peer_ping;
  }
  if (options.tls_certificate.empty() != options.tls_key.empty())
    throw examples::usage_error{"--tls-cert and --tls-key come together: --tls-cert FILE --tls-key FILE"};
  return options;
}

std::string_view signal_name(int signal) { return signal == SIGINT ? "SIGINT" : "SIGTERM"; }

template <class Codec, class Liveness>
int serve(const server_options& options, const Codec& codec, const Liveness& liveness) {
  const examples::event_printer events{options.json};
  const std::string strategies = examples::strategy_names(liveness);
  examples::print_config_check(events, liveness, options.connection.middlebox_timeout);
  asio::io_context io{1};
  tether::listener<Codec, Liveness> server{io,
                                           {.address = options.listen.address(),
                                            .port = options.listen.port(),
                                            .reuse_port = options.reuse_port || options.threads > 1,
                                            .shards = options.threads,
                                            .max_connections = options.max_connections,
                                            .max_per_address = options.max_per_address,
                                            .proxy_protocol = {.trusted = options.proxy_sources},
                                            .handover = {.path = options.handover, .drain = stop_deadline},
                                            .buffer_budget = options.buffer_budget},
                                           codec, liveness};
  using connection_type = typename tether::listener<Codec, Liveness>::connection_type;
  // Shards run their handlers concurrently, hence an atomic; the printer serialises its own lines.
  std::atomic<std::uint64_t> echoed{0};

  // Behind a balancer: its address where it differs from remote, and which header it sent.
  const auto add_proxy_fields = [](std::vector<examples::field>& fields, const connection_type& conn) {
    if (const tether::proxy_details* via = conn.proxy()) {
      if (!via->local)
        fields.push_back({"proxy", examples::endpoint_text(via->proxy)});
      fields.push_back({"proxy_header", via->local ? std::string{"local"} : fmt::format("v{}", via->version)});
    }
  };
  server.on_accept([&](connection_type& conn) {
    std::vector<examples::field> fields{{"remote", examples::endpoint_text(conn.remote())},
                                        {"live", static_cast<std::int64_t>(server.connections())}};
    add_proxy_fields(fields, conn);
    for (auto& option : examples::connection_option_fields(conn.socket().native_handle()))
      fields.push_back(std::move(option));
    events.print("accepted", fields);
  });
  server.on_message([&](connection_type& conn, std::string_view message) {
    // A refused send closes the connection (backpressure) or finds it closing; on_close reports either.
    if (!(conn.received_binary() ? conn.send_binary(message) : conn.send(message)))
      echoed.fetch_add(1, std::memory_order_relaxed);
  });
  server.on_heartbeat([&](connection_type& conn, std::chrono::microseconds rtt) {
    events.print("heartbeat", {{"remote", examples::endpoint_text(conn.remote())}, {"rtt_us", rtt.count()}});
  });
  server.on_reject([&](const asio::ip::tcp::endpoint& peer, tether::close_reason why, std::string_view detail) {
    events.print("rejected", {{"remote", examples::endpoint_text(peer)},
                              {"reason", std::string{tether::close_reason_name(why)}},
                              {"detail", std::string{detail}}});
  });
  server.on_close([&](connection_type& conn, tether::close_reason why) {
    std::vector<examples::field> fields{{"remote", examples::endpoint_text(conn.remote())}};
    add_proxy_fields(fields, conn);
    const auto closing = examples::close_fields(conn, why);
    fields.insert(fields.end(), closing.begin(), closing.end());
    events.print("closed", fields);
  });

  asio::signal_set signals{io, SIGINT, SIGTERM};
  server.on_handed_over([&] {
    events.print("handed_over", {{"path", options.handover},
                                 {"live", static_cast<std::int64_t>(server.connections())},
                                 {"deadline_ms", std::chrono::milliseconds{stop_deadline}.count()}});
    signals.cancel();
  });
  if (const std::error_code ec = server.start()) {
    fmt::print(stderr, "echo_server: cannot listen on {}: {}\n", examples::endpoint_text(options.listen), ec.message());
    return 1;
  }
  std::vector<examples::field> listening{{"address", examples::endpoint_text(server.local_endpoint())},
                                         {"threads", static_cast<std::int64_t>(options.threads)},
                                         {"codec", std::string{examples::codec_name(codec)}},
                                         {"tls", codec.context ? "on" : "off"},
                                         {"liveness", strategies},
                                         {"port_shared", options.reuse_port || options.threads > 1
                                                             ? "with any process that binds it with SO_REUSEPORT"
                                                             : "no"}};
  std::string trusted;
  for (const auto& network : options.proxy_sources)
    trusted += (trusted.empty() ? "" : ",") + network.to_string();
  listening.push_back({"proxy_protocol", trusted.empty() ? std::string{"off"} : "from " + trusted});
  listening.push_back({"handover", options.handover.empty() ? std::string{"off"}
                                   : server.took_over()     ? "took the port over; hands it on at " + options.handover
                                                            : "bound the port; hands it on at " + options.handover});
  for (auto& option : examples::listener_option_fields(server.native_handle()))
    listening.push_back(std::move(option));
  events.print("listening", listening);

  signals.async_wait([&](const std::error_code& ec, int signal) {
    if (ec)
      return;
    events.print("stopping", {{"signal", std::string{signal_name(signal)}},
                              {"live", static_cast<std::int64_t>(server.connections())},
                              {"deadline_ms", std::chrono::milliseconds{stop_deadline}.count()}});
    server.stop(stop_deadline);
  });
  // Returns once stop() has closed every connection and joined the shards' threads.
  io.run();

  const tether::stats& stats = server.stats();
  std::vector<examples::field> summary{{"opened", static_cast<std::int64_t>(stats.opened())},
                                       {"echoed", static_cast<std::int64_t>(echoed.load())},
                                       {"heartbeats", static_cast<std::int64_t>(stats.heartbeats())}};
  for (std::size_t i = 0; i < tether::close_reason_count; ++i) {
    const auto reason = static_cast<tether::close_reason>(i);
    if (const auto count = stats.closed(reason))
      summary.push_back({tether::close_reason_name(reason), static_cast<std::int64_t>(count)});
  }
  events.print("stopped", summary);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::optional<server_options> options;
  try {
    options = parse_command_line(argc, argv);
  } catch (const examples::usage_error& e) {
    fmt::print(stderr, "echo_server: {}\n", e.what());
    return 2;
  }
  if (!options) {
    fmt::print("{}", usage);
    return 0;
  }
  const auto candidates = std::tuple{options->connection.keepalive, options->connection.user_timeout,
                                     options->connection.heartbeat};
  examples::codec_setup setup{.websocket = tether::websocket_codec{.path = ""}};
  if (!options->tls_certificate.empty()) {
    std::error_code ec;
    setup.tls = tether::tls_server_context(options->tls_certificate, options->tls_key, ec);
    if (!setup.tls) {
      fmt::print(stderr, "echo_server: bad value for --tls-cert or --tls-key: {}\n", ec.message());
      return 2;
    }
  }
  return examples::with_codec(
      options->connection.codec,
      [&](const auto& codec) {
        // The idle reaper and max_age are in every pack, off unless their flags are given: each optional strategy
        // doubles the instantiations of serve, and with them this file's compile time.
        return examples::with_liveness(
            candidates, [&](const auto& liveness) { return serve(*options, codec, liveness); }, options->idle_reaper,
            options->max_age);
      },
      setup);
}
