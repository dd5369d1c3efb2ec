#include "catch.hpp"

#include <tether/detail/proxy_header.hpp>
#include <tether/ip_network.hpp>
#include <tether/proxy_protocol.hpp>

#include <asio/ip/address.hpp>

#include <cstdint>
#include <string>
#include <string_view>

using tether::detail::parse_proxy_header;
using tether::detail::proxy_header_status;
using namespace std::string_literals;

namespace {

constexpr std::size_t max_size = 1024;

std::string v2_header(unsigned char version_and_command, unsigned char family, const std::string& block) {
  std::string header{tether::detail::proxy_v2_signature};
  header += static_cast<char>(version_and_command);
  header += static_cast<char>(family);
  header += static_cast<char>((block.size() >> 8) & 0xFF);
  header += static_cast<char>(block.size() & 0xFF);
  return header + block;
}

std::string big_endian_port(std::uint16_t port) {
  return {static_cast<char>(port >> 8), static_cast<char>(port & 0xFF)};
}

asio::ip::address address(const char* text) { return asio::ip::make_address(text); }

} // namespace

TEST_CASE("proxy header v1: TCP4, TCP6 and UNKNOWN, taking only the header's bytes") {
  const std::string line = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n";
  const auto h = parse_proxy_header(line + "first line of the codec\n", max_size);
  REQUIRE(h.status == proxy_header_status::complete);
  CHECK(h.version == 1);
  CHECK(h.length == line.size());
  CHECK_FALSE(h.local);
  CHECK(h.source.address() == address("203.0.113.7"));
  CHECK(h.source.port() == 51234);
  CHECK(h.destination.address() == address("192.0.2.1"));
  CHECK(h.destination.port() == 443);

  const auto v6 = parse_proxy_header("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n", max_size);
  REQUIRE(v6.status == proxy_header_status::complete);
  CHECK(v6.source.address() == address("2001:db8::7"));
  CHECK(v6.source.port() == 65535);
  CHECK(v6.destination.port() == 0);

  const auto unknown = parse_proxy_header("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", max_size);
  REQUIRE(unknown.status == proxy_header_status::complete);
  CHECK(unknown.local);
  CHECK(parse_proxy_header("PROXY UNKNOWN\r\n", max_size).status == proxy_header_status::complete);
}

TEST_CASE("proxy header v1: incomplete until CRLF, then refused with a reason for each defect") {
  const std::string line = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n";
  for (std::size_t cut = 0; cut < line.size(); ++cut)
    CHECK(parse_proxy_header(line.substr(0, cut), max_size).status == proxy_header_status::incomplete);

  const auto refused = [](const std::string& bytes) {
    const auto h = parse_proxy_header(bytes, max_size);
    CHECK(h.status == proxy_header_status::invalid);
    return std::string{h.problem};
  };
  CHECK(refused("PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n").find("two ports") != std::string::npos);
  CHECK(refused("PROXY TCP4 203.0.113.7 192.0.2.1 51234 443 extra\r\n").find("two ports") != std::string::npos);
  CHECK(refused("PROXY TCP4 203.0.113.7 192.0.2.1 51234 443 \r\n").find("two ports") != std::string::npos);
  CHECK(refused("PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n").find("family") != std::string::npos);
  CHECK(refused("PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n").find("family") != std::string::npos);
  CHECK(refused("PROXY TCP4  203.0.113.7 192.0.2.1 1 2\r\n").find("two ports") != std::string::npos);
  CHECK(refused("PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n").find("port") != std::string::npos);
  CHECK(refused("PROXY TCP4 203.0.113.7 192.0.2.1 -1 443\r\n").find("port") != std::string::npos);
  CHECK(refused("PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n").find("protocol other than") != std::string::npos);
  CHECK(refused("PROXY " + std::string(120, 'x')).find("107 bytes") != std::string::npos);
  CHECK(refused("GET / HTTP/1.1\r\n").find("no PROXY protocol header") != std::string::npos);
  CHECK(refused("PROXX").find("no PROXY protocol header") != std::string::npos);
}

TEST_CASE("proxy header v2: PROXY over IPv4 and IPv6 with TLVs skipped, LOCAL as the balancer's own") {
  const std::string v4_block = "\xcb\x00\x71\x07"s + "\xc0\x00\x02\x01"s + big_endian_port(51234) + big_endian_port(443);
  const std::string tlv = "\x04\x00\x03"s + "abc";  // a NOOP TLV, as balancers pad with
  const auto header = v2_header(0x21, 0x11, v4_block + tlv);
  const auto h = parse_proxy_header(header + "codec bytes", max_size);
  REQUIRE(h.status == proxy_header_status::complete);
  CHECK(h.version == 2);
  CHECK(h.length == header.size());
  CHECK(h.source.address() == address("203.0.113.7"));
  CHECK(h.source.port() == 51234);
  CHECK(h.destination.address() == address("192.0.2.1"));
  CHECK(h.destination.port() == 443);
  for (std::size_t cut = 0; cut < header.size(); ++cut)
    CHECK(parse_proxy_header(header.substr(0, cut), max_size).status == proxy_header_status::incomplete);

  const auto v6_source = asio::ip::make_address_v6("2001:db8::7").to_bytes();
  const auto v6_destination = asio::ip::make_address_v6("2001:db8::1").to_bytes();
  const std::string v6_block = std::string(v6_source.begin(), v6_source.end()) +
                               std::string(v6_destination.begin(), v6_destination.end()) + big_endian_port(7) +
                               big_endian_port(8);
  const auto v6 = parse_proxy_header(v2_header(0x21, 0x21, v6_block), max_size);
  REQUIRE(v6.status == proxy_header_status::complete);
  CHECK(v6.source.address() == address("2001:db8::7"));
  CHECK(v6.source.port() == 7);
  CHECK(v6.destination.port() == 8);

  const auto local = parse_proxy_header(v2_header(0x20, 0x00, ""), max_size);
  REQUIRE(local.status == proxy_header_status::complete);
  CHECK(local.local);
  CHECK(local.length == 16);
  // LOCAL ignores whatever address block comes with it; so does PROXY with the unspecified family.
  CHECK(parse_proxy_header(v2_header(0x20, 0x11, v4_block), max_size).local);
  CHECK(parse_proxy_header(v2_header(0x21, 0x00, ""), max_size).local);
}

TEST_CASE("proxy header v2: refused with a reason for each defect") {
  const auto refused = [](const std::string& bytes, std::size_t limit = max_size) {
    const auto h = parse_proxy_header(bytes, limit);
    CHECK(h.status == proxy_header_status::invalid);
    return std::string{h.problem};
  };
  CHECK(refused(v2_header(0x11, 0x11, std::string(12, '\0'))).find("version") != std::string::npos);
  CHECK(refused(v2_header(0x22, 0x11, std::string(12, '\0'))).find("command") != std::string::npos);
  CHECK(refused(v2_header(0x21, 0x11, std::string(11, '\0'))).find("IPv4") != std::string::npos);
  CHECK(refused(v2_header(0x21, 0x21, std::string(35, '\0'))).find("IPv6") != std::string::npos);
  CHECK(refused(v2_header(0x21, 0x12, std::string(12, '\0'))).find("transport") != std::string::npos);  // UDP
  CHECK(refused(v2_header(0x21, 0x31, std::string(216, '\0'))).find("transport") != std::string::npos);  // unix
  // Refused as soon as the preamble states a length over the limit, before the rest arrives.
  CHECK(refused(v2_header(0x21, 0x11, std::string(300, '\0')).substr(0, 16), 232).find("max_header_size") !=
        std::string::npos);
  CHECK(refused("\r\n\r\n\0\r\nQUIX\n"s).find("no PROXY protocol header") != std::string::npos);
}

TEST_CASE("the first bytes of an untrusted source: a signature, none, or too few bytes to tell") {
  using tether::detail::proxy_signature;
  using tether::detail::proxy_signature_in;
  CHECK(proxy_signature_in("PROXY TCP4 ") == proxy_signature::present);
  CHECK(proxy_signature_in(tether::detail::proxy_v2_signature) == proxy_signature::present);
  CHECK(proxy_signature_in("") == proxy_signature::undecided);
  CHECK(proxy_signature_in("PRO") == proxy_signature::undecided);
  CHECK(proxy_signature_in("\r\n") == proxy_signature::undecided);
  CHECK(proxy_signature_in("\r\n\r\n\0"s) == proxy_signature::undecided);
  CHECK(proxy_signature_in("\r\nhello") == proxy_signature::absent);
  CHECK(proxy_signature_in("PROXIMITY") == proxy_signature::absent);
  CHECK(proxy_signature_in("hello\n") == proxy_signature::absent);
  CHECK(proxy_signature_in("\x16\x03\x01") == proxy_signature::absent);  // a TLS ClientHello
}

TEST_CASE("ip_network parses CIDR notation and matches addresses of its family, IPv4-mapped ones included") {
  std::error_code ec;
  const auto ten = tether::ip_network::parse("10.1.2.3/8", ec);
  REQUIRE_FALSE(ec);
  CHECK(ten.to_string() == "10.0.0.0/8");
  CHECK(ten.contains(address("10.255.0.1")));
  CHECK_FALSE(ten.contains(address("11.0.0.1")));
  CHECK(ten.contains(address("::ffff:10.9.9.9")));
  CHECK_FALSE(ten.contains(address("::1")));

  const auto host = tether::ip_network::parse("127.0.0.1", ec);
  REQUIRE_FALSE(ec);
  CHECK(host.prefix_length() == 32);
  CHECK(host.contains(address("127.0.0.1")));
  CHECK_FALSE(host.contains(address("127.0.0.2")));

  const auto v6 = tether::ip_network::parse("fd00::/8", ec);
  REQUIRE_FALSE(ec);
  CHECK(v6.contains(address("fd12:3456::1")));
  CHECK_FALSE(v6.contains(address("fe80::1")));

  const auto odd = tether::ip_network::parse("192.168.1.77/27", ec);
  REQUIRE_FALSE(ec);
  CHECK(odd.to_string() == "192.168.1.64/27");
  CHECK(odd.contains(address("192.168.1.95")));
  CHECK_FALSE(odd.contains(address("192.168.1.96")));

  CHECK(tether::ip_network::parse("0.0.0.0/0", ec).contains(address("203.0.113.9")));
  CHECK_FALSE(tether::ip_network{}.contains(address("0.0.0.0")));

  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "fd00::/129", "10.0.0.0/8x", "", "host/8"}) {
    INFO(bad);
    (void)tether::ip_network::parse(bad, ec);
    CHECK(ec == tether::error::network_not_cidr);
  }
}

TEST_CASE("proxy_protocol_options validate their timeout and size") {
  CHECK_FALSE(tether::proxy_protocol_options{}.validate());
  CHECK(tether::proxy_protocol_options{.header_timeout = std::chrono::milliseconds{0}}.validate() ==
        tether::error::proxy_header_timeout_not_positive);
  CHECK(tether::proxy_protocol_options{.max_header_size = 231}.validate() == tether::error::proxy_max_header_size_too_small);
  CHECK_FALSE(tether::proxy_protocol_options{}.enabled());
}
