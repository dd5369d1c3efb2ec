// Child processes for the benchmarks: servers and clients run as separate processes (as they would in
// production, and so that each has its own descriptor limit and its own memory figures), pinned to a CPU where
// the method asks for it, and talking to the driver over their stdin and stdout, one line per message.
//
// Nothing outlives the driver: every child gets PR_SET_PDEATHSIG, and a child_process that goes out of scope
// closes the child's input (the order to finish), then sends SIGTERM, then SIGKILL if it still runs.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace bench {

inline std::system_error system_failure(std::string_view what) {
  return std::system_error{errno, std::system_category(), std::string{what}};
}

inline void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0)
    throw system_failure("sched_setaffinity to CPU " + std::to_string(cpu));
}

// The processes `pid` has started (its main thread's children), e.g. the program a tracer runs.
inline std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream file{"/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"};
  std::vector<pid_t> children;
  for (pid_t child; file >> child;)
    children.push_back(child);
  return children;
}

inline std::string self_executable() {
  std::string path(4096, '\0');
  const ssize_t length = ::readlink("/proc/self/exe", path.data(), path.size());
  if (length <= 0)
    throw system_failure("readlink /proc/self/exe");
  path.resize(static_cast<std::size_t>(length));
  return path;
}

namespace detail {
inline volatile std::sig_atomic_t interrupt_requested = 0;
extern "C" inline void note_interrupt(int) { interrupt_requested = 1; }
} // namespace detail

// For the process that runs a benchmark and its children. Ctrl-C or SIGTERM ends its loops early, so that its
// destructors still stop every child: blocking calls return with EINTR rather than restarting, which is what lets
// the loops notice. Its output is line-buffered, so that progress shows while it runs and in order with the
// children's stderr.
inline void begin_driver() {
  struct sigaction action = {};
  action.sa_handler = detail::note_interrupt;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
}

inline bool interrupted() noexcept { return detail::interrupt_requested != 0; }

class child_process {
public:
  // argv[0] is looked up on PATH. The child's stdin and stdout are pipes to this process; stderr is shared.
  explicit child_process(const std::vector<std::string>& argv, std::optional<int> cpu = std::nullopt) {
    int to_child[2];
    int from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0)
      throw system_failure("pipe2");
    if (::pipe2(from_child, O_CLOEXEC) != 0) {
      ::close(to_child[0]);
      ::close(to_child[1]);
      throw system_failure("pipe2");
    }
    std::vector<char*> args;
    for (const auto& arg : argv)
      args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);

    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0)
      throw system_failure("fork");
    if (pid_ == 0)
      become_child(parent, to_child[0], from_child[1], cpu, args.data());
    ::close(to_child[0]);
    ::close(from_child[1]);
    input_ = to_child[1];
    output_ = from_child[0];
  }

  child_process(child_process&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), input_(std::exchange(other.input_, -1)),
        output_(std::exchange(other.output_, -1)), buffered_(std::move(other.buffered_)) {}
  child_process& operator=(child_process&&) = delete;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() {
    stop(std::chrono::seconds{2});
    close_fd(input_);
    close_fd(output_);
  }

  pid_t pid() const noexcept { return pid_; }

  // The next line the child wrote, without its newline; nullopt once the child closed its stdout, or when
  // nothing complete arrived within the timeout (or the driver was interrupted).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
        std::string line = buffered_.substr(0, newline);
        buffered_.erase(0, newline + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (output_ < 0 || left.count() <= 0 || interrupted())
        return std::nullopt;
      pollfd ready{output_, POLLIN, 0};
      if (::poll(&ready, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char chunk[4096];
      const ssize_t n = ::read(output_, chunk, sizeof chunk);
      if (n <= 0) {
        close_fd(output_);
        continue;
      }
      buffered_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Reads lines until one starts with `prefix`, which it returns; lines before it are echoed to stderr.
  std::optional<std::string> expect(std::string_view prefix, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      auto line = read_line(std::max(left, std::chrono::milliseconds{0}));
      if (!line || line->starts_with(prefix))
        return line;
      std::fprintf(stderr, "[child %d] %s\n", static_cast<int>(pid_), line->c_str());
    }
  }

  // False when the child no longer reads its input.
  bool send_line(std::string_view line) {
    std::string message{line};
    message += '\n';
    std::string_view rest = message;
    while (!rest.empty() && input_ >= 0) {
      const ssize_t n = ::write(input_, rest.data(), rest.size());
      if (n < 0 && errno == EINTR && !interrupted())
        continue;
      if (n <= 0)
        return false;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return rest.empty();
  }

  // The child sees end of file on its stdin: the order to finish, for the children that take orders.
  void close_input() noexcept { close_fd(input_); }

  // The exit status once the child has ended, or nullopt if it is still running after the timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    if (pid_ < 0)
      return exit_status_;
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_ || (done < 0 && errno == ECHILD)) {
        pid_ = -1;
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_status_;
      }
      if (std::chrono::steady_clock::now() >= until)
        return std::nullopt;
      ::usleep(10'000);
    }
  }

  // Ends the child: first by closing its input, which benchmark children take as the order to finish (so that
  // they can reset their connections rather than leave TIME_WAIT behind), then with SIGTERM, then SIGKILL.
  void stop(std::chrono::milliseconds to_exit_by_itself,
            std::chrono::milliseconds after_sigterm = std::chrono::seconds{5}) {
    if (pid_ < 0)
      return;
    close_input();
    if (wait(to_exit_by_itself))
      return;
    ::kill(pid_, SIGTERM);
    if (!wait(after_sigterm)) {
      ::kill(pid_, SIGKILL);
      wait(std::chrono::seconds{10});
    }
  }

private:
  [[noreturn]] static void become_child(pid_t parent, int input, int output, std::optional<int> cpu,
                                        char* const* args) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    if (cpu) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(*cpu, &set);
      ::sched_setaffinity(0, sizeof set, &set);
    }
    ::dup2(input, STDIN_FILENO);
    ::dup2(output, STDOUT_FILENO);
    // Sockets the driver holds are not marked close-on-exec; a child must not keep them alive.
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::execvp(args[0], args);
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }

  static void close_fd(int& fd) noexcept {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }

  pid_t pid_ = -1;
  int input_ = -1;
  int output_ = -1;
  std::string buffered_;
  std::optional<int> exit_status_;
};

} // namespace bench
