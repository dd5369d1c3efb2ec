// Random bytes for WebSocket masking keys and handshake keys: one generator per thread, seeded from
// std::random_device, so masks are not predictable from one connection to the next (RFC 6455 section 10.3).
#pragma once

#include <tether/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <span>

namespace tether::detail {

inline std::mt19937_64& random_engine() {
  thread_local std::mt19937_64 engine{[] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64{seed};
  }()};
  return engine;
}

inline void fill_random(std::span<std::uint8_t> out) {
  auto& engine = random_engine();
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const std::uint64_t word = engine();
    for (std::size_t j = 0; j < 8 && i + j < out.size(); ++j)
      out[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
  }
}

} // namespace tether::detail
