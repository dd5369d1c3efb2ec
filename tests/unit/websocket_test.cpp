#include "catch.hpp"

#include <tether/codec/websocket_codec.hpp>
#include <tether/detail/base64.hpp>
#include <tether/detail/sha1.hpp>
#include <tether/detail/utf8.hpp>

#include <string>
#include <string_view>

using namespace std::string_literals;
using tether::decode_status;
using tether::frame_kind;
using tether::websocket_codec;

namespace {

std::string hex(const tether::detail::sha1::digest& digest) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  for (const auto byte : digest) {
    text += digits[byte >> 4];
    text += digits[byte & 15];
  }
  return text;
}

const std::string upgrade_request = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    "Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";

// A codec whose state has finished the handshake, so that frames can be decoded.
struct open_stream {
  explicit open_stream(websocket_codec::role side) : codec{.side = side, .path = "/chat"} {
    if (side == websocket_codec::role::server) {
      REQUIRE(codec.decode(upgrade_request, state).status == decode_status::handshake);
    } else {
      std::string request;
      codec.begin_handshake(state, request);
      const auto key_at = request.find("Sec-WebSocket-Key: ") + 19;
      const auto key = request.substr(key_at, request.find("\r\n", key_at) - key_at);
      const std::string response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: " + websocket_codec::accept_key(key) + "\r\n\r\n";
      REQUIRE(codec.decode(response, state).status == decode_status::handshake);
    }
  }

  tether::decoded decode(std::string_view bytes) { return codec.decode(bytes, state); }
  std::string close_frame_for(tether::close_reason reason) {
    std::string out;
    REQUIRE(codec.encode_close(reason, state, out));
    return out;
  }

  websocket_codec codec;
  websocket_codec::decoder_state state;
};

// A masked frame as a client sends it (RFC 6455 5.7's key), for the server role's tests.
std::string masked(std::uint8_t first_byte, std::string_view payload) {
  const std::string key = "\x37\xfa\x21\x3d";
  std::string frame{static_cast<char>(first_byte)};
  if (payload.size() < 126) {
    frame += static_cast<char>(0x80 | payload.size());
  } else {
    frame += static_cast<char>(0x80 | 126);
    frame += static_cast<char>(payload.size() >> 8);
    frame += static_cast<char>(payload.size() & 0xFF);
  }
  frame += key;
  for (std::size_t i = 0; i < payload.size(); ++i)
    frame += static_cast<char>(payload[i] ^ key[i % 4]);
  return frame;
}

} // namespace

TEST_CASE("SHA-1, base64 and the accept key match their published test vectors") {
  CHECK(hex(tether::detail::sha1::of("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex(tether::detail::sha1::of("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(hex(tether::detail::sha1::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(hex(tether::detail::sha1::of(std::string(1'000'000, 'a'))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  const std::string_view bytes = "foobar";
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  CHECK(tether::detail::base64_encode({data, 1}) == "Zg==");
  CHECK(tether::detail::base64_encode({data, 5}) == "Zm9vYmE=");
  CHECK(tether::detail::base64_encode({data, 6}) == "Zm9vYmFy");
  CHECK(tether::detail::base64_decoded_size("dGhlIHNhbXBsZSBub25jZQ==") == 16u);
  CHECK_FALSE(tether::detail::base64_decoded_size("not base64!").has_value());
  // RFC 6455 section 1.3.
  CHECK(websocket_codec::accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("UTF-8 validation refuses overlong forms, surrogates and code points past U+10FFFF") {
  using tether::detail::valid_utf8;
  CHECK(valid_utf8("plain ascii"));
  CHECK(valid_utf8("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"));  // Greek "kosme"
  CHECK(valid_utf8("\xF0\x9F\x98\x80"));                             // an emoji, four bytes
  CHECK_FALSE(valid_utf8("\xC0\xAF"));                               // overlong '/'
  CHECK_FALSE(valid_utf8("\xE0\x80\xAF"));                           // overlong, three bytes
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));                           // a UTF-16 surrogate
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));                       // above U+10FFFF
  CHECK_FALSE(valid_utf8("\xCE"));                                   // cut short
  CHECK_FALSE(valid_utf8("\xFF"));
  tether::detail::utf8_validator split;
  CHECK(split.feed("\xF0\x9F"));  // resumes in the middle of a character
  CHECK_FALSE(split.complete());
  CHECK(split.feed("\x98\x80"));
  CHECK(split.complete());
}

TEST_CASE("the server answers a valid upgrade with 101 and the accept key, and refuses bad ones with their status") {
  websocket_codec codec{.path = "/chat", .subprotocols = {"mqtt", "chat"}};
  websocket_codec::decoder_state state;
  SECTION("a valid request, in pieces") {
    CHECK(codec.decode(upgrade_request.substr(0, 40), state).status == decode_status::need_more);
    const auto done = codec.decode(upgrade_request + "\x81", state);
    CHECK(done.status == decode_status::handshake);
    CHECK(done.consumed == upgrade_request.size());
    CHECK(done.payload.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(done.payload.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string_view::npos);
    CHECK(done.payload.ends_with("\r\n\r\n"));
    CHECK(state.handshake_done());
  }
  SECTION("the first of the server's subprotocols that the client offers") {
    std::string offering = upgrade_request;
    offering.insert(offering.size() - 2, "Sec-WebSocket-Protocol: chat, mqtt\r\n");
    const auto done = codec.decode(offering, state);
    CHECK(done.payload.find("Sec-WebSocket-Protocol: mqtt\r\n") != std::string_view::npos);
    CHECK(state.subprotocol(codec) == "mqtt");
  }
  const auto refused = [&](std::string request) {
    const auto result = codec.decode(request, state);
    REQUIRE(result.status == decode_status::rejected);
    CHECK_FALSE(result.problem.empty());
    return std::string{result.payload.substr(0, result.payload.find("\r\n"))};
  };
  SECTION("malformed: 400") {
    CHECK(refused("POST /chat HTTP/1.1\r\n\r\n") == "HTTP/1.1 400 Bad Request");
    CHECK(refused("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 400 Bad Request");
    std::string bad_key = upgrade_request;
    bad_key.replace(bad_key.find("dGhl"), 4, "!!!!");
    CHECK(refused(bad_key) == "HTTP/1.1 400 Bad Request");
    CHECK(refused("GET /chat HTTP/1.1\r\nno colon here\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  }
  SECTION("another version: 426 naming version 13") {
    std::string old = upgrade_request;
    old.replace(old.find("Version: 13"), 11, "Version: 8");
    const auto result = codec.decode(old, state);
    CHECK(std::string{result.payload}.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    CHECK(result.payload.find("Sec-WebSocket-Version: 13\r\n") != std::string_view::npos);
  }
  SECTION("another path: 404") {
    std::string elsewhere = upgrade_request;
    elsewhere.replace(elsewhere.find("/chat"), 5, "/admin");
    CHECK(refused(elsewhere) == "HTTP/1.1 404 Not Found");
  }
  SECTION("a request that never ends within max_handshake_size: 431") {
    CHECK(refused("GET /chat HTTP/1.1\r\nX-Padding: " + std::string(9000, 'p')) ==
          "HTTP/1.1 431 Request Header Fields Too Large");
  }
}

TEST_CASE("the client sends a complete upgrade request and checks the server's accept key") {
  websocket_codec codec{.side = websocket_codec::role::client, .path = "/feed", .host = "example.org:8080"};
  websocket_codec::decoder_state state;
  std::string request;
  codec.begin_handshake(state, request);
  CHECK(request.starts_with("GET /feed HTTP/1.1\r\nHost: example.org:8080\r\n"));
  CHECK(request.find("Upgrade: websocket\r\nConnection: Upgrade\r\n") != std::string::npos);
  CHECK(request.find("Sec-WebSocket-Version: 13\r\n") != std::string::npos);
  CHECK(request.ends_with("\r\n\r\n"));
  const auto key_at = request.find("Sec-WebSocket-Key: ") + 19;
  const auto key = request.substr(key_at, request.find("\r\n", key_at) - key_at);
  CHECK(tether::detail::base64_decoded_size(key) == 16u);
  SECTION("a wrong accept key is refused") {
    const auto result = codec.decode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                                     state);
    CHECK(result.status == decode_status::rejected);
    CHECK(result.payload.empty());
  }
  SECTION("a refusal status is refused") {
    CHECK(codec.decode("HTTP/1.1 403 Forbidden\r\n\r\n", state).status == decode_status::rejected);
  }
}

TEST_CASE("the server decodes masked frames, reassembles fragments and refuses what RFC 6455 forbids") {
  open_stream stream{websocket_codec::role::server};
  SECTION("a masked text frame (RFC 6455 5.7)") {
    const auto frame = stream.decode("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"s);
    CHECK(frame.status == decode_status::frame);
    CHECK(frame.kind == frame_kind::data);
    CHECK(frame.payload == "Hello");
    CHECK(frame.consumed == 11);
  }
  SECTION("binary, and a 300-byte message with a 16-bit length") {
    const auto binary = stream.decode(masked(0x82, "\x01\x02\xff"s));
    CHECK(binary.kind == frame_kind::binary);
    CHECK(binary.payload == "\x01\x02\xff"s);
    const std::string long_text(300, 't');
    CHECK(stream.decode(masked(0x81, long_text)).payload == long_text);
  }
  SECTION("fragments with a ping between them") {
    const std::string first = masked(0x01, "Hel");
    const std::string ping = masked(0x89, "are you there");
    const std::string last = masked(0x80, "lo");
    CHECK(stream.decode(first).status == decode_status::partial);
    const auto control = stream.decode(ping);
    CHECK(control.kind == frame_kind::ping);
    CHECK(control.payload == "are you there");
    const auto message = stream.decode(last);
    CHECK(message.kind == frame_kind::data);
    CHECK(message.payload == "Hello");
  }
  SECTION("a close frame is the peer's goaway, and its code is kept and echoed") {
    const auto close = stream.decode(masked(0x88, "\x03\xe8" "bye"s));
    CHECK(close.kind == frame_kind::goaway);
    CHECK(close.payload == "bye");
    CHECK(stream.state.peer_close_code() == 1000);
    CHECK(stream.close_frame_for(tether::close_reason::peer_closed) == "\x88\x02\x03\xe8"s);
  }
  const auto refused = [&](const std::string& bytes, std::uint16_t code) {
    const auto result = stream.decode(bytes);
    REQUIRE(result.status == decode_status::malformed);
    const std::string close = stream.close_frame_for(tether::close_reason::protocol_error);
    CHECK(static_cast<std::uint16_t>(static_cast<std::uint8_t>(close[2]) << 8 | static_cast<std::uint8_t>(close[3])) == code);
    return std::string{result.problem};
  };
  SECTION("an unmasked client frame: 1002") { CHECK(refused("\x81\x05Hello"s, 1002) == "a client frame is not masked"); }
  SECTION("reserved bits and opcodes: 1002") {
    refused(masked(0xC1, "x"), 1002);
    refused(masked(0x83, "x"), 1002);
    refused(masked(0x8B, "x"), 1002);
  }
  SECTION("an oversized or fragmented control frame: 1002") {
    refused(masked(0x89, std::string(126, 'p')), 1002);
    refused(masked(0x09, "p"), 1002);
  }
  SECTION("a continuation without a message, and a message inside a message: 1002") {
    refused(masked(0x80, "x"), 1002);
    CHECK(stream.decode(masked(0x01, "a")).status == decode_status::partial);
    refused(masked(0x81, "b"), 1002);
  }
  SECTION("invalid UTF-8 in text, whole or split: 1007") {
    refused(masked(0x81, "\xC0\xAF"s), 1007);
  }
  SECTION("a text message cut inside a character: 1007") {
    CHECK(stream.decode(masked(0x01, "\xF0\x9F"s)).status == decode_status::partial);
    refused(masked(0x80, ""), 1007);
  }
  SECTION("a 2^63 length, refused from the header alone") {
    refused("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00"s, 1002);
    refused("\x82\xFF\x00\x00\x00\x01\x00\x00\x00\x00"s, 1009);  // 4 GiB: over max_message_size
  }
  SECTION("fragments adding up past max_message_size: 1009") {
    stream.codec.max_message_size = 10;
    CHECK(stream.decode(masked(0x02, "123456")).status == decode_status::partial);
    refused(masked(0x80, "78901"), 1009);
  }
  SECTION("a close frame with a one-byte body or a code no one may send: 1002") {
    refused(masked(0x88, "\x03"s), 1002);
    refused(masked(0x88, "\x03\xed"s), 1002);  // 1005
  }
}

TEST_CASE("the client refuses masked server frames and masks everything it sends") {
  open_stream stream{websocket_codec::role::client};
  CHECK(stream.decode("\x81\x05Hello"s).payload == "Hello");
  CHECK(stream.decode("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"s).status == decode_status::malformed);
  std::string out;
  REQUIRE(stream.codec.encode(frame_kind::data, "Hello", out));
  REQUIRE(out.size() == 2 + 4 + 5);
  CHECK(out[0] == '\x81');
  CHECK(out[1] == '\x85');
  std::string unmasked;
  for (std::size_t i = 0; i < 5; ++i)
    unmasked += static_cast<char>(out[6 + i] ^ out[2 + i % 4]);
  CHECK(unmasked == "Hello");
}

TEST_CASE("the server encodes unmasked frames of every kind and refuses what the protocol cannot carry") {
  const websocket_codec codec;
  std::string out;
  REQUIRE(codec.encode(frame_kind::data, "Hello", out));
  CHECK(out == "\x81\x05Hello");
  out.clear();
  REQUIRE(codec.encode(frame_kind::binary, std::string(70'000, 'b'), out));
  CHECK(out.substr(0, 10) == "\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70"s);
  out.clear();
  REQUIRE(codec.encode(frame_kind::pong, "7", out));
  CHECK(out == "\x8a\x01" "7"s);
  out.clear();
  REQUIRE(codec.encode(frame_kind::goaway, "", out));
  CHECK(out == "\x88\x02\x03\xe9"s);  // 1001, going away
  out.clear();
  CHECK_FALSE(codec.encode(frame_kind::data, "\xC0\xAF"s, out));  // text must be UTF-8
  CHECK_FALSE(codec.encode(frame_kind::ping, std::string(126, 'p'), out));
  CHECK(out.empty());
}
