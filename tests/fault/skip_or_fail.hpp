// Whether a namespaced test can run here. Without root, namespaces or a tool it says SKIPPED (ctest's skip
// pattern), except under CI=true: CI runs as root with every dependency installed, so there it is a failure.
#pragma once

#include "catch.hpp"
#include "network.hpp"

#include <fmt/core.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace tether::fault {

// `missing` is why the tests cannot run, empty when they can; `what` names them in the message.
inline bool can_run_or_skip(std::string_view what, const std::string& missing) {
  if (missing.empty())
    return true;
  const char* ci = std::getenv("CI");
  if (ci && std::string_view{ci} == "true")
    FAIL(what << " cannot run under CI=true: " << missing);
  fmt::print("SKIPPED: {} cannot run here: {}\n", what, missing);
  return false;
}

} // namespace tether::fault
