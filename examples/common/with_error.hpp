// The completion token the coroutine examples await with: use_awaitable that hands back the error with the
// result instead of throwing it. as_tuple left asio::experimental in Asio 1.24; Debian 12 has 1.22.
#pragma once

#include <asio/use_awaitable.hpp>
#include <asio/version.hpp>

#if ASIO_VERSION >= 102400
#include <asio/as_tuple.hpp>
#else
#include <asio/experimental/as_tuple.hpp>
#endif

namespace examples {

#if ASIO_VERSION >= 102400
inline constexpr auto with_error = asio::as_tuple(asio::use_awaitable);
#else
inline constexpr auto with_error = asio::experimental::as_tuple(asio::use_awaitable);
#endif

} // namespace examples
