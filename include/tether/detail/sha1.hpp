// SHA-1 (FIPS 180-4), for the one thing WebSocket needs it for: Sec-WebSocket-Accept. SHA-1 is broken for
// collision resistance, which this use does not rely on (RFC 6455 section 10.3); it is not for anything else.
// Header-only, so the WebSocket codec needs no crypto library.
#pragma once

#include <tether/detail/config.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tether::detail {

class sha1 {
public:
  using digest = std::array<std::uint8_t, 20>;

  static digest of(std::string_view message) noexcept {
    sha1 hash;
    hash.update(message);
    return hash.finish();
  }

  void update(std::string_view bytes) noexcept {
    for (const char c : bytes) {
      block_[block_used_++] = static_cast<std::uint8_t>(c);
      if (block_used_ == block_.size()) {
        compress();
        block_used_ = 0;
      }
    }
    length_bits_ += static_cast<std::uint64_t>(bytes.size()) * 8;
  }

  digest finish() noexcept {
    const std::uint64_t length = length_bits_;
    const char one = static_cast<char>(0x80);
    update({&one, 1});
    const char zero = 0;
    while (block_used_ != 56)
      update({&zero, 1});
    for (int shift = 56; shift >= 0; shift -= 8) {
      const char byte = static_cast<char>(static_cast<std::uint8_t>(length >> shift));
      update({&byte, 1});
    }
    digest out{};
    for (std::size_t i = 0; i < 5; ++i)
      for (std::size_t j = 0; j < 4; ++j)
        out[i * 4 + j] = static_cast<std::uint8_t>(state_[i] >> (24 - 8 * j));
    return out;
  }

private:
  static constexpr std::uint32_t rotate(std::uint32_t value, int bits) noexcept {
    return (value << bits) | (value >> (32 - bits));
  }

  void compress() noexcept {
    std::array<std::uint32_t, 80> w{};
    for (std::size_t i = 0; i < 16; ++i)
      w[i] = std::uint32_t{block_[i * 4]} << 24 | std::uint32_t{block_[i * 4 + 1]} << 16 |
             std::uint32_t{block_[i * 4 + 2]} << 8 | std::uint32_t{block_[i * 4 + 3]};
    for (std::size_t i = 16; i < 80; ++i)
      w[i] = rotate(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3], e = state_[4];
    for (std::size_t i = 0; i < 80; ++i) {
      std::uint32_t f = 0;
      std::uint32_t k = 0;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      const std::uint32_t next = rotate(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotate(b, 30);
      b = a;
      a = next;
    }
    state_[0] += a;
    state_[1] += b;
    state_[2] += c;
    state_[3] += d;
    state_[4] += e;
  }

  std::array<std::uint32_t, 5> state_{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::array<std::uint8_t, 64> block_{};
  std::size_t block_used_ = 0;
  std::uint64_t length_bits_ = 0;
};

} // namespace tether::detail
