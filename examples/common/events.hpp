// The examples' event lines: with --json one JSON object per line with an "event" field, otherwise the same
// fields as a readable fmt line with the time since start. Printers may be used from several threads: all of
// them share stdout, so one lock keeps every line whole.
#pragma once

#include "json.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace examples {

struct field {
  std::string_view name;
  std::variant<std::int64_t, std::string> value;
};

class event_printer {
public:
  explicit event_printer(bool json) : json_(json) {}

  void print(std::string_view event, std::initializer_list<field> fields) const {
    print(event, std::span<const field>{fields.begin(), fields.size()});
  }

  // For events whose fields are known only at run time.
  void print(std::string_view event, std::span<const field> fields) const {
    const std::lock_guard lock{stdout_mutex()};
    std::string line;
    if (json_) {
      line = "{\"event\":" + json_string(event);
      for (const auto& [name, value] : fields)
        line += "," + json_string(name) + ":" + render(value, true);
      line += "}";
    } else {
      const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      line = fmt::format("[{:8.3f}s] {:<10}", elapsed, event);
      for (const auto& [name, value] : fields)
        line += fmt::format(" {}={}", name, render(value, false));
    }
    fmt::print("{}\n", line);
    std::fflush(stdout);
  }

private:
  static std::mutex& stdout_mutex() {
    static std::mutex mutex;
    return mutex;
  }

  static std::string render(const std::variant<std::int64_t, std::string>& value, bool json) {
    if (const auto* number = std::get_if<std::int64_t>(&value))
      return std::to_string(*number);
    return json ? json_string(std::get<std::string>(value)) : std::get<std::string>(value);
  }

  bool json_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

} // namespace examples
