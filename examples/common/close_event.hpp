// The fields every example prints when a connection closes: why, in the connection's own words, how long the
// peer had been silent (only where the policy keeps activity stamps and a byte ever arrived), what the close
// threw away, and the socket error where the reason does not name the failure by itself.
#pragma once

#include "events.hpp"

#include <tether/close_reason.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace examples {

template <class Connection>
std::vector<field> close_fields(const Connection& conn, tether::close_reason why) {
  std::vector<field> fields{{"reason", std::string{tether::close_reason_name(why)}},
                            {"detail", std::string{conn.close_detail()}}};
  if constexpr (Connection::liveness_type::timed) {
    if (conn.counters().bytes_received > 0) {
      const auto silent = std::chrono::steady_clock::now() - conn.last_activity().received;
      fields.push_back({"after_ms", std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()});
    }
  }
  // WebSocket, over TLS or not: the status code of the close frame the peer sent (1005 when it carried none).
  const auto& codec_state = conn.codec_state();
  if constexpr (requires { codec_state.inner().peer_close_code(); }) {
    if (const auto code = codec_state.inner().peer_close_code())
      fields.push_back({"close_code", static_cast<std::int64_t>(code)});
  } else if constexpr (requires { codec_state.peer_close_code(); }) {
    if (const auto code = codec_state.peer_close_code())
      fields.push_back({"close_code", static_cast<std::int64_t>(code)});
  }
  if (conn.discarded_bytes() > 0)
    fields.push_back({"discarded_bytes", static_cast<std::int64_t>(conn.discarded_bytes())});
  // Other reasons name the failure already; after a clean close the error can still hold the peer's reset.
  if (why == tether::close_reason::io_error)
    fields.push_back({"error", conn.close_error().message()});
  return fields;
}

} // namespace examples
