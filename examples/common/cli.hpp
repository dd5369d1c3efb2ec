// Command-line parsing shared by the examples: durations with units, endpoints, strategy tuples and a
// small flag table whose errors name the flag and the form it accepts (exit status 2).
#pragma once

#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/max_age.hpp>
#include <tether/liveness/tcp_keepalive.hpp>

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace examples {

// Thrown for any command-line mistake; main() prints it as one line and exits with status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class Integer>
std::optional<Integer> parse_integer(std::string_view text) {
  Integer value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty())
    return std::nullopt;
  return value;
}

// "500ms", "3s", "2min", "1h": a non-negative integer and one of those units, nothing else.
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  struct unit {
    std::string_view suffix;
    std::int64_t milliseconds;
  };
  // "min" before "ms" and "s" is irrelevant: suffixes are matched exactly on what follows the digits.
  constexpr unit units[] = {{"ms", 1}, {"s", 1000}, {"min", 60'000}, {"h", 3'600'000}};
  const auto digits_end = text.find_first_not_of("0123456789");
  if (digits_end == 0 || digits_end == std::string_view::npos)
    return std::nullopt;
  const auto count = parse_integer<std::int64_t>(text.substr(0, digits_end));
  if (!count)
    return std::nullopt;
  for (const auto& [suffix, factor] : units) {
    if (text.substr(digits_end) != suffix)
      continue;
    if (*count > std::numeric_limits<std::int64_t>::max() / factor)
      return std::nullopt;
    return std::chrono::milliseconds{*count * factor};
  }
  return std::nullopt;
}

inline std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const auto end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos)
      return parts;
    start = end + 1;
  }
}

// "127.0.0.1:7000" or "[::1]:7000".
inline std::optional<asio::ip::tcp::endpoint> parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const auto port = parse_integer<std::uint16_t>(text.substr(colon + 1));
  std::error_code ec;
  const auto address = asio::ip::make_address(std::string{host}, ec);
  if (ec || !port)
    return std::nullopt;
  return asio::ip::tcp::endpoint{address, *port};
}

inline std::optional<asio::ip::address> parse_address(std::string_view text) {
  std::error_code ec;
  const auto address = asio::ip::make_address(std::string{text}, ec);
  if (ec)
    return std::nullopt;
  return address;
}

// "IDLE,INTERVAL,COUNT", e.g. "60s,10s,3".
inline std::optional<tether::tcp_keepalive> parse_keepalive(std::string_view text) {
  const auto parts = split(text, ',');
  if (parts.size() != 3)
    return std::nullopt;
  const auto idle = parse_duration(parts[0]);
  const auto interval = parse_duration(parts[1]);
  const auto count = parse_integer<int>(parts[2]);
  if (!idle || !interval || !count || idle->count() == 0 || interval->count() == 0 || *count <= 0)
    return std::nullopt;
  return tether::tcp_keepalive{.idle = *idle, .interval = *interval, .count = *count};
}

// "INTERVAL,TIMEOUT", e.g. "15s,5s".
inline std::optional<tether::heartbeat> parse_heartbeat(std::string_view text) {
  const auto parts = split(text, ',');
  if (parts.size() != 2)
    return std::nullopt;
  const auto interval = parse_duration(parts[0]);
  const auto timeout = parse_duration(parts[1]);
  if (!interval || !timeout || interval->count() == 0 || timeout->count() == 0)
    return std::nullopt;
  // Peers pinging at a quarter of our own interval are still welcome; faster earns strikes.
  return tether::heartbeat{.interval = *interval, .timeout = *timeout, .min_peer_ping_interval = *interval / 4};
}

// "DUR" or "DUR,GRACE": the age above 0, the grace (default max_age's) at least 0.
inline std::optional<tether::max_age> parse_max_age(std::string_view text) {
  const auto parts = split(text, ',');
  if (parts.empty() || parts.size() > 2)
    return std::nullopt;
  tether::max_age limit{};
  const auto age = parse_duration(parts[0]);
  if (!age || age->count() == 0)
    return std::nullopt;
  limit.age = *age;
  if (parts.size() == 2) {
    const auto grace = parse_duration(parts[1]);
    if (!grace)
      return std::nullopt;
    limit.grace = *grace;
  }
  return limit;
}

// A table of flags: each either takes a value or is a switch. Unknown flags, missing values and values the
// flag's parser rejects end in usage_error naming the flag and its accepted form.
class flag_parser {
public:
  void value(std::string name, std::string form, std::function<bool(std::string_view)> accept) {
    flags_.push_back({std::move(name), std::move(form), std::move(accept), false});
  }
  void toggle(std::string name, std::function<void()> on) {
    flags_.push_back({std::move(name), "", [on = std::move(on)](std::string_view) { on(); return true; }, true});
  }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string_view given = argv[i];
      const flag* match = find(given);
      if (!match)
        throw usage_error{"unknown flag " + std::string{given} + " (see the usage line)"};
      if (match->is_toggle) {
        match->accept({});
        continue;
      }
      if (i + 1 >= argc)
        throw usage_error{match->name + " needs a value: " + match->name + " " + match->form};
      if (!match->accept(argv[++i]))
        throw usage_error{"bad value '" + std::string{argv[i]} + "' for " + match->name + ": expected " + match->name +
                          " " + match->form};
    }
  }

private:
  struct flag {
    std::string name;
    std::string form;
    std::function<bool(std::string_view)> accept;
    bool is_toggle;
  };
  const flag* find(std::string_view name) const {
    for (const auto& f : flags_)
      if (f.name == name)
        return &f;
    return nullptr;
  }
  std::vector<flag> flags_;
};

} // namespace examples
