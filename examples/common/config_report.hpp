// The start-up report of tether::check: one config_check event per finding, before the examples connect or
// listen, so a configuration that cannot keep the declared path open says so before it loses a connection. The
// examples run anyway: the flags are the user's to correct.
#pragma once

#include "events.hpp"

#include <tether/check.hpp>

#include <chrono>
#include <string>

namespace examples {

template <class Liveness>
void print_config_check(const event_printer& events, const Liveness& policy, std::chrono::milliseconds middlebox_timeout) {
  const tether::path_hints path{.middlebox = {.name = "the path", .idle_timeout = middlebox_timeout}};
  for (const tether::diagnostic& found : tether::check(policy, path))
    events.print("config_check", {{"severity", std::string{tether::severity_name(found.level)}},
                                  {"finding", std::string{tether::finding_name(found.what)}},
                                  {"message", found.message}});
}

} // namespace examples
