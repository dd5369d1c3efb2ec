#include "catch.hpp"

#include "loopback.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/tcp_keepalive.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::eventually;
using tether::test::scaled;
using tether::test::within_budget;
using tether::test::loopback;
using endpoint = asio::ip::tcp::endpoint;
using line_listener = tether::listener<tether::line_codec>;

namespace {

// The test thread drives every client of a test through one io_context.
template <class Predicate>
bool run_until(asio::io_context& io, Predicate done, std::chrono::milliseconds limit = scaled(5000ms)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) {
    if (io.stopped())
      io.restart();
    io.run_one_for(5ms);
  }
  return done();
}

void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
  run_until(io, [] { return false; }, duration);
}

// A line_codec peer written by hand: sends lines, collects what comes back and notices how the server ends the
// connection. Never moved, since its handlers point at it; destroyed only after its io_context stops running.
class line_client {
public:
  line_client(asio::io_context& io, const asio::ip::address& source) : socket_(io) {
    socket_.open(asio::ip::tcp::v4());
    socket_.bind({source, 0});
  }

  void connect(const endpoint& server) {
    socket_.connect(server);
    read_next();
  }

  void send(std::string_view line) {
    outbox_.append(line).push_back('\n');
    expected_.append(line).push_back('\n');
    if (!writing_)
      write_next();
  }

  // A well-behaved peer: once the server's goaway and every echo have arrived it sends FIN and waits for the
  // server's.
  void leave_after_goaway() { polite_ = true; }

  void leave() {
    std::error_code ignored;
    socket_.close(ignored);
  }

  // The data lines received, control lines (goaway) left out, byte for byte.
  std::string data() const {
    std::string lines;
    std::size_t at = 0;
    for (auto end = received_.find('\n', at); end != std::string::npos; end = received_.find('\n', at)) {
      const std::string_view line{received_.data() + at, end + 1 - at};
      if (!line.starts_with('\x10') || line.starts_with("\x10\x10"))
        lines.append(line);
      at = end + 1;
    }
    return lines.append(received_, at);
  }

  bool echoed() const { return data() == expected_; }
  std::size_t goaways() const {
    // A goaway line, bare or with a payload (listener::stop() sends a reconnect hint).
    constexpr std::string_view goaway = "\x10goaway";
    std::size_t found = 0;
    for (auto at = received_.find(goaway); at != std::string::npos; at = received_.find(goaway, at + 1)) {
      const std::size_t after = at + goaway.size();
      const bool starts_line = at == 0 || received_[at - 1] == '\n';
      found += starts_line && after < received_.size() && (received_[after] == '\n' || received_[after] == ' ') ? 1 : 0;
    }
    return found;
  }
  std::size_t sent_bytes() const { return expected_.size(); }
  bool ended() const { return ended_; }
  std::error_code end_reason() const { return end_reason_; }
  endpoint local() const { return socket_.local_endpoint(); }

private:
  void write_next() {
    writing_ = true;
    in_flight_ = std::exchange(outbox_, {});
    asio::async_write(socket_, asio::buffer(in_flight_), [this](const std::error_code& ec, std::size_t) {
      writing_ = false;
      if (ec && !write_error_)
        write_error_ = ec;
      if (!ec && !outbox_.empty())
        write_next();
    });
  }

  void read_next() {
    socket_.async_read_some(asio::buffer(buffer_), [this](const std::error_code& ec, std::size_t n) {
      if (ec) {
        ended_ = true;
        // Linux reports a reset once: when a write met it first, the read that follows sees only end-of-file.
        end_reason_ = ec == asio::error::eof && write_error_ ? write_error_ : ec;
        return;
      }
      received_.append(buffer_.data(), n);
      if (polite_ && !finishing_ && goaways() > 0 && echoed()) {
        finishing_ = true;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_send);
      }
      read_next();
    });
  }

  asio::ip::tcp::socket socket_;
  std::array<char, 16 * 1024> buffer_{};
  std::string received_;
  std::string expected_;
  std::string outbox_;
  std::string in_flight_;
  std::error_code end_reason_;
  std::error_code write_error_;
  bool writing_ = false;
  bool polite_ = false;
  bool finishing_ = false;
  bool ended_ = false;
};

using clients = std::vector<std::unique_ptr<line_client>>;

std::unique_ptr<line_client> connected_client(asio::io_context& io, const endpoint& server,
                                              const asio::ip::address& source = loopback) {
  auto client = std::make_unique<line_client>(io, source);
  client->connect(server);
  return client;
}

bool all_echoed(const clients& group) {
  return std::all_of(group.begin(), group.end(), [](const auto& client) { return client->echoed(); });
}

// Sends one more line from every client and waits for all the echoes.
bool echo_round(asio::io_context& io, const clients& group, std::string_view tag) {
  for (std::size_t i = 0; i < group.size(); ++i)
    group[i]->send(fmt::format("{} from client {}", tag, i));
  return run_until(io, [&] { return all_echoed(group); });
}

// What the server's handlers saw; written on the server's threads, read by the test.
template <class T>
class handler_log {
public:
  void add(T item) {
    const std::lock_guard lock{mutex_};
    items_.push_back(std::move(item));
  }
  std::vector<T> items() const {
    const std::lock_guard lock{mutex_};
    return items_;
  }
  std::size_t size() const {
    const std::lock_guard lock{mutex_};
    return items_.size();
  }

private:
  mutable std::mutex mutex_;
  std::vector<T> items_;
};

struct rejection {
  endpoint peer;
  close_reason why;
  std::string detail;
};

// A listener echoing every line, running its io_context on a thread of its own while the test thread drives
// the clients. Handlers are set on `listener` before start().
class echo_server {
public:
  explicit echo_server(tether::listener_options options) : listener(io, std::move(options)) {
    listener.on_message([](line_listener::connection_type& conn, std::string_view line) { conn.send(line); });
    listener.on_accept([this](line_listener::connection_type&) { accepted_on.add(std::this_thread::get_id()); });
    listener.on_close([this](line_listener::connection_type&, close_reason why) { closes.add(why); });
    listener.on_reject([this](const endpoint& peer, close_reason why, std::string_view detail) {
      rejections.add({peer, why, std::string{detail}});
    });
  }

  echo_server(const echo_server&) = delete;
  echo_server& operator=(const echo_server&) = delete;

  ~echo_server() {
    if (!runner_.joinable())
      return;
    listener.stop(0ms);
    if (!ran_out(scaled(5000ms)))
      io.stop();
    runner_.join();
  }

  void start() {
    // Compared as text so that a failure shows which error it was.
    REQUIRE(listener.start().message() == std::error_code{}.message());
    runner_ = std::thread([this] {
      io.run();
      returned_ = true;
    });
  }

  endpoint address() const { return listener.local_endpoint(); }
  std::thread::id runner_id() const { return runner_.get_id(); }

  // io.run() returned by itself within the limit.
  bool ran_out(std::chrono::milliseconds limit) const {
    return eventually([this] { return returned_.load(); }, limit);
  }

  std::map<std::thread::id, std::size_t> accepts_per_thread() const {
    std::map<std::thread::id, std::size_t> counts;
    for (const auto id : accepted_on.items())
      ++counts[id];
    return counts;
  }

  asio::io_context io;
  handler_log<std::thread::id> accepted_on;
  handler_log<close_reason> closes;
  handler_log<rejection> rejections;
  line_listener listener;  // after the logs: destroying it can still report closes

private:
  std::thread runner_;
  std::atomic<bool> returned_{false};
};

// Lowers RLIMIT_NOFILE to just above the descriptors in use and takes every free one below it, so that the next
// descriptor anybody in this process asks for fails with EMFILE. Undone on destruction.
class descriptor_exhaustion {
public:
  descriptor_exhaustion() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = highest_open_descriptor() + 16;
    ::setrlimit(RLIMIT_NOFILE, &lowered);
    for (int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); fd >= 0; fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC))
      fillers_.push_back(fd);
    exhausted_ = errno == EMFILE;
  }

  descriptor_exhaustion(const descriptor_exhaustion&) = delete;
  descriptor_exhaustion& operator=(const descriptor_exhaustion&) = delete;

  ~descriptor_exhaustion() {
    for (const int fd : fillers_)
      ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

  bool exhausted() const { return exhausted_; }

private:
  static rlim_t highest_open_descriptor() {
    rlim_t highest = 0;
    for (const auto& entry : std::filesystem::directory_iterator{"/proc/self/fd"})
      highest = std::max<rlim_t>(highest, std::stoul(entry.path().filename().string()));
    return highest;
  }

  rlimit saved_{};
  std::vector<int> fillers_;
  bool exhausted_ = false;
};

// CPU time of the whole process (every thread, user and system) as a share of one core since construction.
class cpu_meter {
public:
  double share_of_one_core() const {
    const auto cpu = process_cpu_time() - cpu_at_start_;
    const auto wall = std::chrono::steady_clock::now() - wall_at_start_;
    return std::chrono::duration<double>(cpu).count() / std::chrono::duration<double>(wall).count();
  }

private:
  static std::chrono::microseconds process_cpu_time() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto micros = [](const timeval& t) {
      return std::chrono::seconds{t.tv_sec} + std::chrono::microseconds{t.tv_usec};
    };
    return micros(usage.ru_utime) + micros(usage.ru_stime);
  }

  std::chrono::microseconds cpu_at_start_ = process_cpu_time();
  std::chrono::steady_clock::time_point wall_at_start_ = std::chrono::steady_clock::now();
};

} // namespace

TEST_CASE("a listener echoes the lines of several clients byte for byte") {
  echo_server server{{}};
  server.start();
  asio::io_context client_io;
  clients group;
  for (int i = 0; i < 5; ++i)
    group.push_back(connected_client(client_io, server.address()));

  for (std::size_t i = 0; i < group.size(); ++i) {
    group[i]->send(fmt::format("hello from {}", i));
    group[i]->send(std::string(10'000 * (i + 1), static_cast<char>('a' + i)));
    group[i]->send("\x10\x10 data that looks like control");
    group[i]->send("");
  }
  REQUIRE(run_until(client_io, [&] { return all_echoed(group); }));
  CHECK(server.listener.connections() == 5);
  CHECK(server.listener.stats().opened() == 5);
  CHECK(server.accepted_on.size() == 5);
  CHECK(server.listener.local_endpoint().address() == loopback);
  CHECK(server.listener.local_endpoint().port() != 0);
}

TEST_CASE("two shards both accept and echo") {
  tether::listener_options options{.shards = 2};
  SECTION("each shard accepts on its own acceptor with reuse_port") { options.reuse_port = true; }
  SECTION("shard 0 hands connections out without reuse_port") { options.reuse_port = false; }

  echo_server server{options};
  server.start();
  asio::io_context client_io;
  clients group;
  for (int i = 0; i < 32; ++i)
    group.push_back(connected_client(client_io, server.address()));
  REQUIRE(echo_round(client_io, group, "first"));
  REQUIRE(eventually([&] { return server.accepted_on.size() == group.size(); }));

  const auto per_thread = server.accepts_per_thread();
  REQUIRE(per_thread.size() == 2);
  CHECK(per_thread.contains(server.runner_id()));
  for (const auto& [thread, accepted] : per_thread)
    CHECK(accepted > 0);
  if (!options.reuse_port) {
    CHECK(per_thread.begin()->second == 16);
  }
  CHECK(echo_round(client_io, group, "second"));
  CHECK(server.listener.connections() == group.size());
}

TEST_CASE("max_connections refuses the next client until one leaves") {
  tether::listener_options options{.max_connections = 3};
  std::error_code refusal_seen;
  SECTION("abortive rejection resets") {
    options.reject = tether::listener_options::rejection::abortive;
    refusal_seen = asio::error::connection_reset;
  }
  SECTION("graceful rejection sends FIN") {
    options.reject = tether::listener_options::rejection::graceful;
    refusal_seen = asio::error::eof;
  }

  echo_server server{options};
  server.start();
  asio::io_context client_io;
  clients admitted;
  for (int i = 0; i < 3; ++i)
    admitted.push_back(connected_client(client_io, server.address()));
  REQUIRE(echo_round(client_io, admitted, "admitted"));
  REQUIRE(server.listener.connections() == 3);

  auto refused = connected_client(client_io, server.address());
  REQUIRE(run_until(client_io, [&] { return refused->ended(); }, scaled(2000ms)));
  CHECK(refused->end_reason() == refusal_seen);
  REQUIRE(eventually([&] { return server.rejections.size() == 1; }));
  const rejection seen = server.rejections.items().front();
  CHECK(seen.why == close_reason::limit_exceeded);
  CHECK(seen.detail == "over max_connections");
  CHECK(seen.peer == refused->local());
  CHECK(server.listener.stats().closed(close_reason::limit_exceeded) == 1);
  CHECK(server.listener.stats().refused(tether::connection_limit::max_connections) == 1);
  CHECK(server.listener.stats().refused(tether::connection_limit::max_per_address) == 0);
  CHECK(server.listener.stats().opened() == 3);
  CHECK(server.accepted_on.size() == 3);
  CHECK(server.closes.size() == 0);
  CHECK(echo_round(client_io, admitted, "still served"));

  admitted.front()->leave();
  REQUIRE(eventually([&] { return server.listener.connections() == 2; }));
  clients newcomer;
  newcomer.push_back(connected_client(client_io, server.address()));
  CHECK(echo_round(client_io, newcomer, "newcomer"));
  CHECK(server.listener.connections() == 3);
  CHECK(server.rejections.size() == 1);
  CHECK(server.closes.size() == 1);
}

TEST_CASE("max_per_address refuses extra clients from one address and serves another") {
  echo_server server{{.max_per_address = 2}};
  server.start();
  const auto crowded = asio::ip::make_address("127.0.0.2");
  const auto other = asio::ip::make_address("127.0.0.3");
  asio::io_context client_io;

  clients from_crowded;
  for (int i = 0; i < 2; ++i)
    from_crowded.push_back(connected_client(client_io, server.address(), crowded));
  REQUIRE(echo_round(client_io, from_crowded, "crowded"));

  auto refused = connected_client(client_io, server.address(), crowded);
  REQUIRE(run_until(client_io, [&] { return refused->ended(); }, scaled(2000ms)));
  CHECK(refused->end_reason() == asio::error::connection_reset);

  clients from_other;
  for (int i = 0; i < 2; ++i)
    from_other.push_back(connected_client(client_io, server.address(), other));
  CHECK(echo_round(client_io, from_other, "other"));
  CHECK(echo_round(client_io, from_crowded, "crowded again"));

  REQUIRE(eventually([&] { return server.rejections.size() == 1; }));
  const rejection seen = server.rejections.items().front();
  CHECK(seen.peer.address() == crowded);
  CHECK(seen.why == close_reason::limit_exceeded);
  CHECK(seen.detail == "over max_per_address");
  CHECK(server.listener.stats().closed(close_reason::limit_exceeded) == 1);
  CHECK(server.listener.stats().refused(tether::connection_limit::max_per_address) == 1);
  CHECK(server.listener.stats().refused(tether::connection_limit::max_connections) == 0);
  CHECK(server.listener.connections() == 4);

  from_crowded.front()->leave();
  REQUIRE(eventually([&] { return server.listener.connections() == 3; }));
  clients newcomer;
  newcomer.push_back(connected_client(client_io, server.address(), crowded));
  CHECK(echo_round(client_io, newcomer, "newcomer"));
}

namespace {

// Before a test runs a server out of descriptors: three clients it serves, and two whose sockets exist before the
// descriptors run out, so that only the server's accept needs a new one.
struct exhaustion_clients {
  clients served;
  clients waiting;
  clients warmed_up;  // left already, but its read may still be pending on the client io_context
};

exhaustion_clients prepare_for_exhaustion(echo_server& server, asio::io_context& client_io) {
  exhaustion_clients made;
  for (int i = 0; i < 3; ++i)
    made.served.push_back(connected_client(client_io, server.address()));
  REQUIRE(echo_round(client_io, made.served, "before"));

  // UBSan checks the dynamic type of every error_category an error_code comparison touches. It caches what it
  // has checked, but a first check needs a pipe to probe the object's memory, and without descriptors it takes
  // the object for one with an invalid vptr. The server's only first comparison with no descriptors left would
  // be with Asio's end-of-file category, when the clients leave: a client that leaves now makes it beforehand.
  clients& warm_up = made.warmed_up;
  warm_up.push_back(connected_client(client_io, server.address()));
  REQUIRE(echo_round(client_io, warm_up, "warm-up"));
  warm_up.front()->leave();
  REQUIRE(run_until(client_io, [&] { return server.listener.connections() == made.served.size(); }));

  for (int i = 0; i < 2; ++i)
    made.waiting.push_back(std::make_unique<line_client>(client_io, loopback));
  return made;
}

// With the descriptors gone: the waiting clients connect and each sends a line.
void connect_waiting(clients& waiting, const endpoint& server) {
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    waiting[i]->connect(server);
    waiting[i]->send(fmt::format("queued {}", i));
  }
}

struct echoes_while_exhausted {
  bool all_came_back = true;
  double cpu_share = 1;  // of one core, for the whole process, over the rounds
};

// `rounds` echo rounds on the served clients, 100 ms apart, stopping at the first that fails.
echoes_while_exhausted echo_rounds(asio::io_context& client_io, clients& served, int rounds) {
  echoes_while_exhausted seen;
  const cpu_meter meter;
  for (int round = 0; round < rounds && seen.all_came_back; ++round) {
    seen.all_came_back = echo_round(client_io, served, fmt::format("exhausted {}", round));
    run_for(client_io, 100ms);
  }
  seen.cpu_share = meter.share_of_one_core();
  return seen;
}

} // namespace

TEST_CASE("running out of descriptors pauses accepting without spinning and recovers") {
  echo_server server{{}};
  server.start();
  asio::io_context client_io;
  exhaustion_clients prepared = prepare_for_exhaustion(server, client_io);
  clients& served = prepared.served;
  clients& waiting = prepared.waiting;

  // Nothing is asserted while the descriptors are gone, since the sanitizers' runtimes need descriptors of their
  // own to check an assertion's objects (UBSan probes memory through a pipe); what happened is kept and checked
  // once they are back.
  struct {
    bool exhausted = false;
    bool queued_served_while_exhausted = false;
    echoes_while_exhausted served;
    std::size_t connections = 0;
    bool queued_served_after_others_left = false;
  } seen;
  {
    const descriptor_exhaustion exhaustion;
    seen.exhausted = exhaustion.exhausted();
    if (seen.exhausted) {
      connect_waiting(waiting, server.address());
      run_for(client_io, 200ms);  // the server meets EMFILE and starts backing off
      seen.served = echo_rounds(client_io, served, 10);
      seen.queued_served_while_exhausted = all_echoed(waiting);
      seen.connections = server.listener.connections();

      for (const auto& client : served)
        client->leave();
      seen.queued_served_after_others_left = run_until(client_io, [&] { return all_echoed(waiting); }, scaled(4000ms));
    }
  }
  REQUIRE(seen.exhausted);
  CHECK(seen.served.all_came_back);
  CHECK(seen.served.cpu_share < 0.25);
  CHECK(!seen.queued_served_while_exhausted);
  CHECK(seen.connections == 3);
  CHECK(seen.queued_served_after_others_left);

  clients newcomer;
  newcomer.push_back(connected_client(client_io, server.address()));
  CHECK(echo_round(client_io, newcomer, "after"));
  CHECK(echo_round(client_io, waiting, "after"));
}

TEST_CASE("with out_of_descriptors = refuse, clients queued while descriptors run out are refused at once") {
  echo_server server{{.out_of_descriptors = tether::listener_options::descriptor_shortage::refuse}};
  server.start();
  asio::io_context client_io;
  exhaustion_clients prepared = prepare_for_exhaustion(server, client_io);
  clients& served = prepared.served;
  clients& waiting = prepared.waiting;

  // Checked once the descriptors are back, for the reason given in the test above.
  struct {
    bool exhausted = false;
    bool refused = false;
    std::chrono::steady_clock::duration refused_after{};
    echoes_while_exhausted served;
  } seen;
  {
    const descriptor_exhaustion exhaustion;
    seen.exhausted = exhaustion.exhausted();
    if (seen.exhausted) {
      const auto began = std::chrono::steady_clock::now();
      connect_waiting(waiting, server.address());
      seen.refused = run_until(client_io, [&] {
        return std::all_of(waiting.begin(), waiting.end(), [](const auto& client) { return client->ended(); });
      }, scaled(2000ms));
      seen.refused_after = std::chrono::steady_clock::now() - began;
      seen.served = echo_rounds(client_io, served, 5);
    }
  }
  REQUIRE(seen.exhausted);
  REQUIRE(seen.refused);
  CHECK(within_budget("queued clients refused while out of descriptors", seen.refused_after, scaled(500ms)));
  for (const auto& client : waiting) {
    CHECK(client->end_reason() == asio::error::connection_reset);
    CHECK(client->data().empty());
  }
  CHECK(seen.served.all_came_back);
  CHECK(seen.served.cpu_share < 0.25);
  CHECK(server.listener.stats().refused(tether::connection_limit::descriptors) == 2);
  const auto rejected = server.rejections.items();
  REQUIRE(rejected.size() == 2);
  for (const auto& r : rejected) {
    CHECK(r.why == close_reason::limit_exceeded);
    CHECK(r.detail == "out of descriptors");
    CHECK(r.peer.address() == loopback);
  }
  clients newcomer;
  newcomer.push_back(connected_client(client_io, server.address()));
  CHECK(echo_round(client_io, newcomer, "after"));
}

TEST_CASE("stop lets clients finish after a goaway and aborts the ones that ignore it") {
  tether::listener_options options{};
  SECTION("one shard") { options.shards = 1; }
  SECTION("two shards") { options.shards = 2; }
  // The drain deadline must leave room for echoing megabytes, which sanitizers slow down several times over.
  constexpr auto deadline = scaled(1500ms);

  echo_server server{options};
  asio::signal_set signals{server.io, SIGUSR1};
  signals.async_wait([&](const std::error_code& ec, int) {
    if (!ec)
      server.listener.stop(deadline);
  });
  server.start();

  asio::io_context client_io;
  clients polite;
  for (int i = 0; i < 3; ++i)
    polite.push_back(connected_client(client_io, server.address()));
  clients deaf;
  deaf.push_back(connected_client(client_io, server.address()));
  REQUIRE(echo_round(client_io, polite, "hello"));
  REQUIRE(echo_round(client_io, deaf, "hello"));

  // Megabytes of random text in flight when the stop begins: every byte must come back.
  std::mt19937 random{11};
  std::uniform_int_distribution<int> printable{' ', '~'};
  std::string payload(500, ' ');
  for (std::size_t i = 0; i < polite.size(); ++i) {
    polite[i]->leave_after_goaway();
    for (int line = 0; line < 2000; ++line) {
      for (auto& c : payload)
        c = static_cast<char>(printable(random));
      polite[i]->send(fmt::format("client {} line {} {}", i, line, payload));
    }
  }
  const auto stop_requested = std::chrono::steady_clock::now();
  std::raise(SIGUSR1);

  const auto ended = [](const clients& group) {
    return std::all_of(group.begin(), group.end(), [](const auto& client) { return client->ended(); });
  };
  REQUIRE(run_until(client_io, [&] { return ended(polite) && deaf.front()->goaways() == 1; }, deadline));
  CHECK(within_budget("polite clients drained after a goaway", std::chrono::steady_clock::now() - stop_requested, deadline));
  for (const auto& client : polite) {
    CHECK(client->goaways() == 1);
    CHECK(client->data().size() == client->sent_bytes());
    CHECK(client->echoed());
    CHECK(client->end_reason() == asio::error::eof);
  }
  CHECK(!deaf.front()->ended());

  REQUIRE(run_until(client_io, [&] { return ended(deaf); }, deadline + scaled(2000ms)));
  CHECK(std::chrono::steady_clock::now() - stop_requested >= deadline);
  CHECK(deaf.front()->end_reason() == asio::error::connection_reset);

  CHECK(server.ran_out(scaled(2000ms)));
  const auto reasons = server.closes.items();
  CHECK(reasons.size() == 4);
  CHECK(std::all_of(reasons.begin(), reasons.end(), [](close_reason why) { return why == close_reason::shutdown; }));
  CHECK(server.listener.stats().closed(close_reason::shutdown) == 4);
  CHECK(server.listener.connections() == 0);
  server.listener.stop(0ms);
}

TEST_CASE("during a stop, a connection whose heartbeat times out reports heartbeat_timeout, not shutdown") {
  asio::io_context io;
  using watched_listener = tether::listener<tether::line_codec, tether::liveness<tether::heartbeat>>;
  watched_listener listener{io, {.wheel = {.tick = 10ms}}, {},
                            tether::liveness{tether::heartbeat{.interval = 100ms, .timeout = 100ms}}};
  handler_log<close_reason> closes;
  listener.on_close([&](watched_listener::connection_type&, close_reason why) { closes.add(why); });
  REQUIRE(!listener.start());
  std::thread runner{[&] { io.run(); }};

  // Reads everything (goaway and pings included) and answers nothing: alive to TCP, dead to a heartbeat.
  asio::io_context client_io;
  clients deaf;
  deaf.push_back(connected_client(client_io, listener.local_endpoint()));
  REQUIRE(eventually([&] { return listener.connections() == 1; }));
  const auto stop_requested = std::chrono::steady_clock::now();
  listener.stop(scaled(5000ms));
  REQUIRE(run_until(client_io, [&] { return deaf.front()->ended(); }, scaled(4000ms)));
  CHECK(deaf.front()->goaways() == 1);
  CHECK(std::chrono::steady_clock::now() - stop_requested < scaled(4000ms));
  runner.join();
  CHECK(closes.items() == std::vector<close_reason>{close_reason::heartbeat_timeout});
  CHECK(listener.stats().closed(close_reason::heartbeat_timeout) == 1);
  CHECK(listener.stats().closed(close_reason::shutdown) == 0);
}

TEST_CASE("destroying a running listener aborts its connections and joins its threads") {
  asio::io_context io;
  handler_log<close_reason> closes;
  auto listener = std::make_unique<line_listener>(io, tether::listener_options{.shards = 2});
  listener->on_message([](line_listener::connection_type& conn, std::string_view line) { conn.send(line); });
  listener->on_close([&](line_listener::connection_type&, close_reason why) { closes.add(why); });
  REQUIRE(!listener->start());
  std::thread runner{[&] { io.run(); }};

  asio::io_context client_io;
  clients group;
  for (int i = 0; i < 4; ++i)
    group.push_back(connected_client(client_io, listener->local_endpoint()));
  REQUIRE(echo_round(client_io, group, "hello"));

  io.stop();
  runner.join();
  listener.reset();
  const auto reasons = closes.items();
  CHECK(reasons.size() == 4);
  CHECK(std::all_of(reasons.begin(), reasons.end(), [](close_reason why) { return why == close_reason::shutdown; }));
  REQUIRE(run_until(client_io, [&] {
    return std::all_of(group.begin(), group.end(), [](const auto& client) { return client->ended(); });
  }));
  for (const auto& client : group)
    CHECK(client->end_reason() == asio::error::connection_reset);
}

TEST_CASE("start reports a port another socket listens on as address_in_use") {
  asio::io_context io;
  auto taken = tether::test::make_listener(io);
  tether::listener_options options{.port = taken.local_endpoint().port()};
  SECTION("with reuse_address") { options.reuse_address = true; }
  SECTION("without reuse_address") { options.reuse_address = false; }

  line_listener listener{io, options};
  CHECK(listener.start() == asio::error::address_in_use);

  taken.close();
  CHECK(!listener.start());
  CHECK(listener.local_endpoint().port() == options.port);
}

TEST_CASE("start refuses options that cannot work and names the field") {
  asio::io_context io;
  tether::listener_options options{};
  tether::connection_options connection{};
  std::error_code expected;
  SECTION("no shards") {
    options.shards = 0;
    expected = tether::error::shards_zero;
  }
  SECTION("an accept retry that never waits") {
    options.accept_retry_initial = 0ms;
    expected = tether::error::accept_retry_initial_not_positive;
  }
  SECTION("a retry ceiling below the first retry") {
    options.accept_retry_max = 1ms;
    expected = tether::error::accept_retry_max_below_initial;
  }
  SECTION("a wheel without slots") {
    options.wheel.slots = 0;
    expected = tether::error::wheel_slots_zero;
  }
  SECTION("a connection write queue of nothing") {
    connection.write_high_water = 0;
    expected = tether::error::write_high_water_zero;
  }

  line_listener listener{io, options, {}, {}, connection};
  const std::error_code refused = listener.start();
  CHECK(refused == expected);
  CHECK(refused == std::errc::invalid_argument);
  CHECK(listener.native_handle() == tether::detail::invalid_socket);

  tether::listener<tether::line_codec, tether::liveness<tether::tcp_keepalive>> bad_strategy{
      io, {}, {}, tether::liveness{tether::tcp_keepalive{.idle = 0ms}}};
  CHECK(bad_strategy.start() == tether::error::keepalive_idle_out_of_range);
}

TEST_CASE("start and stop are answered once") {
  asio::io_context io;
  line_listener listener{io, {}};
  REQUIRE(!listener.start());
  CHECK(listener.start() == asio::error::already_started);
  listener.stop(0ms);
  listener.stop(0ms);
  io.run_for(2s);
  CHECK(io.stopped());
}
