// The two sides of a listening-socket handover (tether/handover.hpp): the successor's request, made while its
// listener starts, and the predecessor's handover point, which waits for a successor on a Unix socket.
//
// The exchange on a Unix stream socket: the predecessor sends the greeting with its listening sockets attached
// (SCM_RIGHTS); the successor checks them, starts accepting on them, and answers with one byte; only then does the
// predecessor let go. A successor that fails before answering leaves the predecessor serving as before.
#pragma once

#include <tether/detail/native_socket.hpp>
#include <tether/error.hpp>

#include <cstddef>

#if !defined(TETHER_PLATFORM_WINDOWS)
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>
#endif

namespace tether::detail {

#if defined(TETHER_PLATFORM_WINDOWS)
inline constexpr bool handover_supported = false;
inline constexpr std::size_t max_handover_path = 1;
#else
inline constexpr bool handover_supported = true;
inline constexpr std::size_t max_handover_path = sizeof(sockaddr_un{}.sun_path);

inline constexpr std::string_view handover_greeting = "tether-handover 1\n";
// More than any listener has shards; a message with more is not a tether predecessor's.
inline constexpr std::size_t max_handed_sockets = 64;

inline sockaddr_un unix_address(const std::string& path) noexcept {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// A descriptor that is closed with its owner.
class owned_descriptor {
public:
  owned_descriptor() = default;
  explicit owned_descriptor(int fd) noexcept : fd_(fd) {}
  owned_descriptor(owned_descriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  owned_descriptor& operator=(owned_descriptor&& other) noexcept {
    if (this != &other)
      reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~owned_descriptor() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

private:
  int fd_ = -1;
};

// Whether the process at the other end of a Unix socket runs as this process's effective user.
inline bool peer_is_same_user(int channel) noexcept {
#if defined(SO_PEERCRED)
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(channel, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0)
    return false;
  return credentials.uid == ::geteuid();
#else
  uid_t uid = 0;
  gid_t gid = 0;
  if (::getpeereid(channel, &uid, &gid) != 0)
    return false;
  return uid == ::geteuid();
#endif
}

inline bool is_listening_tcp_socket(int fd) noexcept {
  int listening = 0;
  int type = 0;
  if (get_int_option(fd, SOL_SOCKET, SO_ACCEPTCONN, listening) || !listening)
    return false;
  if (get_int_option(fd, SOL_SOCKET, SO_TYPE, type) || type != SOCK_STREAM)
    return false;
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    return false;
  return address.ss_family == AF_INET || address.ss_family == AF_INET6;
}

// The successor's side, used by listener::start(): blocking, bounded by the timeout.
class handover_request {
public:
  // Asks the process serving `path` for its listening sockets. No process there (no socket at the path, or
  // a stale one nobody listens on) is no error: sockets() stays empty and the listener binds afresh.
  std::error_code ask(const std::string& path, std::chrono::milliseconds timeout) {
    channel_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!channel_)
      return last_socket_error();
    const timeval bound{static_cast<time_t>(timeout.count() / 1000),
                        static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    if (auto ec = set_raw_option(channel_.get(), SOL_SOCKET, SO_RCVTIMEO, bound))
      return ec;
    if (auto ec = set_raw_option(channel_.get(), SOL_SOCKET, SO_SNDTIMEO, bound))
      return ec;
    const sockaddr_un address = unix_address(path);
    if (::connect(channel_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      const int failure = errno;
      channel_.reset();
      if (failure == ENOENT || failure == ECONNREFUSED)
        return {};
      return {failure, std::system_category()};
    }
    return receive();
  }

  std::size_t size() const noexcept { return sockets_.size(); }
  bool empty() const noexcept { return sockets_.empty(); }
  // Hands socket i's descriptor to the caller, who closes it from then on.
  int take(std::size_t i) noexcept { return sockets_[i].release(); }

  // Tells the predecessor that this process accepts on the sockets, so that it lets go of its copies.
  void acknowledge() noexcept {
    if (!channel_)
      return;
    const char accepted = '1';
    (void)::send(channel_.get(), &accepted, 1, MSG_NOSIGNAL);
    channel_.reset();
  }

private:
  std::error_code receive() {
    std::array<char, 64> greeting{};
    alignas(cmsghdr) std::array<unsigned char, CMSG_SPACE(sizeof(int) * max_handed_sockets)> control{};
    iovec data{greeting.data(), greeting.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    int flags = 0;
#if defined(MSG_CMSG_CLOEXEC)
    flags |= MSG_CMSG_CLOEXEC;
#endif
    const ssize_t received = ::recvmsg(channel_.get(), &message, flags);
    if (received < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? std::make_error_code(std::errc::timed_out) : last_socket_error();
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
        continue;
      const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
        sockets_.emplace_back(fd);
#if !defined(MSG_CMSG_CLOEXEC)
        (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
      }
    }
    const std::string_view said{greeting.data(), static_cast<std::size_t>(received)};
    bool valid = said == handover_greeting && (message.msg_flags & MSG_CTRUNC) == 0 && !sockets_.empty();
    for (const auto& socket : sockets_)
      valid = valid && is_listening_tcp_socket(socket.get());
    if (!valid) {
      sockets_.clear();
      channel_.reset();
      return error::handover_malformed;
    }
    return {};
  }

  owned_descriptor channel_;
  std::vector<owned_descriptor> sockets_;
};

// The predecessor's side: serves `path` on an io_context and hands copies of the listening sockets to the first
// successor that asks and answers; one successor at a time. Lives on its io_context's thread.
class handover_point : public std::enable_shared_from_this<handover_point> {
public:
  handover_point(asio::io_context& io, std::string path, std::chrono::milliseconds timeout,
                 std::vector<owned_descriptor> listening, std::function<void()> on_taken)
      : path_(std::move(path)), timeout_(timeout), listening_(std::move(listening)), on_taken_(std::move(on_taken)),
        acceptor_(io), channel_(io), timer_(io) {}

  // Replaces a socket left at the path by an earlier generation (never any other kind of file) and listens.
  std::error_code open() {
    struct stat existing {};
    if (::lstat(path_.c_str(), &existing) == 0) {
      if (!S_ISSOCK(existing.st_mode))
        return std::make_error_code(std::errc::file_exists);
      if (::unlink(path_.c_str()) != 0)
        return last_socket_error();
    }
    std::error_code ec;
    acceptor_.open(asio::local::stream_protocol{}, ec);
    if (!ec)
      acceptor_.bind(asio::local::stream_protocol::endpoint{path_}, ec);
    if (!ec && ::chmod(path_.c_str(), S_IRUSR | S_IWUSR) != 0)
      ec = last_socket_error();
    if (!ec)
      acceptor_.listen(4, ec);
    struct stat bound {};
    if (!ec && ::stat(path_.c_str(), &bound) != 0)
      ec = last_socket_error();
    if (ec) {
      close();
      return ec;
    }
    bound_inode_ = bound.st_ino;
    bound_device_ = bound.st_dev;
    accept_next();
    return {};
  }

  // No more successors (the acceptor is closed from then on, which its handlers check): closes the copies (so that a stopped listener's port is closed for good) and removes
  // the path unless a successor has put its own socket there.
  void close() {
    std::error_code ignored;
    acceptor_.close(ignored);
    channel_.close(ignored);
    timer_.cancel();
    listening_.clear();
    struct stat current {};
    if (bound_inode_ != 0 && ::lstat(path_.c_str(), &current) == 0 && current.st_ino == bound_inode_ &&
        current.st_dev == bound_device_)
      ::unlink(path_.c_str());
    bound_inode_ = 0;
  }

private:
  void accept_next() {
    acceptor_.async_accept(channel_, [weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (!self || !self->acceptor_.is_open())
        return;
      if (ec) {
        if (ec != asio::error::operation_aborted)
          self->accept_next();
        return;
      }
      self->offer();
    });
  }

  void offer() {
    if (!peer_is_same_user(channel_.native_handle()) || !send_sockets()) {
      finish_offer();
      return;
    }
    timer_.expires_after(timeout_);
    timer_.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      if (auto self = weak.lock(); self && !ec) {
        std::error_code ignored;
        self->channel_.close(ignored);
      }
    });
    asio::async_read(channel_, asio::buffer(answer_), [weak = weak_from_this()](const std::error_code& ec, std::size_t) {
      auto self = weak.lock();
      if (!self || !self->acceptor_.is_open())
        return;
      self->timer_.cancel();
      if (ec) {
        self->finish_offer();
        return;
      }
      self->close();
      if (self->on_taken_)
        self->on_taken_();
    });
  }

  bool send_sockets() {
    if (listening_.empty() || listening_.size() > max_handed_sockets)
      return false;
    alignas(cmsghdr) std::array<unsigned char, CMSG_SPACE(sizeof(int) * max_handed_sockets)> control{};
    iovec data{const_cast<char*>(handover_greeting.data()), handover_greeting.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = CMSG_SPACE(sizeof(int) * listening_.size());
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * listening_.size());
    for (std::size_t i = 0; i < listening_.size(); ++i) {
      const int fd = listening_[i].get();
      std::memcpy(CMSG_DATA(header) + i * sizeof(int), &fd, sizeof fd);
    }
    return ::sendmsg(channel_.native_handle(), &message, MSG_NOSIGNAL | MSG_DONTWAIT) ==
           static_cast<ssize_t>(handover_greeting.size());
  }

  void finish_offer() {
    std::error_code ignored;
    channel_.close(ignored);
    accept_next();
  }

  std::string path_;
  std::chrono::milliseconds timeout_;
  std::vector<owned_descriptor> listening_;  // copies of the listener's sockets, not watched by any reactor
  std::function<void()> on_taken_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::local::stream_protocol::socket channel_;
  asio::steady_timer timer_;
  std::array<char, 1> answer_{};
  ino_t bound_inode_ = 0;
  dev_t bound_device_ = 0;
};
#endif

} // namespace tether::detail
