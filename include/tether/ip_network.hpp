// tether::ip_network: an IPv4 or IPv6 network in CIDR notation ("10.0.0.0/8", "fd00::/8", "127.0.0.1"), for
// naming the sources a listener trusts.
//
//   std::error_code ec;
//   const auto balancers = tether::ip_network::parse("10.0.0.0/8", ec);
//   balancers.contains(asio::ip::make_address("10.1.2.3"));  // true
//
// An IPv4 client seen by a dual-stack listener arrives as an IPv4-mapped IPv6 address (::ffff:10.1.2.3); it is
// compared as the IPv4 address it is.
#pragma once

#include <tether/error.hpp>

#include <asio/ip/address.hpp>
#include <asio/ip/address_v4.hpp>
#include <asio/ip/address_v6.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace tether {

class ip_network {
public:
  ip_network() = default;  // contains nothing
  // Bits of `address` beyond the prefix are cleared: 10.1.2.3/8 is 10.0.0.0/8.
  ip_network(const asio::ip::address& address, unsigned prefix_length) noexcept
      : address_(unmapped(address)), prefix_length_(clamped(address_, prefix_length)), valid_(true) {
    address_ = masked(address_, prefix_length_);
  }

  // "ADDRESS/PREFIX" or a bare address (one host). Sets ec to error::network_not_cidr and returns an empty
  // network (which contains nothing) when the text is neither.
  static ip_network parse(std::string_view text, std::error_code& ec) {
    ec.clear();
    const auto slash = text.find('/');
    std::error_code bad_address;
    const auto address = asio::ip::make_address(std::string{text.substr(0, slash)}, bad_address);
    if (bad_address) {
      ec = error::network_not_cidr;
      return {};
    }
    const unsigned widest = address.is_v4() ? 32 : 128;
    unsigned prefix = widest;
    if (slash != std::string_view::npos) {
      const auto digits = text.substr(slash + 1);
      const auto [end, problem] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      if (digits.empty() || problem != std::errc{} || end != digits.data() + digits.size() || prefix > widest) {
        ec = error::network_not_cidr;
        return {};
      }
    }
    return {address, prefix};
  }

  bool contains(const asio::ip::address& candidate) const noexcept {
    if (!valid_)
      return false;
    const auto address = unmapped(candidate);
    if (address.is_v4() != address_.is_v4())
      return false;
    return masked(address, prefix_length_) == address_;
  }

  const asio::ip::address& address() const noexcept { return address_; }
  unsigned prefix_length() const noexcept { return prefix_length_; }
  std::string to_string() const { return address_.to_string() + '/' + std::to_string(prefix_length_); }

private:
  static asio::ip::address unmapped(const asio::ip::address& address) {
    if (address.is_v6() && address.to_v6().is_v4_mapped())
      return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    return address;
  }

  static unsigned clamped(const asio::ip::address& address, unsigned prefix) noexcept {
    const unsigned widest = address.is_v4() ? 32 : 128;
    return prefix > widest ? widest : prefix;
  }

  template <std::size_t N>
  static void clear_beyond(std::array<unsigned char, N>& bytes, unsigned prefix) noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      const unsigned first_bit = static_cast<unsigned>(i) * 8;
      if (prefix >= first_bit + 8)
        continue;
      bytes[i] = prefix <= first_bit ? 0 : static_cast<unsigned char>(bytes[i] & (0xFF << (8 - (prefix - first_bit))));
    }
  }

  static asio::ip::address masked(const asio::ip::address& address, unsigned prefix) {
    if (address.is_v4()) {
      auto bytes = address.to_v4().to_bytes();
      clear_beyond(bytes, prefix);
      return asio::ip::address_v4{bytes};
    }
    auto bytes = address.to_v6().to_bytes();
    clear_beyond(bytes, prefix);
    return asio::ip::address_v6{bytes};
  }

  asio::ip::address address_{};
  unsigned prefix_length_ = 0;
  bool valid_ = false;  // a default-constructed network contains nothing; 0.0.0.0/0 contains every IPv4 address
};

} // namespace tether
