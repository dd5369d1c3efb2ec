// A liveness strategy of your own, written against the same contract as tether's built-in ones
// (tether/liveness/strategy.hpp): it may set socket options when a connection opens (apply), watch deadlines
// (next_deadline / on_deadline), send its own control frames (a send verdict, whose outcome on_sent reports),
// and close with the reason and detail it chooses.
//
// Here: a probe that pings only while the peer owes us an answer. After we sent data and nothing came back for
// `patience`, a ping asks whether the peer is still there; no byte within `grace` closes the connection. One
// peer answers pings (any tether peer does), the other reads but never answers.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/strategy.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <chrono>
#include <map>
#include <string>
#include <string_view>

using namespace std::chrono_literals;
using tether::liveness_clock;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

struct owed_answer_probe {
  std::chrono::milliseconds patience{100};
  std::chrono::milliseconds grace{100};

  struct state {
    liveness_clock::time_point probe_sent{};
    bool probing = false;
    int probes = 0;
  };
  static constexpr bool needs_control_frames = true;

  static bool owed(const tether::activity& seen) noexcept { return seen.data_sent > seen.received; }

  // time_point::max() while nothing is owed: the connection asks again once it sends or receives.
  liveness_clock::time_point next_deadline(const state& s, const tether::activity& seen) const noexcept {
    if (s.probing && seen.received < s.probe_sent)
      return s.probe_sent + grace;
    return owed(seen) ? seen.data_sent + patience : liveness_clock::time_point::max();
  }

  tether::verdict on_deadline(state& s, const tether::activity& seen, liveness_clock::time_point now) const noexcept {
    if (s.probing) {
      if (seen.received >= s.probe_sent) {
        s.probing = false;
        return tether::verdict::none();
      }
      if (now >= s.probe_sent + grace)
        return tether::verdict::close(tether::close_reason::heartbeat_timeout, "owed an answer, silent to our probe");
      return tether::verdict::none();
    }
    if (owed(seen) && now >= seen.data_sent + patience)
      return tether::verdict::send(tether::frame_kind::ping, "are you there");
    return tether::verdict::none();
  }

  // Only a probe that was queued is waited for: one the connection refused proves nothing about the peer.
  void on_sent(state& s, const tether::control_frame&, std::error_code queued, liveness_clock::time_point now) const noexcept {
    if (queued)
      return;
    s.probing = true;
    s.probe_sent = now;
    ++s.probes;
  }
};

static_assert(tether::timed_strategy<owed_answer_probe> && tether::send_observing_strategy<owed_answer_probe>);
static_assert(!tether::socket_option_strategy<owed_answer_probe>);
} // namespace

int main() {
  using policy = tether::liveness<owed_answer_probe>;
  using connection = tether::connection<tether::line_codec, policy>;

  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  tether::connection_context<tether::line_codec, policy> context{.liveness = policy{owed_answer_probe{}}};
  std::map<const connection*, std::string> closes;
  context.on_close = [&](connection& conn, tether::close_reason why) {
    closes[&conn] = fmt::format("{} ({})", tether::close_reason_name(why), conn.close_detail());
  };

  // Two peers that read what we send: one answers our probe like any tether peer, the other stays mute.
  asio::ip::tcp::socket answering{io};
  asio::ip::tcp::socket mute{io};
  answering.connect(acceptor.local_endpoint());
  auto talks = connection::create(acceptor.accept(io), context, wheel);
  mute.connect(acceptor.local_endpoint());
  auto silent = connection::create(acceptor.accept(io), context, wheel);
  talks->start();
  silent->start();
  talks->send("question");
  silent->send("question");

  std::string probe(sizeof "question\n\x10ping are you there\n" - 1, '\0');
  const auto give_up = liveness_clock::now() + 5s;
  while (answering.available() < probe.size() && liveness_clock::now() < give_up)
    io.run_for(10ms);
  asio::read(answering, asio::buffer(probe));
  check(probe == "question\n\x10ping are you there\n", "the probe follows the unanswered question");
  asio::write(answering, asio::buffer(std::string_view{"\x10pong are you there\n"}));

  io.run_for(500ms);
  fmt::print("answering peer: {}, mute peer: {}\n", talks->is_open() ? "open" : closes[talks.get()],
             silent->is_open() ? "open" : closes[silent.get()]);
  check(talks->is_open(), "a peer that answers the probe keeps its connection");
  check(talks->liveness_state<owed_answer_probe>().probes == 1, "one probe, then nothing is owed");
  check(closes[silent.get()] == "heartbeat_timeout (owed an answer, silent to our probe)", "the mute peer is closed");
  return failures == 0 ? 0 : 1;
}
