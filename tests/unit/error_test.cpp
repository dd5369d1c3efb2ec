#include "catch.hpp"

#include <tether/error.hpp>
#include <tether/format.hpp>

#include <string>

using namespace std::chrono_literals;

TEST_CASE("tether errors carry their category, a range message and a portable condition") {
  const std::error_code idle = tether::error::keepalive_idle_out_of_range;
  CHECK(std::string{idle.category().name()} == "tether");
  CHECK(idle == std::errc::invalid_argument);
  CHECK(idle != std::errc::not_supported);
  CHECK(idle.message() == "keepalive idle must be within 1s..32767s on Linux");

  const std::error_code unsupported = tether::error::tcp_info_not_supported;
  CHECK(unsupported == std::errc::not_supported);
  CHECK(unsupported.message().find("not supported") != std::string::npos);
}

TEST_CASE("every error code has its own message") {
  for (int value = static_cast<int>(tether::error::keepalive_idle_out_of_range);
       value <= static_cast<int>(tether::error::adaptive_heartbeat_needs_heartbeat); ++value) {
    const auto message = tether::error_category().message(value);
    INFO(value);
    CHECK(message != tether::error_category().message(value == 1 ? 2 : 1));
    CHECK(message != "unknown tether error");
  }
  CHECK(tether::error_category().message(0) == "unknown tether error");
}

TEST_CASE("option values print in one readable form") {
  namespace sockopt = tether::sockopt;
  CHECK(fmt::format("{}", sockopt::keepalive{.idle = 2h, .interval = 75s, .count = 9}) ==
        "keepalive{idle=7200s interval=75s count=9}");
  CHECK(fmt::format("{}", sockopt::keepalive{.idle = 1500ms, .interval = 500ms, .count = 1}) ==
        "keepalive{idle=1500ms interval=500ms count=1}");
  CHECK(fmt::format("{}", sockopt::user_timeout{}) == "user_timeout{system default}");
  CHECK(fmt::format("{}", sockopt::linger::graceful()) == "linger{graceful}");
  CHECK(fmt::format("{}", sockopt::linger::abortive()) == "linger{abortive}");
  CHECK(fmt::format("{}", sockopt::no_delay{false}) == "no_delay{off}");
  CHECK(fmt::format("{}", sockopt::receive_buffer_size{4096}) == "receive_buffer_size{4096 bytes}");
  CHECK(fmt::format("{}", sockopt::tcp_state::time_wait) == "time_wait");
  CHECK(fmt::format("{}", sockopt::tcp_info{.rtt = 35us}).find("rtt=35us") != std::string::npos);
}

TEST_CASE("close reasons and stats print readably") {
  CHECK(fmt::format("{}", tether::close_reason::heartbeat_timeout) == "heartbeat_timeout");
  const std::error_code as_error = tether::close_reason::ping_flood;
  CHECK(as_error.message() == "ping_flood");
  CHECK(std::string{as_error.category().name()} == "tether.close_reason");
  for (std::size_t i = 0; i < tether::close_reason_count; ++i) {
    const auto reason = static_cast<tether::close_reason>(i);
    CHECK(tether::close_reason_name(reason) != "unknown");
    // Every reason is an error as a std::error_code, peer_closed (the enumerator 0) included.
    const std::error_code code = reason;
    CHECK(static_cast<bool>(code));
    CHECK(code == reason);
    CHECK(code.message() == tether::close_reason_name(reason));
  }

  tether::stats refusals;
  refusals.record_refused(tether::connection_limit::max_per_address);
  CHECK(fmt::format("{}", refusals) == "stats{live=0 opened=0 limit_exceeded=1 over_max_per_address=1}");
  refusals.record_refused(tether::connection_limit::descriptors);
  CHECK(fmt::format("{}", refusals) ==
        "stats{live=0 opened=0 limit_exceeded=2 over_max_per_address=1 over_descriptors=1}");

  tether::stats counters;
  counters.record_open();
  counters.record_open();
  counters.record_close(tether::close_reason::idle_timeout);
  counters.record_heartbeat_rtt(250us);
  counters.record_heartbeat_rtt(80us);
  CHECK(fmt::format("{}", counters) == "stats{live=1 opened=2 idle_timeout=1 heartbeats=2 min_rtt=80us}");

  tether::stats budgeted;
  budgeted.record_open();
  budgeted.record_buffered(4096);
  budgeted.record_close(tether::close_reason::over_budget);
  budgeted.record_buffered(-1024);
  CHECK(fmt::format("{}", budgeted) == "stats{live=0 opened=1 over_budget=1 buffered_bytes=3072}");
}
