// libFuzzer target for the examples' command-line parsing: any bytes as a duration, endpoint, strategy
// tuple, or as an argument vector (split at NUL bytes) must parse or be refused with usage_error, never
// crash, and whatever parses as a duration must print back to an equal duration.
#include "common/cli.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input{reinterpret_cast<const char*>(data), size};

  if (const auto duration = examples::parse_duration(input)) {
    if (examples::parse_duration(std::to_string(duration->count()) + "ms") != duration)
      std::abort();
  }
  (void)examples::parse_endpoint(input);
  (void)examples::parse_keepalive(input);
  (void)examples::parse_heartbeat(input);

  std::vector<std::string> words{"prog"};
  for (const auto word : examples::split(input, '\0'))
    words.emplace_back(word);
  std::vector<char*> argv;
  for (auto& word : words)
    argv.push_back(word.data());
  examples::flag_parser flags;
  flags.value("--pause", "DUR (500ms, 3s, 2min)", [](std::string_view v) { return examples::parse_duration(v).has_value(); });
  flags.value("--keepalive", "IDLE,INTERVAL,COUNT", [](std::string_view v) { return examples::parse_keepalive(v).has_value(); });
  flags.toggle("--json", [] {});
  try {
    flags.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const examples::usage_error&) {
  }
  return 0;
}
