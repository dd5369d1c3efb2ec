#include "catch.hpp"

#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::string_literals;
using tether::decode_status;
using tether::decoded;
using tether::frame_kind;

static_assert(tether::control_frame_codec<tether::line_codec>);
static_assert(tether::control_frame_codec<tether::length_prefixed_codec>);
static_assert(tether::codec<tether::raw_codec>);
static_assert(!tether::control_frame_codec<tether::raw_codec>);

struct lacks_decoder_state {
  static constexpr bool carries_control_frames = true;
  decoded decode(std::string_view, int&) const;
  bool encode(frame_kind, std::string_view, std::string&) const;
  std::size_t max_frame_size() const;
};
static_assert(!tether::codec<lacks_decoder_state>);

// Whether heartbeat may be used must be known at compile time.
struct decides_control_frames_at_run_time {
  struct decoder_state {};
  static bool carries_control_frames;
  decoded decode(std::string_view, decoder_state&) const;
  bool encode(frame_kind, std::string_view, std::string&) const;
  std::size_t max_frame_size() const;
};
static_assert(!tether::codec<decides_control_frames_at_run_time>);

namespace {

constexpr std::array all_kinds{frame_kind::data, frame_kind::ping, frame_kind::pong, frame_kind::goaway};

struct frame {
  frame_kind kind;
  std::string payload;
  bool operator==(const frame&) const = default;
};

struct stream_outcome {
  std::vector<frame> frames;
  std::string problem;       // empty unless the stream was found malformed
  std::size_t left_over = 0; // the start of a frame still waiting for its end; after malformed, how much of
                             // the stream had been read is up to the network, so this stays 0
  bool operator==(const stream_outcome&) const = default;
};

// Feeds `wire` to the codec `chunk_size` bytes at a time, the way a connection's read loop does.
template <tether::codec Codec>
stream_outcome decode_stream(const Codec& codec, std::string_view wire, std::size_t chunk_size) {
  stream_outcome outcome;
  std::string buffer;
  typename Codec::decoder_state state;
  for (std::size_t offset = 0; offset < wire.size() && outcome.problem.empty(); offset += chunk_size) {
    buffer.append(wire.substr(offset, chunk_size));
    for (decoded step = codec.decode(buffer, state); step.status != decode_status::need_more;
         step = codec.decode(buffer, state)) {
      if (step.status == decode_status::malformed) {
        outcome.problem = step.problem;
        break;
      }
      outcome.frames.push_back({step.kind, std::string{step.payload}});
      buffer.erase(0, step.consumed);
    }
  }
  if (outcome.problem.empty())
    outcome.left_over = buffer.size();
  return outcome;
}

// Decodes `wire` as it would arrive in one read, after checking that every other way the network could
// split it gives exactly the same outcome.
template <tether::codec Codec>
stream_outcome decode_wire(const Codec& codec, std::string_view wire) {
  const stream_outcome whole = decode_stream(codec, wire, wire.size() + 1);
  for (const std::size_t chunk_size : {1, 2, 3, 5, 7, 64}) {
    INFO("chunk size " << chunk_size);
    CHECK(decode_stream(codec, wire, chunk_size) == whole);
  }
  return whole;
}

stream_outcome delivered(std::vector<frame> frames) { return {std::move(frames), "", 0}; }

template <tether::codec Codec>
std::string encode(const Codec& codec, frame_kind kind, std::string_view payload) {
  std::string out;
  REQUIRE(codec.encode(kind, payload, out));
  return out;
}

std::string_view kind_name(frame_kind kind) {
  switch (kind) {
  case frame_kind::data:
    return "data";
  case frame_kind::ping:
    return "ping";
  case frame_kind::pong:
    return "pong";
  case frame_kind::goaway:
    return "goaway";
  case frame_kind::binary:
    return "binary";
  }
  return "invalid";
}

std::string printable(std::string_view bytes) {
  static constexpr char hex_digits[] = "0123456789abcdef";
  std::string text;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      text += c;
    } else {
      text += "\\x";
      text += hex_digits[byte >> 4];
      text += hex_digits[byte & 0xf];
    }
  }
  return text;
}

std::string length_header(std::uint32_t length, std::uint8_t kind) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16 & 0xff),
          static_cast<char>(length >> 8 & 0xff), static_cast<char>(length & 0xff), static_cast<char>(kind)};
}

} // namespace

namespace Catch {
template <>
struct StringMaker<frame> {
  static std::string convert(const frame& value) {
    return std::string{kind_name(value.kind)} + " \"" + printable(value.payload) + "\"";
  }
};
template <>
struct StringMaker<stream_outcome> {
  static std::string convert(const stream_outcome& value) {
    std::string text = "{";
    for (const frame& each : value.frames)
      text += StringMaker<frame>::convert(each) + ", ";
    if (!value.problem.empty())
      text += "malformed: " + value.problem + ", ";
    return text + std::to_string(value.left_over) + " bytes left over}";
  }
};
} // namespace Catch

TEST_CASE("line_codec writes the documented wire format") {
  const tether::line_codec codec;
  CHECK(encode(codec, frame_kind::data, "hello") == "hello\n");
  CHECK(encode(codec, frame_kind::data, "") == "\n");
  CHECK(encode(codec, frame_kind::data, "\x10" "data") == "\x10\x10" "data\n");
  CHECK(encode(codec, frame_kind::data, "ends in cr\r") == "ends in cr\r\r\n");
  CHECK(encode(codec, frame_kind::ping, "") == "\x10ping\n");
  CHECK(encode(codec, frame_kind::ping, "17") == "\x10ping 17\n");
  CHECK(encode(codec, frame_kind::pong, "17") == "\x10pong 17\n");
  CHECK(encode(codec, frame_kind::goaway, "shutting down") == "\x10goaway shutting down\n");
}

TEST_CASE("length_prefixed_codec writes the documented wire format") {
  const tether::length_prefixed_codec codec;
  CHECK(encode(codec, frame_kind::data, "hi") == "\0\0\0\x02\0hi"s);
  CHECK(encode(codec, frame_kind::ping, "") == "\0\0\0\0\x01"s);
  CHECK(encode(codec, frame_kind::pong, "x") == "\0\0\0\x01\x02x"s);
  CHECK(encode(codec, frame_kind::goaway, "") == "\0\0\0\0\x03"s);
  const std::string large(0x011170, 'z');
  CHECK(encode(codec, frame_kind::data, large) == "\0\x01\x11\x70\0"s + large);
  CHECK(decode_wire(codec, "\0\x01\x11\x70\0"s + large) == delivered({{frame_kind::data, large}}));
}

TEST_CASE("every frame kind survives a round trip") {
  const std::vector<std::string> payloads{"",
                                          "hello world",
                                          " leading and trailing space ",
                                          "ping",
                                          "\x10",
                                          "\x10\x10",
                                          "\x10ping",
                                          "\x10" "data",
                                          "cr\rinside",
                                          "ends in cr\r",
                                          "\r",
                                          "nul\0inside"s,
                                          std::string(300, 'a')};
  const auto round_trip = [&](const auto& codec) {
    for (const frame_kind kind : all_kinds) {
      for (const std::string& payload : payloads) {
        INFO(kind_name(kind) << " \"" << printable(payload) << "\"");
        const std::string wire = encode(codec, kind, payload);
        CHECK(decode_wire(codec, wire) == delivered({{kind, payload}}));
      }
    }
  };
  SECTION("line_codec") { round_trip(tether::line_codec{}); }
  SECTION("length_prefixed_codec") {
    round_trip(tether::length_prefixed_codec{});
    const std::string binary{"\n\r\0\x10\xff\x80"s};
    CHECK(decode_wire(tether::length_prefixed_codec{}, encode(tether::length_prefixed_codec{}, frame_kind::data,
                                                              binary)) == delivered({{frame_kind::data, binary}}));
  }
}

TEST_CASE("decoding one byte at a time yields exactly the frames of decoding at once") {
  const std::vector<frame> frames{{frame_kind::data, "first"},     {frame_kind::ping, "1"},
                                  {frame_kind::data, ""},          {frame_kind::data, "\x10" "escaped"},
                                  {frame_kind::pong, "1"},         {frame_kind::data, std::string(1000, 'x')},
                                  {frame_kind::goaway, "draining"}, {frame_kind::data, "last"}};
  const auto check = [&](const auto& codec) {
    std::string wire;
    for (const frame& each : frames)
      REQUIRE(codec.encode(each.kind, each.payload, wire));
    const stream_outcome expected{frames, "", 0};
    CHECK(decode_stream(codec, wire, 1) == expected);
    CHECK(decode_wire(codec, wire) == expected);
  };
  SECTION("line_codec") { check(tether::line_codec{}); }
  SECTION("length_prefixed_codec") { check(tether::length_prefixed_codec{}); }
  SECTION("a 64 KiB line") {
    const tether::line_codec codec{.max_line_length = 64 * 1024};
    const std::string line(64 * 1024, 'l');
    CHECK(decode_stream(codec, line + "\r\n", 1) == delivered({{frame_kind::data, line}}));
  }
}

TEST_CASE("line_codec resumes its search for the newline where it stopped") {
  const tether::line_codec codec;
  tether::line_codec::decoder_state state;
  REQUIRE(codec.decode("abc", state).status == decode_status::need_more);
  // A decoder that searched from the start again would find the '\n' planted in bytes it already scanned.
  const decoded step = codec.decode("a\ncd\n", state);
  REQUIRE(step.status == decode_status::frame);
  CHECK(step.payload == "a\ncd");
  CHECK(step.consumed == 5);
}

TEST_CASE("one decode call takes one frame from the front of the buffer") {
  const auto check = [](const auto& codec, const std::string& buffer, std::initializer_list<std::size_t> sizes) {
    typename std::remove_cvref_t<decltype(codec)>::decoder_state state;
    std::string_view rest = buffer;
    for (const std::size_t size : sizes) {
      const decoded step = codec.decode(rest, state);
      REQUIRE(step.status == decode_status::frame);
      CHECK(step.consumed == size);
      CHECK(step.payload.data() >= rest.data());
      CHECK(step.payload.data() + step.payload.size() <= rest.data() + step.consumed);
      rest.remove_prefix(step.consumed);
    }
    CHECK(rest.empty());
    CHECK(codec.decode(rest, state).status == decode_status::need_more);
  };
  SECTION("line_codec") { check(tether::line_codec{}, "a\n\x10ping\nbc\r\n\n", {2, 6, 4, 1}); }
  SECTION("length_prefixed_codec") { check(tether::length_prefixed_codec{}, "\0\0\0\x01\0a\0\0\0\0\x01"s, {6, 5}); }
}

TEST_CASE("line_codec keeps data and control lines apart with DLE") {
  const tether::line_codec codec;
  CHECK(decode_wire(codec, "ping\n") == delivered({{frame_kind::data, "ping"}}));
  CHECK(decode_wire(codec, "\x10ping\n") == delivered({{frame_kind::ping, ""}}));
  CHECK(decode_wire(codec, "\x10ping \n") == delivered({{frame_kind::ping, ""}}));
  CHECK(decode_wire(codec, "\x10pong  two spaces\n") == delivered({{frame_kind::pong, " two spaces"}}));
  CHECK(decode_wire(codec, "\x10\x10ping\n") == delivered({{frame_kind::data, "\x10ping"}}));
  CHECK(decode_wire(codec, "\x10\x10\n") == delivered({{frame_kind::data, "\x10"}}));
  CHECK(decode_wire(codec, "\x10\x10\x10\n") == delivered({{frame_kind::data, "\x10\x10"}}));
  CHECK(decode_wire(codec, "not\x10" "first\n") == delivered({{frame_kind::data, "not\x10" "first"}}));
  CHECK(encode(codec, frame_kind::data, "\x10ping") == "\x10\x10ping\n");
}

TEST_CASE("line_codec refuses a line with a single DLE and an unknown command") {
  const tether::line_codec codec;
  for (const std::string_view line : {"\x10pingx\n", "\x10PING\n", "\x10\n", "\x10\r\n", "\x10 ping\n",
                                      "\x10hello there\n", "\x10goawa\n", "\x10pin\n"}) {
    INFO(printable(line));
    const stream_outcome outcome = decode_wire(codec, line);
    CHECK(outcome.frames.empty());
    CHECK_FALSE(outcome.problem.empty());
  }
  const stream_outcome after_good_lines = decode_wire(codec, "ok\n\x10ping\n\x10nope\nnever read\n");
  CHECK(after_good_lines.frames == std::vector<frame>{{frame_kind::data, "ok"}, {frame_kind::ping, ""}});
  CHECK_FALSE(after_good_lines.problem.empty());
}

TEST_CASE("line_codec refuses an oversized line before its newline arrives") {
  const tether::line_codec codec{.max_line_length = 8};
  tether::line_codec::decoder_state state;
  // Nine bytes may still be eight of content and a '\r'; a tenth without '\n' cannot be.
  CHECK(codec.decode("123456789", state).status == decode_status::need_more);
  const decoded oversized = codec.decode("1234567890", state);
  CHECK(oversized.status == decode_status::malformed);
  CHECK(oversized.problem == "line longer than max_line_length");
  tether::line_codec::decoder_state fresh_state;
  CHECK(codec.decode("a line far longer than eight bytes, with its newline far away\n", fresh_state).status ==
        decode_status::malformed);
  CHECK(codec.decode(std::string(100, 'x'), fresh_state).status == decode_status::malformed);

  std::string slowloris;
  tether::line_codec::decoder_state slowloris_state;
  decoded step;
  while (step.status == decode_status::need_more && slowloris.size() < 1000) {
    slowloris += 'x';
    step = codec.decode(slowloris, slowloris_state);
  }
  CHECK(step.status == decode_status::malformed);
  CHECK(slowloris.size() == 10);

  CHECK(decode_wire(codec, "12345678\n") == delivered({{frame_kind::data, "12345678"}}));
  CHECK(decode_wire(codec, "12345678\r\n") == delivered({{frame_kind::data, "12345678"}}));
  CHECK_FALSE(decode_wire(codec, "123456789\n").problem.empty());
  CHECK_FALSE(decode_wire(codec, "\x10ping 123\n").problem.empty()); // DLE and command count
  CHECK(decode_wire(codec, "\x10ping 12\n") == delivered({{frame_kind::ping, "12"}}));
}

TEST_CASE("length_prefixed_codec refuses an oversized frame from its header alone") {
  const tether::length_prefixed_codec codec{.max_payload_size = 16};
  tether::length_prefixed_codec::decoder_state state;
  CHECK(codec.decode(length_header(16, 0).substr(0, 4), state).status == decode_status::need_more);
  CHECK(codec.decode(length_header(16, 0), state).status == decode_status::need_more);
  const decoded oversized = codec.decode(length_header(17, 0), state);
  CHECK(oversized.status == decode_status::malformed);
  CHECK(oversized.problem == "declared length exceeds max_payload_size");
  CHECK(codec.decode(length_header(0xffffffff, 1), state).status == decode_status::malformed);
  CHECK(decode_wire(codec, length_header(16, 0) + std::string(16, 'p')) ==
        delivered({{frame_kind::data, std::string(16, 'p')}}));
}

TEST_CASE("length_prefixed_codec refuses an unknown kind byte") {
  const tether::length_prefixed_codec codec;
  tether::length_prefixed_codec::decoder_state state;
  for (const std::uint8_t kind : std::initializer_list<std::uint8_t>{4, 0x10, 0xff}) {
    INFO("kind " << int{kind});
    const decoded step = codec.decode(length_header(1, kind) + "x", state);
    CHECK(step.status == decode_status::malformed);
    CHECK(step.problem == "unknown frame kind byte");
    CHECK(codec.decode(length_header(0, kind), state).status == decode_status::malformed);
  }
}

TEST_CASE("line_codec treats CR LF as a line ending") {
  const tether::line_codec codec;
  CHECK(decode_wire(codec, "hello\r\n") == delivered({{frame_kind::data, "hello"}}));
  CHECK(decode_wire(codec, "\r\n") == delivered({{frame_kind::data, ""}}));
  CHECK(decode_wire(codec, "\x10ping\r\n") == delivered({{frame_kind::ping, ""}}));
  CHECK(decode_wire(codec, "\x10pong 7\r\n") == delivered({{frame_kind::pong, "7"}}));
  CHECK(decode_wire(codec, "a\rb\n") == delivered({{frame_kind::data, "a\rb"}}));
  CHECK(decode_wire(codec, "a\r\r\n") == delivered({{frame_kind::data, "a\r"}}));
  CHECK(decode_wire(codec, "waiting\r") == stream_outcome{{}, "", 8});
}

TEST_CASE("empty lines and empty payloads are frames") {
  CHECK(decode_wire(tether::line_codec{}, "\n\n\r\n") ==
        delivered({{frame_kind::data, ""}, {frame_kind::data, ""}, {frame_kind::data, ""}}));
  const tether::length_prefixed_codec length_codec;
  std::string wire;
  for (const frame_kind kind : all_kinds)
    wire += length_header(0, static_cast<std::uint8_t>(kind));
  CHECK(decode_wire(length_codec, wire) ==
        delivered({{frame_kind::data, ""}, {frame_kind::ping, ""}, {frame_kind::pong, ""},
                        {frame_kind::goaway, ""}}));
}

TEST_CASE("encode refuses what the codec cannot carry and leaves the output unchanged") {
  const std::string earlier = "earlier frames";
  std::string out = earlier;
  const auto invalid_kind = static_cast<frame_kind>(9);

  SECTION("line_codec") {
    const tether::line_codec codec{.max_line_length = 6};
    CHECK_FALSE(codec.encode(frame_kind::data, "a\nb", out));
    CHECK_FALSE(codec.encode(frame_kind::data, "\n", out));
    CHECK_FALSE(codec.encode(frame_kind::ping, "a\nb", out));
    CHECK_FALSE(codec.encode(frame_kind::data, "1234567", out));
    CHECK_FALSE(codec.encode(frame_kind::data, "\x10" "23456", out)); // the escape DLE counts
    CHECK_FALSE(codec.encode(frame_kind::ping, "1", out));            // "\x10ping 1" is 7 bytes
    CHECK_FALSE(codec.encode(frame_kind::goaway, "", out));
    CHECK_FALSE(codec.encode(invalid_kind, "", out));
    CHECK(out == earlier);
    CHECK(codec.encode(frame_kind::data, "123456", out));
    CHECK(codec.encode(frame_kind::ping, "", out));
    CHECK(out == earlier + "123456\n\x10ping\n");
  }
  SECTION("length_prefixed_codec") {
    const tether::length_prefixed_codec codec{.max_payload_size = 4};
    CHECK_FALSE(codec.encode(frame_kind::data, "12345", out));
    CHECK_FALSE(codec.encode(frame_kind::pong, "12345", out));
    CHECK_FALSE(codec.encode(invalid_kind, "", out));
    CHECK(out == earlier);
    CHECK(codec.encode(frame_kind::pong, "1234", out));
    CHECK(out == earlier + length_header(4, 2) + "1234");
  }
  SECTION("raw_codec") {
    const tether::raw_codec codec{.max_payload_size = 4};
    for (const frame_kind kind : {frame_kind::ping, frame_kind::pong, frame_kind::goaway, invalid_kind})
      CHECK_FALSE(codec.encode(kind, "", out));
    CHECK(out == earlier);
    CHECK(codec.encode(frame_kind::data, "longer than the limit", out));
    CHECK(out == earlier + "longer than the limit");
  }
}

TEST_CASE("raw_codec delivers the bytes as they are buffered") {
  const tether::raw_codec codec{.max_payload_size = 4};
  tether::raw_codec::decoder_state state;
  CHECK(codec.decode("", state).status == decode_status::need_more);
  const decoded short_read = codec.decode("ab\n", state);
  CHECK(short_read.status == decode_status::frame);
  CHECK(short_read.kind == frame_kind::data);
  CHECK(short_read.payload == "ab\n");
  CHECK(short_read.consumed == 3);
  const decoded long_read = codec.decode("0123456789", state);
  CHECK(long_read.payload == "0123");
  CHECK(long_read.consumed == 4);
  CHECK(decode_stream(codec, "0123456789", 10).frames ==
        std::vector<frame>{{frame_kind::data, "0123"}, {frame_kind::data, "4567"}, {frame_kind::data, "89"}});
  CHECK(tether::raw_codec{.max_payload_size = 0}.decode("a", state).status == decode_status::malformed);
}
