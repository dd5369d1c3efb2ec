// A publish/subscribe server on two shards: each connection keeps its subscriptions as its own per-connection
// state (UserData), a table shared by both shards counts subscribers per topic under a lock, and a publish is
// broadcast with listener::for_each_connection, each connection served on its own shard's thread.
//
//   pubsub --listen 127.0.0.1:7100
//
// Line protocol (line_codec): "sub TOPIC", "unsub TOPIC", "pub TOPIC TEXT" (delivered as "TOPIC TEXT" to every
// subscriber, the publisher included when subscribed), "stats" (answered with "topics N subscribers M
// published P live L"). Answers "ok ..." or "error ...". Stops on SIGINT or SIGTERM.
#include "common/cli.hpp"
#include "common/socket_report.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/format.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>

#include <asio/signal_set.hpp>
#include <fmt/core.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

namespace {

// What one connection is subscribed to. Touched only on the connection's own shard thread.
struct subscriber {
  std::set<std::string, std::less<>> topics;
};

// Subscribers per topic, over both shards.
class topic_table {
public:
  void add(const std::string& topic) {
    const std::lock_guard lock{mutex_};
    ++counts_[topic];
  }
  void remove(const std::string& topic) {
    const std::lock_guard lock{mutex_};
    if (auto found = counts_.find(topic); found != counts_.end() && --found->second == 0)
      counts_.erase(found);
  }
  std::size_t subscribers(std::string_view topic) const {
    const std::lock_guard lock{mutex_};
    const auto found = counts_.find(topic);
    return found == counts_.end() ? 0 : found->second;
  }
  std::pair<std::size_t, std::size_t> totals() const {
    const std::lock_guard lock{mutex_};
    std::size_t subscribers = 0;
    for (const auto& [topic, count] : counts_)
      subscribers += count;
    return {counts_.size(), subscribers};
  }

private:
  mutable std::mutex mutex_;
  std::map<std::string, std::size_t, std::less<>> counts_;
};

using policy = tether::liveness<tether::heartbeat, tether::idle_reaper>;
using server_type = tether::listener<tether::line_codec, policy, subscriber>;
using connection = server_type::connection_type;

std::pair<std::string_view, std::string_view> split(std::string_view text) {
  const auto space = text.find(' ');
  if (space == std::string_view::npos)
    return {text, {}};
  return {text.substr(0, space), text.substr(space + 1)};
}

} // namespace

int main(int argc, char** argv) {
  asio::ip::tcp::endpoint listen;
  try {
    bool given = false;
    examples::flag_parser flags;
    flags.value("--listen", "ADDR:PORT", [&](std::string_view v) {
      const auto endpoint = examples::parse_endpoint(v);
      given = endpoint.has_value();
      listen = endpoint.value_or(listen);
      return given;
    });
    flags.parse(argc, argv);
    if (!given)
      throw examples::usage_error{"--listen is required: --listen ADDR:PORT"};
  } catch (const examples::usage_error& e) {
    fmt::print(stderr, "pubsub: {}\n", e.what());
    return 2;
  }

  asio::io_context io;
  using namespace std::chrono_literals;
  server_type server{io, {.address = listen.address(), .port = listen.port(), .reuse_port = true, .shards = 2},
                     tether::line_codec{},
                     policy{tether::heartbeat{.interval = 15s, .timeout = 5s}, tether::idle_reaper{.read_idle = 10min}}};
  topic_table table;
  std::atomic<std::uint64_t> published{0};

  server.on_message([&](connection& conn, std::string_view line) {
    const auto [command, rest] = split(line);
    subscriber& self = conn.user_data();
    if (command == "sub" && !rest.empty() && rest.find(' ') == std::string_view::npos) {
      if (self.topics.emplace(rest).second)
        table.add(std::string{rest});
      conn.send(fmt::format("ok sub {} ({} subscribers)", rest, table.subscribers(rest)));
    } else if (command == "unsub" && self.topics.contains(rest)) {
      self.topics.erase(self.topics.find(rest));
      table.remove(std::string{rest});
      conn.send(fmt::format("ok unsub {}", rest));
    } else if (command == "pub" && !rest.empty()) {
      const auto [topic, text] = split(rest);
      const std::size_t reach = table.subscribers(topic);
      published.fetch_add(1, std::memory_order_relaxed);
      // Each subscriber is sent to on its own shard's thread; only this copy of the message is shared.
      server.for_each_connection([topic = std::string{topic}, delivery = fmt::format("{} {}", topic, text)](connection& c) {
        if (c.user_data().topics.contains(topic))
          c.send(delivery);
      });
      conn.send(fmt::format("ok pub {} to {}", topic, reach));
    } else if (command == "stats") {
      const auto [topics, subscribers] = table.totals();
      conn.send(fmt::format("topics {} subscribers {} published {} live {}", topics, subscribers, published.load(),
                            server.connections()));
    } else {
      conn.send(fmt::format("error unknown command: {}", line));
    }
  });
  server.on_close([&](connection& conn, tether::close_reason why) {
    for (const auto& topic : conn.user_data().topics)
      table.remove(topic);
    fmt::print("closed {}: {}\n", examples::endpoint_text(conn.remote()), why);
    std::fflush(stdout);
  });
  if (const auto ec = server.start()) {
    fmt::print(stderr, "pubsub: cannot listen on {}: {}\n", examples::endpoint_text(listen), ec.message());
    return 1;
  }
  fmt::print("listening {} on {} shards\n", examples::endpoint_text(server.local_endpoint()), server.executors().size());
  std::fflush(stdout);
  asio::signal_set signals{io, SIGINT, SIGTERM};
  signals.async_wait([&](const std::error_code& ec, int) {
    if (!ec)
      server.stop(5s);
  });
  io.run();
  fmt::print("stopped: {}\n", server.stats());
  return 0;
}
