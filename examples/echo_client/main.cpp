// echo_client: opens connections to an echo server, sends messages on each and checks every echo byte for byte,
// pausing between messages so that the connections idle and the liveness strategies get to work.
//
//   echo_client --connect 127.0.0.1:7000 --connections 10 --messages 5 --pause 20s --heartbeat 15s,5s --json
#include "common/cli.hpp"
#include "common/close_event.hpp"
#include "common/events.hpp"
#include "common/config_report.hpp"
#include "common/connection_flags.hpp"
#include "common/socket_report.hpp"

#include <tether/close_reason.hpp>
#include <tether/codec/frame.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <fmt/core.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

constexpr std::string_view usage = R"(usage: echo_client --connect ADDR:PORT [--codec line|length|websocket] [--bind ADDR]
                   [--tls [--tls-ca FILE] [--tls-server-name NAME]]
                   [--keepalive IDLE,INTERVAL,COUNT] [--user-timeout DUR] [--heartbeat INTERVAL,TIMEOUT]
                   [--adaptive-heartbeat MIN,MAX]
                   [--middlebox-timeout DUR] [--connections N] [--messages N] [--pause DUR] [--message TEXT] [--reconnect] [--json]
                   [--timeout DUR]

Opens N connections to an echo server. On each it sends --messages messages one at a time, waits for each echo,
checks it byte for byte and pauses before the next, so the connection idles while the liveness strategies run.
DUR is a whole number with ms, s, min or h (500ms, 3s, 2min). A liveness strategy runs only when its flag is given.

  --connect ADDR:PORT              the server: 127.0.0.1:7000, [::1]:7000
  --codec line|length|websocket    framing: one message per line (default), a 4-byte length prefix, or WebSocket
                                   (path /, Host from --connect; the server's pings are answered in any case)
  --tls                            TLS to the server, verifying its certificate: against --tls-ca FILE (PEM),
                                   or the system's store; the name checked, and sent as SNI, is
                                   --tls-server-name NAME, or the address of --connect
  --bind ADDR                      source address of every connection (the kernel still picks the port)
  --keepalive IDLE,INTERVAL,COUNT  kernel keepalive: after IDLE without traffic, COUNT probes INTERVAL apart
  --user-timeout DUR               drop a connection whose sent data stays unacknowledged for DUR
  --heartbeat INTERVAL,TIMEOUT     ping after INTERVAL without incoming bytes; close if nothing arrives within
                                   TIMEOUT of the ping
  --adaptive-heartbeat MIN,MAX     learn the heartbeat's interval from the path, within MIN..MAX: longer idle
                                   periods are tried on probe connections to the same server, and the
                                   connection moves to a proven one less a quarter (the heartbeat's TIMEOUT
                                   from --heartbeat, else 5s; its INTERVAL is replaced by MIN)
  --middlebox-timeout DUR          the shortest idle timeout of a NAT, firewall or balancer on the path: the
                                   configuration check reports at start whether the strategies keep it open
  --connections N                  connections, all at once; default 1
  --messages N                     messages per connection; default 3
  --pause DUR                      pause after each echo before the next message; default 1s
  --message TEXT                   what to send; default "hello" (one line with --codec line)
  --reconnect                      when a connection fails or the server sends goaway, reconnect with jittered
                                   exponential backoff and carry on with the messages left
  --timeout DUR                    give up after DUR; default 10s + messages x (pause + 2s). Connections still
                                   open then get up to 2s to close
  --json                           one JSON object per line on stdout, with an "event" field
  --help                           print this text

Prints one line per event: config_check (severity, finding, message: what tether::check finds in the strategies,
before connecting), connected (with the effective socket options read back from the kernel), echo (rtt_us from
send to echo), heartbeat (rtt_us), heartbeat_interval (interval_ms, why: proven_longer or path_stricter from
--adaptive-heartbeat, with probes and probes_failed so far; or the server asked for fewer pings or agreed on
values, printed at the first heartbeat after the change), goaway, resumed (slept_ms: the machine was suspended for longer than the
heartbeat interval, or 1s without --heartbeat; the connection then pinged at once with --heartbeat, and a
pending reconnect went ahead), connect_failed, closed (reason, detail, after_ms since the last byte received; close_code, the WebSocket
status code the server sent), failed (why a connection could not finish) and finished.

Exit status 0 when every message came back intact on every connection, 1 otherwise (the reason is printed on
stderr too), 2 for a bad command line.
)";

// How long a connection that is done waits for the server's FIN before resetting.
constexpr auto closing_bound = 2s;

struct client_options {
  asio::ip::tcp::endpoint server;
  std::optional<asio::ip::address> bind;
  examples::connection_flags connection;
  std::size_t connections = 1;
  std::size_t messages = 3;
  std::chrono::milliseconds pause{1s};
  std::string message = "hello";
  bool reconnect = false;
  bool tls = false;
  std::string tls_ca;
  std::string tls_server_name;
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<tether::adaptive_heartbeat> adaptive;
  bool json = false;

  std::chrono::milliseconds run_bound() const {
    return timeout.value_or(10s + static_cast<std::int64_t>(messages) * (pause + 2s));
  }
};

// Returns nullopt when --help asked for the usage text instead.
std::optional<client_options> parse_command_line(int argc, char** argv) {
  client_options options;
  bool server_given = false;
  bool help = false;
  examples::flag_parser flags;
  flags.value("--connect", "ADDR:PORT (e.g. 127.0.0.1:7000 or [::1]:7000)", [&](std::string_view v) {
    const auto endpoint = examples::parse_endpoint(v);
    if (!endpoint)
      return false;
    options.server = *endpoint;
    server_given = true;
    return true;
  });
  examples::add_connection_flags(flags, options.connection);
  flags.value("--bind", "ADDR (e.g. 127.0.0.2)", [&](std::string_view v) {
    options.bind = examples::parse_address(v);
    return options.bind.has_value();
  });
  const auto count = [](std::size_t& into) {
    return [&into](std::string_view v) {
      const auto n = examples::parse_integer<std::size_t>(v);
      if (!n || *n == 0)
        return false;
      into = *n;
      return true;
    };
  };
  flags.value("--connections", "N (at least 1)", count(options.connections));
  flags.value("--messages", "N (at least 1)", count(options.messages));
  flags.value("--pause", "DUR (e.g. 500ms, 3s, 2min; 0ms for none)", [&](std::string_view v) {
    const auto pause = examples::parse_duration(v);
    if (!pause)
      return false;
    options.pause = *pause;
    return true;
  });
  flags.value("--message", "TEXT", [&](std::string_view v) {
    options.message = v;
    return true;
  });
  flags.toggle("--reconnect", [&] { options.reconnect = true; });
  flags.value("--timeout", "DUR above 0 (e.g. 30s)", [&](std::string_view v) {
    const auto timeout = examples::parse_duration(v);
    if (!timeout || timeout->count() == 0)
      return false;
    options.timeout = *timeout;
    return true;
  });
  flags.value("--adaptive-heartbeat", "MIN,MAX (e.g. 15s,5min; MIN above 0, MAX at least MIN)", [&](std::string_view v) {
    const auto parts = examples::split(v, ',');
    if (parts.size() != 2)
      return false;
    const auto min = examples::parse_duration(parts[0]);
    const auto max = examples::parse_duration(parts[1]);
    if (!min || !max || min->count() == 0 || *max < *min)
      return false;
    options.adaptive = tether::adaptive_heartbeat{.min = *min, .max = *max};
    return true;
  });
  flags.toggle("--tls", [&] { options.tls = true; });
  flags.value("--tls-ca", "FILE (PEM CA certificates)", [&](std::string_view v) {
    options.tls_ca = v;
    return !v.empty();
  });
  flags.value("--tls-server-name", "NAME (the name the certificate must carry)", [&](std::string_view v) {
    options.tls_server_name = v;
    return !v.empty();
  });
  flags.toggle("--json", [&] { options.json = true; });
  flags.toggle("--help", [&] { help = true; });
  flags.parse(argc, argv);
  if (help)
    return std::nullopt;
  if (!server_given)
    throw examples::usage_error{"--connect is required: --connect ADDR:PORT"};
  if (options.adaptive) {
    auto& beat = options.connection.heartbeat;
    if (!beat)
      beat = examples::parse_heartbeat("1s,5s");
    beat->interval = options.adaptive->min;
    beat->min_peer_ping_interval = options.adaptive->min / 4;
  }
  if (!options.tls && (!options.tls_ca.empty() || !options.tls_server_name.empty()))
    throw examples::usage_error{"--tls-ca and --tls-server-name need --tls"};
  const bool fits = examples::with_codec(options.connection.codec, [&](const auto& codec) {
    std::string frame;
    return codec.inner.encode(tether::frame_kind::data, options.message, frame);
  });
  if (!fits)
    throw examples::usage_error{"bad value for --message: expected --message TEXT that the codec can carry (--codec "
                                "line: one line of at most 64 KiB, --codec length: at most 1 MiB, --codec "
                                "websocket: UTF-8 text of at most 1 MiB)"};
  return options;
}

// One connection's run through its messages. The connector behind it reconnects when --reconnect asks for it; a
// session ends once its connection has closed for good, successfully or not.
template <class Codec, class Liveness>
class echo_session {
public:
  using connector_type = tether::connector<Codec, Liveness>;
  using connection_type = typename connector_type::connection_type;

  echo_session(asio::io_context& io, std::int64_t id, const client_options& options,
               const examples::event_printer& events, const Codec& codec, const Liveness& liveness,
               std::function<void()> on_ended)
      : id_(id), options_(options), events_(events),
        connector_(io,
                   {.host = options.server.address().to_string(),
                    .service = std::to_string(options.server.port()),
                    .bind_address = options.bind,
                    .reconnect = options.reconnect,
                    .resume_check = std::chrono::seconds{1},
                    .adaptive = options.adaptive},
                   codec, liveness, {.graceful_close_timeout = closing_bound}),
        pause_timer_(io), on_ended_(std::move(on_ended)) {
    connector_.on_connect([this](connection_type& conn) { connected(conn); });
    connector_.on_connect_error(
        [this](const std::error_code& ec, std::chrono::milliseconds next_retry) { connect_failed(ec, next_retry); });
    connector_.on_message([this](connection_type& conn, std::string_view echo) { received(conn, echo); });
    connector_.on_heartbeat([this](connection_type& conn, std::chrono::microseconds rtt) {
      events_.print("heartbeat", {{"connection", id_}, {"rtt_us", rtt.count()}});
      report_interval_change(conn);
    });
    connector_.on_goaway([this](connection_type& conn, std::string_view payload) { going_away(conn, payload); });
    connector_.on_resume([this](std::chrono::milliseconds slept) {
      events_.print("resumed", {{"connection", id_}, {"slept_ms", slept.count()}});
    });
    connector_.on_close([this](connection_type& conn, tether::close_reason why) { closed(conn, why); });
    connector_.on_interval_change([this](std::chrono::milliseconds interval, tether::interval_change why) {
      reported_interval_ = interval;  // reported here, not again at the next heartbeat
      const auto& learner = *connector_.interval_learner();
      events_.print("heartbeat_interval", {{"connection", id_},
                                           {"interval_ms", interval.count()},
                                           {"why", std::string{tether::interval_change_name(why)}},
                                           {"probes", static_cast<std::int64_t>(learner.probes())},
                                           {"probes_failed", static_cast<std::int64_t>(learner.probes_failed())}});
    });
  }

  echo_session(const echo_session&) = delete;
  echo_session& operator=(const echo_session&) = delete;

  std::error_code start() { return connector_.start(); }

  // Gives up on the messages left: the run's time is up or it was interrupted.
  void abandon(std::string_view why) {
    fail(fmt::format("{} with {} of {} echoes back", why, echoed_, options_.messages));
  }

  std::int64_t id() const noexcept { return id_; }
  std::size_t echoed() const noexcept { return echoed_; }
  // Empty for a session that ended with every echo back.
  const std::string& failure() const noexcept { return failure_; }

private:
  enum class phase { running, closing, ended };

  void connected(connection_type& conn) {
    connected_ = true;
    leaving_ = false;
    if constexpr (Liveness::template has<tether::heartbeat>)
      reported_interval_ = heartbeat_interval(conn);
    reported_slowdowns_ = 0;
    std::error_code unknown;
    std::vector<examples::field> fields{{"connection", id_},
                                        {"local", examples::endpoint_text(conn.socket().local_endpoint(unknown))},
                                        {"remote", examples::endpoint_text(conn.remote())}};
    for (auto& option : examples::connection_option_fields(conn.socket().native_handle()))
      fields.push_back(std::move(option));
    events_.print("connected", fields);
    if (!pausing_)
      send_next(conn);
  }

  // This connection's heartbeat interval: the strategy's, until the server's request or an agreement changes it.
  static std::chrono::milliseconds heartbeat_interval(const connection_type& conn) {
    return conn.context().liveness.template get<tether::heartbeat>().interval_of(
        conn.template liveness_state<tether::heartbeat>());
  }

  // The interval changes when the server asks for fewer pings or its announcement is agreed with; the connection
  // has no hook for that, so the change is seen, and reported, at the first heartbeat round trip after it.
  void report_interval_change(const connection_type& conn) {
    if constexpr (Liveness::template has<tether::heartbeat>) {
      const auto& beat = conn.template liveness_state<tether::heartbeat>();
      const auto interval = heartbeat_interval(conn);
      if (interval == reported_interval_)
        return;
      const bool slowed_down = beat.times_slowed_down() != reported_slowdowns_;
      reported_interval_ = interval;
      reported_slowdowns_ = beat.times_slowed_down();
      events_.print("heartbeat_interval",
                    {{"connection", id_},
                     {"interval_ms", interval.count()},
                     {"why", slowed_down  ? "the server asked for fewer pings (too_many_pings)"
                             : beat.agreed() ? "agreed with the server's heartbeat announcement"
                                             : "set for this connection"}});
    }
  }

  void connect_failed(const std::error_code& ec, std::chrono::milliseconds next_retry) {
    if (options_.reconnect) {
      events_.print("connect_failed", {{"connection", id_}, {"error", ec.message()}, {"retry_ms", next_retry.count()}});
      return;
    }
    events_.print("connect_failed", {{"connection", id_}, {"error", ec.message()}});
    fail(fmt::format("cannot connect to {}: {}", examples::endpoint_text(options_.server), ec.message()));
  }

  void send_next(connection_type& conn) {
    sent_at_ = std::chrono::steady_clock::now();
    in_flight_ = true;
    if (const std::error_code ec = conn.send(options_.message))
      fail(fmt::format("cannot send message {}: {}", echoed_ + 1, ec.message()));
  }

  void received(connection_type& conn, std::string_view echo) {
    if (phase_ != phase::running)
      return;
    if (!in_flight_) {
      fail(fmt::format("received {} bytes while no message was waiting for its echo", echo.size()));
      return;
    }
    in_flight_ = false;
    const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - sent_at_);
    if (echo != options_.message) {
      fail(fmt::format("message {} came back altered: sent {} bytes, received {} bytes", echoed_ + 1,
                       options_.message.size(), echo.size()));
      return;
    }
    ++echoed_;
    events_.print("echo",
                  {{"connection", id_}, {"message", static_cast<std::int64_t>(echoed_)}, {"rtt_us", rtt.count()}});
    if (echoed_ == options_.messages) {
      close_for_good();
      return;
    }
    if (options_.pause.count() > 0) {
      // The pause outlives a connection that closes meanwhile, so messages stay --pause apart across reconnects.
      pausing_ = true;
      pause_timer_.expires_after(options_.pause);
      pause_timer_.async_wait([this](const std::error_code& ec) {
        if (ec || phase_ != phase::running)
          return;
        pausing_ = false;
        if (const auto conn = connector_.current())
          send_next(*conn);
      });
    }
    // The server asked us to leave: with nothing in flight any more, move on to a new connection.
    if (leaving_)
      conn.close();
    else if (!pausing_)
      send_next(conn);
  }

  void going_away(connection_type& conn, std::string_view payload) {
    events_.print("goaway",
                  {{"connection", id_}, {"remote", examples::endpoint_text(conn.remote())}, {"payload", std::string{payload}}});
    if (!options_.reconnect) {
      fail(fmt::format("the server is going away (goaway) after {} of {} echoes", echoed_, options_.messages));
      return;
    }
    leaving_ = true;
    if (!in_flight_)
      conn.close();
  }

  void closed(connection_type& conn, tether::close_reason why) {
    connected_ = false;
    in_flight_ = false;
    std::vector<examples::field> fields{{"connection", id_}};
    const auto closing = examples::close_fields(conn, why);
    fields.insert(fields.end(), closing.begin(), closing.end());
    events_.print("closed", fields);
    if (phase_ == phase::closing) {
      end();
      return;
    }
    // With --reconnect the connector is already on its way to the next connection.
    if (!options_.reconnect)
      fail(fmt::format("connection closed ({}: {}) after {} of {} echoes", tether::close_reason_name(why), conn.close_detail(),
                       echoed_, options_.messages));
  }

  void fail(std::string why) {
    if (phase_ != phase::running)
      return;
    failure_ = std::move(why);
    events_.print("failed", {{"connection", id_}, {"why", failure_}});
    close_for_good();
  }

  // No more connections; the session ends once the open one, if any, has closed.
  void close_for_good() {
    phase_ = phase::closing;
    pause_timer_.cancel();
    connector_.stop();
    if (!connected_)
      end();
  }

  void end() {
    phase_ = phase::ended;
    on_ended_();
  }

  const std::int64_t id_;
  const client_options& options_;
  const examples::event_printer& events_;
  connector_type connector_;
  asio::steady_timer pause_timer_;
  std::function<void()> on_ended_;
  std::chrono::steady_clock::time_point sent_at_{};
  std::chrono::milliseconds reported_interval_{};
  unsigned reported_slowdowns_ = 0;
  std::size_t echoed_ = 0;
  std::string failure_;
  phase phase_ = phase::running;
  bool connected_ = false;
  bool in_flight_ = false;
  bool pausing_ = false;
  bool leaving_ = false;  // the server sent goaway; move on once the message in flight is back
};

template <class Codec, class Liveness>
int run(const client_options& options, const Codec& codec, const Liveness& liveness) {
  const examples::event_printer events{options.json};
  examples::print_config_check(events, liveness, options.connection.middlebox_timeout);
  asio::io_context io{1};
  asio::steady_timer deadline{io};
  asio::signal_set signals{io, SIGINT, SIGTERM};
  std::vector<std::unique_ptr<echo_session<Codec, Liveness>>> sessions;
  std::size_t ended = 0;
  const auto session_ended = [&] {
    if (++ended < sessions.size())
      return;
    deadline.cancel();
    signals.cancel();
  };
  for (std::size_t i = 0; i < options.connections; ++i) {
    sessions.push_back(std::make_unique<echo_session<Codec, Liveness>>(io, static_cast<std::int64_t>(i + 1), options,
                                                                       events, codec, liveness, session_ended));
  }
  const auto abandon_all = [&](std::string_view why) {
    for (const auto& session : sessions)
      session->abandon(why);
  };
  deadline.expires_after(options.run_bound());
  deadline.async_wait([&](const std::error_code& ec) {
    if (!ec)
      abandon_all(fmt::format("gave up at --timeout {}", examples::flag_duration(options.run_bound())));
  });
  signals.async_wait([&](const std::error_code& ec, int signal) {
    if (!ec)
      abandon_all(signal == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM");
  });
  for (const auto& session : sessions) {
    if (const std::error_code ec = session->start()) {
      fmt::print(stderr, "echo_client: {}\n", ec.message());
      return 2;
    }
  }
  io.run();

  std::size_t echoed = 0;
  std::size_t failed = 0;
  const echo_session<Codec, Liveness>* first_failed = nullptr;
  for (const auto& session : sessions) {
    echoed += session->echoed();
    if (session->failure().empty())
      continue;
    ++failed;
    if (!first_failed)
      first_failed = session.get();
  }
  events.print("finished", {{"connections", static_cast<std::int64_t>(sessions.size())},
                            {"failed", static_cast<std::int64_t>(failed)},
                            {"echoed", static_cast<std::int64_t>(echoed)},
                            {"expected", static_cast<std::int64_t>(options.connections * options.messages)}});
  if (failed == 0)
    return 0;
  fmt::print(stderr, "echo_client: {} of {} connections failed; connection {}: {}\n", failed, sessions.size(),
             first_failed->id(), first_failed->failure());
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  std::optional<client_options> options;
  try {
    options = parse_command_line(argc, argv);
  } catch (const examples::usage_error& e) {
    fmt::print(stderr, "echo_client: {}\n", e.what());
    return 2;
  }
  if (!options) {
    fmt::print("{}", usage);
    return 0;
  }
  const auto candidates = std::tuple{options->connection.keepalive, options->connection.user_timeout,
                                     options->connection.heartbeat};
  examples::codec_setup setup{.websocket = tether::websocket_codec{.side = tether::websocket_codec::role::client,
                                                                    .path = "/",
                                                                    .host = examples::endpoint_text(options->server)},
                              .tls_side = tether::tls_role::client};
  if (options->tls) {
    std::error_code ec;
    setup.tls = tether::tls_client_context(options->tls_ca, ec);
    if (!setup.tls) {
      fmt::print(stderr, "echo_client: bad value for --tls-ca: {}\n", ec.message());
      return 2;
    }
    setup.tls_server_name =
        options->tls_server_name.empty() ? options->server.address().to_string() : options->tls_server_name;
  }
  return examples::with_codec(
      options->connection.codec,
      [&](const auto& codec) {
        return examples::with_liveness(candidates, [&](const auto& liveness) { return run(*options, codec, liveness); });
      },
      setup);
}
