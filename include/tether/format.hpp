// fmt formatters for tether's public value types, so options, errors and reasons print as people read
// them, e.g. keepalive{idle=60s interval=10s count=3}.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/detail/duration_text.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>

#include <fmt/format.h>

#include <string_view>

namespace tether::detail {

// Formatters take no format spec: each value has exactly one readable form.
struct plain_formatter {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
};

constexpr std::string_view on_off(bool enabled) noexcept { return enabled ? "on" : "off"; }

constexpr std::string_view tcp_state_name(sockopt::tcp_state state) noexcept {
  using s = sockopt::tcp_state;
  switch (state) {
  case s::established: return "established";
  case s::syn_sent: return "syn_sent";
  case s::syn_recv: return "syn_recv";
  case s::fin_wait1: return "fin_wait1";
  case s::fin_wait2: return "fin_wait2";
  case s::time_wait: return "time_wait";
  case s::close: return "close";
  case s::close_wait: return "close_wait";
  case s::last_ack: return "last_ack";
  case s::listen: return "listen";
  case s::closing: return "closing";
  case s::unknown: break;
  }
  return "unknown";
}

} // namespace tether::detail

template <>
struct fmt::formatter<tether::sockopt::keepalive> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::keepalive& v, format_context& ctx) const {
    if (!v.enabled)
      return fmt::format_to(ctx.out(), "keepalive{{off}}");
    return fmt::format_to(ctx.out(), "keepalive{{idle={} interval={} count={}}}", tether::detail::duration_text(v.idle),
                          tether::detail::duration_text(v.interval), v.count);
  }
};

template <>
struct fmt::formatter<tether::sockopt::user_timeout> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::user_timeout& v, format_context& ctx) const {
    if (v.timeout.count() == 0)
      return fmt::format_to(ctx.out(), "user_timeout{{system default}}");
    return fmt::format_to(ctx.out(), "user_timeout{{{}}}", tether::detail::duration_text(v.timeout));
  }
};

template <>
struct fmt::formatter<tether::sockopt::linger> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::linger& v, format_context& ctx) const {
    using mode = tether::sockopt::linger::mode;
    switch (v.how) {
    case mode::abortive: return fmt::format_to(ctx.out(), "linger{{abortive}}");
    case mode::timed: return fmt::format_to(ctx.out(), "linger{{timed {}}}", tether::detail::duration_text(v.timeout));
    case mode::graceful: break;
    }
    return fmt::format_to(ctx.out(), "linger{{graceful}}");
  }
};

#define TETHER_DETAIL_SWITCH_FORMATTER(type)                                                                 \
  template <>                                                                                                \
  struct fmt::formatter<tether::sockopt::type> : tether::detail::plain_formatter {                          \
    auto format(const tether::sockopt::type& v, format_context& ctx) const {                                 \
      return fmt::format_to(ctx.out(), #type "{{{}}}", tether::detail::on_off(v.enabled));                   \
    }                                                                                                        \
  };
TETHER_DETAIL_SWITCH_FORMATTER(reuse_address)
TETHER_DETAIL_SWITCH_FORMATTER(reuse_port)
TETHER_DETAIL_SWITCH_FORMATTER(no_delay)
#undef TETHER_DETAIL_SWITCH_FORMATTER

template <>
struct fmt::formatter<tether::sockopt::send_buffer_size> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::send_buffer_size& v, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "send_buffer_size{{{} bytes}}", v.bytes);
  }
};

template <>
struct fmt::formatter<tether::sockopt::receive_buffer_size> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::receive_buffer_size& v, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "receive_buffer_size{{{} bytes}}", v.bytes);
  }
};

template <>
struct fmt::formatter<tether::sockopt::tcp_state> : tether::detail::plain_formatter {
  auto format(tether::sockopt::tcp_state v, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", tether::detail::tcp_state_name(v));
  }
};

template <>
struct fmt::formatter<tether::sockopt::tcp_info> : tether::detail::plain_formatter {
  auto format(const tether::sockopt::tcp_info& v, format_context& ctx) const {
    using tether::detail::duration_text;
    return fmt::format_to(ctx.out(),
                          "tcp_info{{state={} rtt={} rttvar={} retransmits={} probes={} unacked={} "
                          "last_data_recv={} last_ack_recv={}}}",
                          tether::detail::tcp_state_name(v.state), duration_text(v.rtt), duration_text(v.rttvar),
                          v.retransmits, v.probes, v.unacked, duration_text(v.last_data_recv),
                          duration_text(v.last_ack_recv));
  }
};

template <>
struct fmt::formatter<tether::close_reason> : tether::detail::plain_formatter {
  auto format(tether::close_reason v, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}", tether::close_reason_name(v));
  }
};

// Live and total counts, then only the close reasons that occurred, in enum order.
template <>
struct fmt::formatter<tether::stats> : tether::detail::plain_formatter {
  auto format(const tether::stats& v, format_context& ctx) const {
    auto out = fmt::format_to(ctx.out(), "stats{{live={} opened={}", v.live(), v.opened());
    for (std::size_t i = 0; i < tether::close_reason_count; ++i) {
      const auto reason = static_cast<tether::close_reason>(i);
      if (const auto count = v.closed(reason))
        out = fmt::format_to(out, " {}={}", tether::close_reason_name(reason), count);
    }
    for (const auto limit : {tether::connection_limit::max_connections, tether::connection_limit::max_per_address,
                              tether::connection_limit::descriptors}) {
      if (const auto count = v.refused(limit))
        out = fmt::format_to(out, " over_{}={}", tether::connection_limit_name(limit), count);
    }
    if (const auto buffered = v.buffered_bytes())
      out = fmt::format_to(out, " buffered_bytes={}", buffered);
    if (v.heartbeats() > 0)
      out = fmt::format_to(out, " heartbeats={} min_rtt={}", v.heartbeats(), tether::detail::duration_text(v.min_heartbeat_rtt()));
    return fmt::format_to(out, "}}");
  }
};
