// The driver's line to an Asio-based child process: commands arrive one per line on stdin and each gets one
// line back on stdout. End of file on stdin means the driver is done (or gone), and the child winds down.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read_until.hpp>

#include <fmt/core.h>

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <unistd.h>

namespace bench {

class control_channel {
public:
  control_channel(asio::io_context& io, std::function<void(std::string_view)> on_command, std::function<void()> on_end)
      : input_(io, ::dup(STDIN_FILENO)), on_command_(std::move(on_command)), on_end_(std::move(on_end)) {}

  void start() { read_next(); }

  static void reply(std::string_view line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  }

private:
  void read_next() {
    asio::async_read_until(input_, asio::dynamic_buffer(pending_), '\n',
                           [this](const std::error_code& ec, std::size_t length) {
                             if (ec) {
                               on_end_();
                               return;
                             }
                             const std::string command = pending_.substr(0, length - 1);
                             pending_.erase(0, length);
                             on_command_(command);
                             read_next();
                           });
  }

  asio::posix::stream_descriptor input_;
  std::string pending_;
  std::function<void(std::string_view)> on_command_;
  std::function<void()> on_end_;
};

} // namespace bench
