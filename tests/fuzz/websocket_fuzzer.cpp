// libFuzzer target for the WebSocket codec: the upgrade parser and the frame decoder in both roles. Whatever a
// peer sends, decoding must stay inside its buffers, make progress, respect max_message_size and the 125-byte
// control limit, explain every refusal, and give the same frames however the network splits the stream.
//
// The first input byte picks what is fuzzed (value % 3: the server's handshake parser, the server's frames, the
// client's frames) and a small max_message_size (value / 3); the rest is the stream. Frames are fuzzed from a
// state that has completed a valid handshake.
#include <tether/codec/websocket_codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "websocket invariant violated: %s\n", invariant);
    std::abort();
  }
}

struct outcome {
  std::vector<std::pair<tether::decode_status, std::string>> steps;  // status and payload of each step
  bool operator==(const outcome&) const = default;
};

outcome decode_stream(const tether::websocket_codec& codec, tether::websocket_codec::decoder_state state,
                      std::string_view stream, std::size_t chunk) {
  outcome result;
  std::string buffer;
  for (std::size_t offset = 0; offset < stream.size(); offset += chunk) {
    buffer.append(stream.substr(offset, chunk));
    for (;;) {
      const tether::decoded step = codec.decode(buffer, state);
      if (step.status == tether::decode_status::need_more)
        break;
      if (step.status == tether::decode_status::malformed || step.status == tether::decode_status::rejected) {
        require(!step.problem.empty(), "a refusal is explained");
        result.steps.emplace_back(step.status, std::string{step.payload});
        return result;
      }
      require(step.consumed > 0 && step.consumed <= buffer.size(), "a step consumes buffered bytes, at least one");
      if (step.status == tether::decode_status::frame) {
        const bool control = step.kind == tether::frame_kind::ping || step.kind == tether::frame_kind::pong ||
                             step.kind == tether::frame_kind::goaway;
        require(!control || step.payload.size() <= 125, "a control payload is at most 125 bytes");
        require(control || step.payload.size() <= codec.max_message_size, "a message respects max_message_size");
        require(step.kind != tether::frame_kind::data || tether::detail::valid_utf8(step.payload),
                "a text message is UTF-8");
      }
      result.steps.emplace_back(step.status, std::string{step.payload});
      buffer.erase(0, step.consumed);
    }
  }
  return result;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::uint8_t selector = data[0];
  const std::string_view stream{reinterpret_cast<const char*>(data + 1), size - 1};
  const auto side = selector % 3 == 2 ? tether::websocket_codec::role::client : tether::websocket_codec::role::server;
  const tether::websocket_codec codec{.side = side, .max_message_size = std::size_t{selector} / 3 + 1,
                                      .max_handshake_size = 512, .path = "", .subprotocols = {"chat", "mqtt"}};
  tether::websocket_codec::decoder_state state;
  if (selector % 3 == 1) {
    const std::string_view request = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    require(codec.decode(request, state).status == tether::decode_status::handshake, "the valid request passes");
    codec.decode({}, state);  // drops the reply, as the next call of a connection does
  } else if (selector % 3 == 2) {
    std::string request;
    codec.begin_handshake(state, request);
    const auto key_at = request.find("Sec-WebSocket-Key: ") + 19;
    const std::string key = request.substr(key_at, request.find("\r\n", key_at) - key_at);
    const std::string response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Accept: " + tether::websocket_codec::accept_key(key) + "\r\n\r\n";
    require(codec.decode(response, state).status == tether::decode_status::handshake, "the valid response passes");
  }
  const outcome at_once = decode_stream(codec, state, stream, stream.size() + 1);
  const outcome byte_by_byte = decode_stream(codec, state, stream, 1);
  const outcome in_sevens = decode_stream(codec, state, stream, 7);
  require(at_once == byte_by_byte && at_once == in_sevens, "the steps do not depend on how the stream is split");
  return 0;
}
