// The whole public API of tether.
#pragma once

#include <tether/backoff.hpp>
#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>
#include <tether/error.hpp>
#include <tether/format.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/peer_paced.hpp>
#include <tether/liveness/strategy.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>
#include <tether/listener.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>
#include <tether/version.hpp>
