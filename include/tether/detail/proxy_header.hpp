// The HAProxy PROXY protocol header (versions 1 and 2) that an L4 balancer or TLS terminator puts before a
// connection's first byte to say whom it carries: parsed here from the bytes received so far, without
// touching a socket.
//
// Version 1 is one text line of at most 107 bytes ("PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n");
// version 2 a 16-byte binary preamble whose last two bytes give the length of the address block and TLVs that
// follow. Only TCP over IPv4 and IPv6 carries a client; LOCAL (version 2) and UNKNOWN (version 1) mean the
// balancer speaks for itself (a health check), and so does version 2's unspecified family.
#pragma once

#include <asio/ip/address_v4.hpp>
#include <asio/ip/address_v6.hpp>
#include <asio/ip/tcp.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

namespace tether::detail {

inline constexpr std::string_view proxy_v1_signature{"PROXY ", 6};
inline constexpr std::string_view proxy_v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};
inline constexpr std::size_t proxy_v1_max_size = 107;
inline constexpr std::size_t proxy_v2_preamble_size = 16;

enum class proxy_header_status : std::uint8_t { incomplete, complete, invalid };

struct proxy_header {
  proxy_header_status status = proxy_header_status::incomplete;
  std::size_t length = 0;  // complete: the header's bytes, all of which belong to it and none to the codec
  int version = 0;
  bool local = false;  // the balancer's own connection: no client addresses
  asio::ip::tcp::endpoint source;       // the client, when !local
  asio::ip::tcp::endpoint destination;  // the address the client connected to, when !local
  const char* problem = "";             // invalid: why, a string literal

  static proxy_header invalid(const char* why) noexcept {
    proxy_header h;
    h.status = proxy_header_status::invalid;
    h.problem = why;
    return h;
  }
};

// Whether the first bytes of a connection begin a PROXY protocol header: undecided while they are a strict
// prefix of a signature.
enum class proxy_signature : std::uint8_t { absent, present, undecided };

inline proxy_signature proxy_signature_in(std::string_view first_bytes) noexcept {
  bool could_still_be = false;
  for (const std::string_view signature : {proxy_v1_signature, proxy_v2_signature}) {
    const std::size_t compared = std::min(first_bytes.size(), signature.size());
    if (first_bytes.substr(0, compared) != signature.substr(0, compared))
      continue;
    if (compared == signature.size())
      return proxy_signature::present;
    could_still_be = true;
  }
  return could_still_be ? proxy_signature::undecided : proxy_signature::absent;
}

namespace proxy_parsing {

inline bool parse_port(std::string_view digits, std::uint16_t& port) noexcept {
  unsigned value = 0;
  const auto [end, problem] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || digits.size() > 5 || problem != std::errc{} || end != digits.data() + digits.size() ||
      value > 65535)
    return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

// The fields after "PROXY ", one space apart, without the CRLF.
inline proxy_header parse_v1_fields(std::string_view fields, std::size_t length) {
  std::array<std::string_view, 5> token{};
  std::size_t count = 0;
  for (bool more = true; more; ++count) {
    const auto space = fields.find(' ');
    if (count < token.size())
      token[count] = fields.substr(0, space);
    more = space != std::string_view::npos;
    if (more)
      fields.remove_prefix(space + 1);
  }
  proxy_header h;
  h.version = 1;
  h.length = length;
  if (token[0] == "UNKNOWN") {  // whatever follows is to be ignored
    h.status = proxy_header_status::complete;
    h.local = true;
    return h;
  }
  const bool v4 = token[0] == "TCP4";
  if (!v4 && token[0] != "TCP6")
    return proxy_header::invalid("PROXY protocol v1 header with a protocol other than TCP4, TCP6 or UNKNOWN");
  if (count != token.size())
    return proxy_header::invalid("PROXY protocol v1 header without exactly two addresses and two ports");
  std::error_code source_bad;
  std::error_code destination_bad;
  asio::ip::address source;
  asio::ip::address destination;
  if (v4) {
    source = asio::ip::make_address_v4(std::string{token[1]}, source_bad);
    destination = asio::ip::make_address_v4(std::string{token[2]}, destination_bad);
  } else {
    source = asio::ip::make_address_v6(std::string{token[1]}, source_bad);
    destination = asio::ip::make_address_v6(std::string{token[2]}, destination_bad);
  }
  if (source_bad || destination_bad)
    return proxy_header::invalid("PROXY protocol v1 header with an address not of its protocol's family");
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  if (!parse_port(token[3], source_port) || !parse_port(token[4], destination_port))
    return proxy_header::invalid("PROXY protocol v1 header with a port that is not a number from 0 to 65535");
  h.status = proxy_header_status::complete;
  h.source = {source, source_port};
  h.destination = {destination, destination_port};
  return h;
}

inline proxy_header parse_v1(std::string_view bytes) {
  const auto end = bytes.substr(0, proxy_v1_max_size).find("\r\n");
  if (end == std::string_view::npos) {
    if (bytes.size() >= proxy_v1_max_size)
      return proxy_header::invalid("PROXY protocol v1 header without CRLF within 107 bytes");
    return {};
  }
  return parse_v1_fields(bytes.substr(proxy_v1_signature.size(), end - proxy_v1_signature.size()), end + 2);
}

inline std::uint16_t big_endian_16(const char* at) noexcept {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(at[0]) << 8) | static_cast<unsigned char>(at[1]));
}

inline proxy_header parse_v2(std::string_view bytes, std::size_t max_size) {
  if (bytes.size() < proxy_v2_preamble_size)
    return {};
  const auto version_and_command = static_cast<unsigned char>(bytes[12]);
  const auto family_and_transport = static_cast<unsigned char>(bytes[13]);
  const std::size_t length = proxy_v2_preamble_size + big_endian_16(bytes.data() + 14);
  if ((version_and_command >> 4) != 2)
    return proxy_header::invalid("PROXY protocol v2 signature with a version other than 2");
  const unsigned command = version_and_command & 0x0F;
  if (command > 1)
    return proxy_header::invalid("PROXY protocol v2 header with a command other than LOCAL or PROXY");
  if (length > max_size)
    return proxy_header::invalid("PROXY protocol v2 header longer than max_header_size");
  if (bytes.size() < length)
    return {};
  proxy_header h;
  h.version = 2;
  h.length = length;
  h.status = proxy_header_status::complete;
  // LOCAL: the balancer's own connection; an unspecified family: no addresses to take (both per the spec).
  if (command == 0 || family_and_transport == 0x00) {
    h.local = true;
    return h;
  }
  const char* block = bytes.data() + proxy_v2_preamble_size;
  const std::size_t block_size = length - proxy_v2_preamble_size;
  if (family_and_transport == 0x11) {  // TCP over IPv4: two addresses of 4 bytes, two ports
    if (block_size < 12)
      return proxy_header::invalid("PROXY protocol v2 header too short for its IPv4 addresses");
    std::array<unsigned char, 4> source{};
    std::array<unsigned char, 4> destination{};
    std::memcpy(source.data(), block, 4);
    std::memcpy(destination.data(), block + 4, 4);
    h.source = {asio::ip::address_v4{source}, big_endian_16(block + 8)};
    h.destination = {asio::ip::address_v4{destination}, big_endian_16(block + 10)};
    return h;
  }
  if (family_and_transport == 0x21) {  // TCP over IPv6: two addresses of 16 bytes, two ports
    if (block_size < 36)
      return proxy_header::invalid("PROXY protocol v2 header too short for its IPv6 addresses");
    std::array<unsigned char, 16> source{};
    std::array<unsigned char, 16> destination{};
    std::memcpy(source.data(), block, 16);
    std::memcpy(destination.data(), block + 16, 16);
    h.source = {asio::ip::address_v6{source}, big_endian_16(block + 32)};
    h.destination = {asio::ip::address_v6{destination}, big_endian_16(block + 34)};
    return h;
  }
  return proxy_header::invalid("PROXY protocol v2 header for a transport other than TCP over IPv4 or IPv6");
}

} // namespace proxy_parsing

// Parses the header at the start of `bytes` (everything received so far). Incomplete until the whole header
// is there; invalid as soon as the bytes cannot begin one, or the header would pass max_size (version 2; version
// 1 has its own fixed limit).
inline proxy_header parse_proxy_header(std::string_view bytes, std::size_t max_size) {
  switch (proxy_signature_in(bytes)) {
  case proxy_signature::undecided:
    return {};
  case proxy_signature::absent:
    return proxy_header::invalid("no PROXY protocol header where one was required");
  case proxy_signature::present:
    break;
  }
  if (bytes.substr(0, proxy_v1_signature.size()) == proxy_v1_signature)
    return proxy_parsing::parse_v1(bytes);
  return proxy_parsing::parse_v2(bytes, max_size);
}

} // namespace tether::detail
