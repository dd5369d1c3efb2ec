#include "catch.hpp"

#include "common/cli.hpp"
#include "common/json.hpp"

using namespace std::chrono_literals;
using examples::parse_duration;

TEST_CASE("durations take ms, s, min and h and nothing else") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("3s") == 3s);
  CHECK(parse_duration("2min") == 2min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("0ms") == 0ms);
  for (const char* bad : {"", "s", "10", "10 s", "-5s", "1.5s", "5sec", "5m", "5S", "ms5", "99999999999999999999s",
                          "9223372036854775807h"})
    CHECK_FALSE(parse_duration(bad).has_value());
}

TEST_CASE("strategy tuples and endpoints parse strictly") {
  const auto keepalive = examples::parse_keepalive("60s,10s,3");
  REQUIRE(keepalive);
  CHECK(keepalive->idle == 60s);
  CHECK(keepalive->interval == 10s);
  CHECK(keepalive->count == 3);
  for (const char* bad : {"60s,10s", "60s,10s,0", "0s,10s,3", "60s,10s,3,4", "60,10,3"})
    CHECK_FALSE(examples::parse_keepalive(bad).has_value());

  const auto heartbeat = examples::parse_heartbeat("15s,5s");
  REQUIRE(heartbeat);
  CHECK(heartbeat->interval == 15s);
  CHECK(heartbeat->timeout == 5s);
  CHECK_FALSE(examples::parse_heartbeat("15s").has_value());
  CHECK_FALSE(examples::parse_heartbeat("0s,5s").has_value());

  CHECK(examples::parse_endpoint("127.0.0.1:7000") == asio::ip::tcp::endpoint{asio::ip::make_address("127.0.0.1"), 7000});
  CHECK(examples::parse_endpoint("[::1]:7000") == asio::ip::tcp::endpoint{asio::ip::make_address("::1"), 7000});
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "host:7000", ":7000", "[::1]"})
    CHECK_FALSE(examples::parse_endpoint(bad).has_value());
}

TEST_CASE("the flag table names the flag and its form in every error") {
  examples::flag_parser flags;
  int threads = 1;
  bool json = false;
  flags.value("--threads", "N (1..64)", [&](std::string_view v) {
    const auto n = examples::parse_integer<int>(v);
    return n && *n >= 1 && *n <= 64 && (threads = *n, true);
  });
  flags.toggle("--json", [&] { json = true; });

  auto parse = [&](std::vector<const char*> args) {
    args.insert(args.begin(), "prog");
    flags.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
  };
  parse({"--threads", "4", "--json"});
  CHECK(threads == 4);
  CHECK(json);

  auto message_of = [&](std::vector<const char*> args) -> std::string {
    try {
      parse(std::move(args));
    } catch (const examples::usage_error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message_of({"--threads", "0"}) == "bad value '0' for --threads: expected --threads N (1..64)");
  CHECK(message_of({"--threads"}) == "--threads needs a value: --threads N (1..64)");
  CHECK(message_of({"--thread", "2"}).find("unknown flag --thread") == 0);
}

TEST_CASE("JSON strings are escaped") {
  CHECK(examples::json_string("a\"b\\c\nd\x01") == "\"a\\\"b\\\\c\\nd\\u0001\"");
}
