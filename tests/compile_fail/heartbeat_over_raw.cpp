// A heartbeat needs ping/pong frames, which raw_codec cannot carry: this must not compile, and the message
// must say why. Built with TETHER_EXPECT_COMPILES the same program uses line_codec and must compile, which
// shows the failure comes from the codec and nothing else.
#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>

#ifdef TETHER_EXPECT_COMPILES
using codec = tether::line_codec;
#else
using codec = tether::raw_codec;
#endif

int main() {
  asio::io_context io;
  tether::timer_wheel wheel{io};
  tether::connection_context<codec, tether::liveness<tether::heartbeat>> context;
  using connection_type = tether::connection<codec, tether::liveness<tether::heartbeat>>;
  connection_type::socket_type socket{io};
  socket.open(asio::ip::tcp::v4());
  auto connection = connection_type::create(std::move(socket), context, wheel);
  return connection->is_open() ? 1 : 0;
}
