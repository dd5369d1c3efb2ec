// Handing listening sockets to a successor (listener_options::handover): connections waiting in the accept queue
// while neither process accepts are served by the successor rather than reset, the predecessor drains with a
// reconnect hint, and whatever answers at the path without being a tether listener is refused with a clear error.
#include "catch.hpp"

#include "loopback.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/error.hpp>
#include <tether/listener.hpp>
#include <tether/socket_options.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace std::chrono_literals;
using tether::test::loopback;
using tether::test::scaled;
using line_listener = tether::listener<tether::line_codec>;
using tcp = asio::ip::tcp;

namespace {

std::string fresh_path(std::string_view name) {
  std::string path = fmt::format("/tmp/tether-handover-{}-{}.sock", name, ::getpid());
  ::unlink(path.c_str());
  return path;
}

bool exists(const std::string& path) {
  struct stat status {};
  return ::lstat(path.c_str(), &status) == 0;
}

void echo_lines(line_listener& server) {
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
}

std::string read_line(tcp::socket& socket) {
  std::string line;
  char c = 0;
  while (asio::read(socket, asio::buffer(&c, 1)) == 1 && c != '\n')
    line += c;
  return line;
}

// A Unix socket at `path` that answers the first connection with `greeting` (and `attached`, if valid, as
// SCM_RIGHTS), as something other than a tether predecessor might.
struct impostor {
  impostor(const std::string& path, std::string greeting, int attached) {
    listening = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof address.sun_path - 1);
    REQUIRE(::bind(listening, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listening, 1) == 0);
    answering = std::thread{[this, greeting = std::move(greeting), attached] {
      const int channel = ::accept(listening, nullptr, nullptr);
      if (channel < 0)
        return;
      alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))] = {};
      iovec data{const_cast<char*>(greeting.data()), greeting.size()};
      msghdr message{};
      message.msg_iov = &data;
      message.msg_iovlen = 1;
      if (attached >= 0) {
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(header), &attached, sizeof attached);
      }
      (void)::sendmsg(channel, &message, MSG_NOSIGNAL);
      char answer = 0;
      (void)::recv(channel, &answer, 1, 0);
      ::close(channel);
    }};
  }
  ~impostor() {
    ::shutdown(listening, SHUT_RDWR);
    answering.join();
    ::close(listening);
  }
  int listening = -1;
  std::thread answering;
};

} // namespace

TEST_CASE("handover: the successor serves connections queued while neither process accepted, and the "
          "predecessor drains with a reconnect hint") {
  const std::string path = fresh_path("queue");
  asio::io_context old_io;
  line_listener old_server{old_io, {.handover = {.path = path, .drain = scaled(4000ms)}}};
  echo_lines(old_server);
  std::atomic<bool> handed_over{false};
  old_server.on_handed_over([&] { handed_over = true; });
  REQUIRE_FALSE(old_server.start());
  CHECK_FALSE(old_server.took_over());
  CHECK(exists(path));
  const auto port = old_server.local_endpoint().port();
  std::thread old_thread{[&] { old_io.run(); }};

  asio::io_context client_io;
  tcp::socket staying{client_io};
  staying.connect({loopback, port});
  asio::write(staying, asio::buffer(std::string{"before\n"}));
  CHECK(read_line(staying) == "before");

  asio::io_context new_io;
  line_listener new_server{new_io, {.port = port, .handover = {.path = path}}};
  echo_lines(new_server);
  REQUIRE_FALSE(new_server.start());
  CHECK(new_server.took_over());
  CHECK(new_server.local_endpoint().port() == port);

  // The predecessor sends its client away with half its drain as the window to come back in.
  CHECK(read_line(staying) == "\x10goaway reconnect-after=0-" + std::to_string(scaled(4000ms).count() / 2));
  CHECK(handed_over);
  staying.close();
  old_thread.join();  // drained: nothing of the old listener is left to accept or to serve

  // Nobody accepts now: the new listener's io_context has not run yet. These wait in the accept queue that the
  // old process's socket shared, and its close did not reset them.
  std::vector<tcp::socket> queued;
  for (int i = 0; i < 5; ++i) {
    queued.emplace_back(client_io);
    queued.back().connect({loopback, port});
    asio::write(queued.back(), asio::buffer(fmt::format("queued {}\n", i)));
  }
  std::thread new_thread{[&] { new_io.run(); }};
  for (int i = 0; i < 5; ++i)
    CHECK(read_line(queued[i]) == fmt::format("queued {}", i));
  CHECK(new_server.stats().opened() == 5);
  CHECK(old_server.stats().opened() == 1);

  for (auto& socket : queued)
    socket.close();
  new_server.stop(0ms);
  new_thread.join();
  CHECK_FALSE(exists(path));  // the last generation removes its handover socket
}

TEST_CASE("handover: with nothing serving the path a listener binds afresh, replacing a stale socket") {
  const std::string path = fresh_path("stale");
  {
    impostor stale{path, "", -1};
  }  // closed without removing its socket file: nobody listens there now
  REQUIRE(exists(path));
  asio::io_context io;
  line_listener server{io, {.handover = {.path = path}}};
  REQUIRE_FALSE(server.start());
  CHECK_FALSE(server.took_over());
  server.stop(0ms);
  io.run();
  CHECK_FALSE(exists(path));
}

TEST_CASE("handover: what answers at the path without handing over listening sockets is refused") {
  const std::string path = fresh_path("impostor");
  asio::io_context io;
  line_listener server{io, {.handover = {.path = path, .timeout = scaled(500ms)}}};
  std::error_code expected = tether::error::handover_malformed;
  int pipe_ends[2] = {-1, -1};
  REQUIRE(::pipe(pipe_ends) == 0);
  std::unique_ptr<impostor> answering;

  SECTION("a greeting of another protocol") { answering = std::make_unique<impostor>(path, "HTTP/1.1 400\r\n", -1); }
  SECTION("the greeting without sockets") { answering = std::make_unique<impostor>(path, "tether-handover 1\n", -1); }
  SECTION("the greeting with a pipe instead of a listening socket") {
    answering = std::make_unique<impostor>(path, "tether-handover 1\n", pipe_ends[0]);
  }
  SECTION("a regular file at the path is left alone") {
    std::ofstream{path} << "not a socket";
    expected = std::make_error_code(std::errc::file_exists);
  }
  const std::error_code ec = server.start();
  INFO(ec.message());
  if (expected == tether::error::handover_malformed) {
    CHECK(ec == expected);
    CHECK(std::string{ec.message()}.find("did not hand over listening TCP sockets") != std::string::npos);
  } else {
    CHECK(ec == expected);
    std::ifstream kept{path};
    std::string content;
    std::getline(kept, content);
    CHECK(content == "not a socket");
  }
  answering.reset();
  ::close(pipe_ends[0]);
  ::close(pipe_ends[1]);
  ::unlink(path.c_str());
}

TEST_CASE("handover: a successor that cannot take the sockets is refused and the predecessor keeps serving") {
  const std::string path = fresh_path("mismatch");
  asio::io_context old_io;
  // Two shards accepting for themselves: two sockets to hand over.
  line_listener old_server{old_io, {.reuse_port = true, .shards = 2, .handover = {.path = path}}};
  echo_lines(old_server);
  std::atomic<bool> handed_over{false};
  old_server.on_handed_over([&] { handed_over = true; });
  REQUIRE_FALSE(old_server.start());
  const auto port = old_server.local_endpoint().port();
  std::thread old_thread{[&] { old_io.run(); }};

  asio::io_context new_io;
  tether::listener_options successor{.port = port, .reuse_port = true, .shards = 2, .handover = {.path = path}};
  SECTION("another port") { successor.port = static_cast<std::uint16_t>(port + 1); }
  SECTION("another address") { successor.address = asio::ip::make_address("127.0.0.2"); }
  SECTION("one shard for two sockets") { successor.shards = 1; }
  SECTION("least_loaded, which accepts on shard 0 alone, for two sockets") {
    successor.balance = tether::listener_options::balancing::least_loaded;
  }
  line_listener refused{new_io, successor};
  const std::error_code ec = refused.start();
  CHECK(ec == tether::error::handover_mismatch);
  CHECK(std::string{ec.message()}.find("do not fit this listener") != std::string::npos);

  std::this_thread::sleep_for(scaled(100ms));
  CHECK_FALSE(handed_over);
  asio::io_context client_io;
  tcp::socket client{client_io};
  client.connect({loopback, port});
  asio::write(client, asio::buffer(std::string{"still here\n"}));
  CHECK(read_line(client) == "still here");
  client.close();
  old_server.stop(0ms);
  old_thread.join();
}

// Why the handover passes the socket itself: a SO_REUSEPORT group does not move a closing member's accept queue
// to the members that stay (unless net.ipv4.tcp_migrate_req is set), so a restart that relies on the group alone
// resets the connections that hashed to the old process and were not accepted yet.
TEST_CASE("handover: closing a member of a SO_REUSEPORT group resets the connections waiting in its queue") {
  std::ifstream migrate_setting{"/proc/sys/net/ipv4/tcp_migrate_req"};
  int migrate = 0;
  migrate_setting >> migrate;
  asio::io_context io;
  const auto reusing = [&](std::uint16_t port) {
    tcp::acceptor acceptor{io};
    acceptor.open(tcp::v4());
    acceptor.set_option(asio::socket_base::reuse_address{true});
    REQUIRE_FALSE(tether::set_option(acceptor, tether::sockopt::reuse_port{}));
    acceptor.bind({loopback, port});
    acceptor.listen();
    return acceptor;
  };
  tcp::acceptor leaving = reusing(0);
  tcp::acceptor staying = reusing(leaving.local_endpoint().port());

  std::vector<tcp::socket> clients;
  for (int i = 0; i < 40; ++i) {
    clients.emplace_back(io);
    clients.back().connect(leaving.local_endpoint());
  }
  leaving.close();

  // Everything still queued went to the member that stays; the rest was reset with the member that left.
  std::vector<tcp::socket> accepted;
  staying.non_blocking(true);
  for (std::error_code ec; !ec;) {
    tcp::socket taken{io};
    staying.accept(taken, ec);
    if (!ec)
      accepted.push_back(std::move(taken));
  }
  std::size_t reset = 0;
  for (auto& client : clients) {
    client.non_blocking(true);
    char byte = 0;
    std::error_code ec;
    client.read_some(asio::buffer(&byte, 1), ec);
    reset += ec == asio::error::connection_reset ? 1 : 0;
  }
  INFO("reset: " << reset << " of 40, accepted by the member that stayed: " << accepted.size()
                 << ", tcp_migrate_req " << migrate);
  CHECK(reset + accepted.size() == 40);
  if (migrate == 0)
    CHECK(reset > 0);
  else
    CHECK(reset == 0);
}

TEST_CASE("handover: options out of range are refused by start(), naming the field") {
  asio::io_context io;
  tether::listener_options options{};
  std::error_code expected;
  SECTION("a path longer than a Unix socket address holds") {
    options.handover.path = "/tmp/" + std::string(200, 'x');
    expected = tether::error::handover_path_too_long;
  }
  SECTION("a timeout of zero") {
    options.handover = {.path = fresh_path("options"), .timeout = 0ms};
    expected = tether::error::handover_timeout_not_positive;
  }
  SECTION("a negative drain") {
    options.handover = {.path = fresh_path("options"), .drain = -1ms};
    expected = tether::error::handover_drain_negative;
  }
  line_listener server{io, options};
  const std::error_code ec = server.start();
  CHECK(ec == expected);
  CHECK(ec.message().find("handover_options.") != std::string::npos);
  CHECK_FALSE(exists(options.handover.path));
}
