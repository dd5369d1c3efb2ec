// Test peers for connection tests: a raw socket that records what it receives and can answer pings the way
// any tether peer would, plus a loop runner with a time bound.
#pragma once

#include "time_budget.hpp"

#include <tether/connection.hpp>

#include <asio.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>
#include <string>
#include <string_view>

namespace tether::test {

using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

// Runs the io_context until the predicate holds or the limit passes; returns the predicate's final value.
template <class Predicate>
bool run_until(asio::io_context& io, Predicate predicate, std::chrono::milliseconds limit = scaled(std::chrono::milliseconds{5000})) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!predicate() && std::chrono::steady_clock::now() < until) {
    if (io.stopped())
      io.restart();
    io.run_one_for(std::chrono::milliseconds{5});
  }
  return predicate();
}

inline void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
  run_until(io, [] { return false; }, duration);
}

// A plain socket peer speaking line_codec by hand.
class raw_peer {
public:
  explicit raw_peer(asio::io_context& io) : socket(io) {}

  void connect(const asio::ip::tcp::endpoint& server) { socket.connect(server); }

  void start_reading() {
    socket.async_read_some(asio::buffer(buffer_), [this](const std::error_code& ec, std::size_t n) {
      if (ec) {
        closed = true;
        closed_at = std::chrono::steady_clock::now();
        error = ec;
        // An ordinary client answers the server's FIN by closing too.
        if (close_on_eof && ec == asio::error::eof)
          socket.close();
        return;
      }
      received.append(buffer_.data(), n);
      if (answer_pings)
        answer_new_pings();
      start_reading();
    });
  }

  void write(std::string bytes) {
    auto owned = std::make_shared<std::string>(std::move(bytes));
    asio::async_write(socket, asio::buffer(*owned), [owned](const std::error_code&, std::size_t) {});
  }

  std::size_t count(std::string_view needle) const {
    std::size_t found = 0;
    for (auto at = received.find(needle); at != std::string::npos; at = received.find(needle, at + needle.size()))
      ++found;
    return found;
  }

  socket_type socket;
  std::string received;
  bool answer_pings = false;
  bool close_on_eof = false;
  bool closed = false;  // the read side ended: EOF or an error
  std::chrono::steady_clock::time_point closed_at{};
  std::error_code error;

private:
  void answer_new_pings() {
    for (auto end = received.find('\n', scanned_); end != std::string::npos; end = received.find('\n', scanned_)) {
      const std::string_view line{received.data() + scanned_, end - scanned_};
      scanned_ = end + 1;
      if (line.starts_with("\x10ping"))
        write("\x10pong" + std::string{line.substr(5)} + "\n");
    }
  }

  std::array<char, 4096> buffer_{};
  std::size_t scanned_ = 0;
};

// A client that reads at most `chunk` bytes, then pauses for `pause`, again and again: slow enough that a server's
// write queue fills and its reading pauses.
class slow_reader {
public:
  slow_reader(asio::ip::tcp::socket& socket, std::size_t chunk, std::chrono::microseconds pause)
      : socket_(socket), buffer_(chunk), pace_(socket.get_executor()), pause_(pause) {}

  void start() {
    socket_.async_read_some(asio::buffer(buffer_), [this](const std::error_code& ec, std::size_t n) {
      if (ec)
        return;
      received.append(buffer_.data(), n);
      pace_.expires_after(pause_);
      pace_.async_wait([this](const std::error_code&) { start(); });
    });
  }

  std::string received;

private:
  asio::ip::tcp::socket& socket_;
  std::vector<char> buffer_;
  asio::steady_timer pace_;
  std::chrono::microseconds pause_;
};

} // namespace tether::test
