// Durations as people write them: the largest of s, ms, us that divides the value exactly (60s, 1500ms).
#pragma once

#include <chrono>
#include <string>

namespace tether::detail {

inline std::string duration_text(std::chrono::microseconds value) {
  using namespace std::chrono;
  const long long us = value.count();
  struct unit { long long size; const char* suffix; };
  for (auto [size, suffix] : {unit{1'000'000LL, "s"},
                              unit{1'000LL, "ms"}}) {
    if (us != 0 && us % size == 0)
      return std::to_string(us / size) + suffix;
  }
  return us == 0 ? std::string{"0s"} : std::to_string(us) + "us";
}

} // namespace tether::detail
