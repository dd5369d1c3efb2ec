// Command-line flags of the benchmarks: an optional mode word, then "--name value" pairs and bare switches.
// A flag nobody asked for, or a value that does not parse, is an error naming the flag, so a typo never runs a
// benchmark quietly with its defaults.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class Integer>
std::optional<Integer> parse_integer(std::string_view text) {
  Integer value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

// "250ms", "10s", "2min", "1h".
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  struct unit {
    std::string_view suffix;
    std::int64_t milliseconds;
  };
  constexpr unit units[] = {{"ms", 1}, {"s", 1000}, {"min", 60'000}, {"h", 3'600'000}};
  const auto digits_end = text.find_first_not_of("0123456789");
  if (digits_end == 0 || digits_end == std::string_view::npos)
    return std::nullopt;
  const auto count = parse_integer<std::int64_t>(text.substr(0, digits_end));
  for (const auto& [suffix, factor] : units) {
    if (count && text.substr(digits_end) == suffix)
      return std::chrono::milliseconds{*count * factor};
  }
  return std::nullopt;
}

inline std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  while (true) {
    const auto end = text.find(separator);
    parts.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos)
      return parts;
    text.remove_prefix(end + 1);
  }
}

class flags {
public:
  // Everything from argv[first] on; a word not starting with "--" right after a flag is that flag's value.
  flags(int argc, char** argv, int first = 1) {
    for (int i = first; i < argc; ++i) {
      const std::string_view word = argv[i];
      if (!word.starts_with("--"))
        throw usage_error{"unexpected argument '" + std::string{word} + "'"};
      std::optional<std::string> value;
      if (i + 1 < argc && !std::string_view{argv[i + 1]}.starts_with("--"))
        value = argv[++i];
      given_[std::string{word}] = value;
    }
  }

  bool has(std::string_view name) {
    const auto found = given_.find(std::string{name});
    if (found == given_.end())
      return false;
    if (found->second)
      throw usage_error{std::string{name} + " takes no value"};
    given_.erase(found);
    return true;
  }

  std::string text(std::string_view name, std::string fallback) {
    auto value = take(name);
    return value ? *value : fallback;
  }

  template <class Integer>
  Integer integer(std::string_view name, Integer fallback) {
    const auto value = take(name);
    if (!value)
      return fallback;
    const auto parsed = parse_integer<Integer>(*value);
    if (!parsed)
      throw usage_error{std::string{name} + " takes an integer, not '" + *value + "'"};
    return *parsed;
  }

  std::chrono::milliseconds duration(std::string_view name, std::chrono::milliseconds fallback) {
    const auto value = take(name);
    if (!value)
      return fallback;
    const auto parsed = parse_duration(*value);
    if (!parsed)
      throw usage_error{std::string{name} + " takes a duration such as 500ms, 10s or 2min, not '" + *value + "'"};
    return *parsed;
  }

  // "1000,5000,10000".
  std::vector<std::size_t> counts(std::string_view name, std::vector<std::size_t> fallback) {
    const auto value = take(name);
    if (!value)
      return fallback;
    std::vector<std::size_t> parsed;
    for (const auto& item : split(*value, ',')) {
      const auto count = parse_integer<std::size_t>(item);
      if (!count || *count == 0)
        throw usage_error{std::string{name} + " takes positive integers separated by commas, not '" + *value + "'"};
      parsed.push_back(*count);
    }
    return parsed;
  }

  // Call once every flag has been read: whatever is left was not understood.
  void finish() const {
    if (!given_.empty())
      throw usage_error{"unknown flag " + given_.begin()->first};
  }

private:
  std::optional<std::string> take(std::string_view name) {
    const auto found = given_.find(std::string{name});
    if (found == given_.end())
      return std::nullopt;
    if (!found->second)
      throw usage_error{std::string{name} + " needs a value"};
    auto value = std::move(found->second);
    given_.erase(found);
    return value;
  }

  std::map<std::string, std::optional<std::string>, std::less<>> given_;
};

} // namespace bench
