// A codec of your own: any type that satisfies tether::codec can frame a connection. This one speaks
// netstrings ("5:hello,"), which have no room for control frames, so it combines with kernel strategies and
// the idle reaper but not with heartbeat (that combination does not compile).
#include <tether/codec/codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

struct netstring_codec {
  struct decoder_state {};  // nothing to resume: the length prefix is short
  static constexpr bool carries_control_frames = false;

  std::size_t max_payload_size = 4096;

  std::size_t max_frame_size() const noexcept { return max_payload_size; }

  tether::decoded decode(std::string_view in, decoder_state&) const noexcept {
    std::size_t length = 0;
    std::size_t digits = 0;
    for (; digits < in.size() && in[digits] != ':'; ++digits) {
      if (in[digits] < '0' || in[digits] > '9' || digits == 9)
        return tether::decoded::malformed("netstring length is not a short decimal number");
      length = length * 10 + static_cast<std::size_t>(in[digits] - '0');
    }
    if (length > max_payload_size)
      return tether::decoded::malformed("netstring longer than max_payload_size");
    if (digits == in.size())
      return tether::decoded::need_more();
    if (digits == 0)
      return tether::decoded::malformed("netstring without a length");
    const std::size_t comma = digits + 1 + length;
    if (in.size() <= comma)
      return tether::decoded::need_more();
    if (in[comma] != ',')
      return tether::decoded::malformed("netstring not terminated by a comma");
    return tether::decoded::frame(tether::frame_kind::data, in.substr(digits + 1, length), comma + 1);
  }

  bool encode(tether::frame_kind kind, std::string_view payload, std::string& out) const {
    if (kind != tether::frame_kind::data || payload.size() > max_payload_size)
      return false;
    out += std::to_string(payload.size());
    out += ':';
    out += payload;
    out += ',';
    return true;
  }
};

static_assert(tether::codec<netstring_codec>);
static_assert(!tether::control_frame_codec<netstring_codec>);
} // namespace

int main() {
  using policy = tether::liveness<tether::idle_reaper>;
  using connection = tether::connection<netstring_codec, policy>;

  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};

  tether::connection_context<netstring_codec, policy> settings{.liveness = policy{tether::idle_reaper{.read_idle = 5s}}};
  std::vector<std::string> received;
  std::vector<tether::close_reason> closes;
  settings.on_message = [&](connection& conn, std::string_view payload) {
    received.emplace_back(payload);
    conn.send(payload);  // echo
  };
  settings.on_close = [&](connection& conn, tether::close_reason why) {
    closes.push_back(why);
    fmt::print("closed: {} ({})\n", tether::close_reason_name(why), conn.close_detail());
  };

  asio::ip::tcp::socket good{io};
  good.connect(acceptor.local_endpoint());
  auto served_good = connection::create(acceptor.accept(io), settings, wheel);
  served_good->start();
  asio::ip::tcp::socket bad{io};
  bad.connect(acceptor.local_endpoint());
  auto served_bad = connection::create(acceptor.accept(io), settings, wheel);
  served_bad->start();

  asio::write(good, asio::buffer(std::string_view{"5:hello,0:,"}));
  asio::write(bad, asio::buffer(std::string_view{"5:hello;"}));
  io.run_for(200ms);

  std::string echoed(11, '\0');
  asio::read(good, asio::buffer(echoed));
  fmt::print("echoed: {}\n", echoed);
  check(echoed == "5:hello,0:,", "echo of both frames");
  check(received == std::vector<std::string>{"hello", ""}, "frames reached on_message");
  check(served_good->is_open(), "the good peer is still served");
  check(closes == std::vector<tether::close_reason>{tether::close_reason::protocol_error}, "bad framing closed");

  served_good->close();
  good.shutdown(asio::socket_base::shutdown_send);
  io.run_for(200ms);
  check(closes.size() == 2 && closes.back() == tether::close_reason::local_close, "graceful close");
  return failures == 0 ? 0 : 1;
}
