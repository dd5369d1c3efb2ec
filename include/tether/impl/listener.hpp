// The machinery of tether::listener (declared in tether/listener.hpp).
#pragma once

#include <tether/listener.hpp>

#include <asio/error.hpp>
#include <asio/post.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tether {

inline std::error_code listener_options::validate() const noexcept {
  if (shards == 0)
    return error::shards_zero;
  if (accept_retry_initial.count() <= 0)
    return error::accept_retry_initial_not_positive;
  if (accept_retry_max < accept_retry_initial)
    return error::accept_retry_max_below_initial;
  if (auto ec = proxy_protocol.validate())
    return ec;
  if (auto ec = handover.validate())
    return ec;
  if (out_of_descriptors == descriptor_shortage::refuse && !detail::spare_descriptor_supported)
    return error::descriptor_reserve_not_supported;
  return wheel.validate();
}

template <class Codec, liveness_policy Liveness, class UserData>
listener<Codec, Liveness, UserData>::listener(asio::io_context& io, listener_options options, Codec codec, Liveness liveness,
                                    connection_options connection)
    : io_(io), options_(std::move(options)),
      core_({.codec = std::move(codec), .liveness = std::move(liveness), .options = connection},
            {.wheel = options_.wheel,
             .reject_abortively = options_.reject == listener_options::rejection::abortive,
             .accept_retry_initial = options_.accept_retry_initial,
             .accept_retry_max = options_.accept_retry_max,
             .refuse_without_descriptors =
                 options_.out_of_descriptors == listener_options::descriptor_shortage::refuse,
             .proxy_protocol = options_.proxy_protocol,
             .buffer_budget = options_.buffer_budget},
            options_.max_connections, options_.max_per_address) {}

template <class Codec, liveness_policy Liveness, class UserData>
listener<Codec, Liveness, UserData>::~listener() {
  stopping_.store(true);
#if !defined(TETHER_PLATFORM_WINDOWS)
  if (handover_point_)
    handover_point_->close();
#endif
  for (std::size_t i = 1; i < core_.shards.size(); ++i) {
    asio::post(core_.shards[i]->context(), [weak = std::weak_ptr<shard_type>(core_.shards[i])] {
      if (auto shard = weak.lock())
        shard->abort_all();
    });
  }
  if (workers_)
    workers_->join();
  if (!core_.shards.empty())
    core_.shards.front()->abort_all();
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_message(std::function<void(connection_type&, std::string_view)> handler) {
  core_.context.on_message = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_close(std::function<void(connection_type&, close_reason)> handler) {
  core_.context.on_close = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_accept(std::function<void(connection_type&)> handler) {
  core_.on_accept = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_heartbeat(std::function<void(connection_type&, std::chrono::microseconds)> handler) {
  core_.context.on_heartbeat = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_reject(
    std::function<void(const asio::ip::tcp::endpoint&, close_reason, std::string_view)> handler) {
  core_.on_reject = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::validate() const noexcept {
  if (auto ec = options_.validate())
    return ec;
  if (auto ec = core_.context.options.validate())
    return ec;
  return core_.context.liveness.validate();
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::on_handed_over(std::function<void()> handler) {
  on_handed_over_ = std::move(handler);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::start() {
  if (started_)
    return asio::error::already_started;
  if (stopping_.load())
    return asio::error::operation_aborted;
  if (auto ec = validate())
    return ec;

  auto workers =
      options_.shards > 1 ? std::make_shared<detail::listener_workers>(io_, options_.shards - 1) : nullptr;
  std::vector<std::shared_ptr<shard_type>> shards;
  core_.shards_planned = options_.shards;
  shards.push_back(std::make_shared<shard_type>(io_, core_, false));
  for (std::size_t i = 0; workers && i < workers->size(); ++i)
    shards.push_back(std::make_shared<shard_type>(workers->context(i), core_, true));

  bool every_shard_accepts = false;
#if !defined(TETHER_PLATFORM_WINDOWS)
  detail::handover_request predecessor;
  if (!options_.handover.path.empty()) {
    if (auto ec = predecessor.ask(options_.handover.path, options_.handover.timeout))
      return ec;
  }
  const bool taking_over = !predecessor.empty();
  if (auto ec = taking_over ? adopt(predecessor, shards, every_shard_accepts)
                            : open_first_acceptor(shards.front()->acceptor(), every_shard_accepts))
    return ec;
#else
  constexpr bool taking_over = false;
  if (auto ec = open_first_acceptor(shards.front()->acceptor(), every_shard_accepts))
    return ec;
#endif
  std::error_code ec;
  const asio::ip::tcp::endpoint bound = shards.front()->acceptor().local_endpoint(ec);
  if (ec)
    return ec;
  if (options_.balance == listener_options::balancing::least_loaded)
    every_shard_accepts = false;
  for (std::size_t i = 1; !taking_over && every_shard_accepts && i < shards.size(); ++i) {
    if (auto refused = open_sibling_acceptor(shards[i]->acceptor(), bound))
      return refused;
  }
#if !defined(TETHER_PLATFORM_WINDOWS)
  if (!options_.handover.path.empty()) {
    if (auto refused = serve_handover(shards))
      return refused;
  }
#endif

  core_.shards = std::move(shards);
  core_.shard_0_hands_out = workers && !every_shard_accepts;
  core_.least_loaded = options_.balance == listener_options::balancing::least_loaded;
  workers_ = std::move(workers);
  local_endpoint_ = bound;
  started_ = true;
  // The workers' first accepts are set up before their threads exist, which orders them before the threads.
  took_over_ = taking_over;
  for (const auto& shard : core_.shards)
    shard->begin_accepting();
  if (workers_)
    workers_->launch();
#if !defined(TETHER_PLATFORM_WINDOWS)
  predecessor.acknowledge();
#endif
  return {};
}

#if !defined(TETHER_PLATFORM_WINDOWS)
// One socket serves every shard the way a socket of this process's own would (shard 0 deals connections out);
// one per shard needs the kernel to balance them (by_kernel), as when this process binds with reuse_port.
template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::adopt(detail::handover_request& predecessor,
                                                           const std::vector<std::shared_ptr<shard_type>>& shards,
                                                           bool& every_shard_accepts) const {
  const std::size_t count = predecessor.size();
  const bool one_per_shard =
      count > 1 && count == shards.size() && options_.balance == listener_options::balancing::by_kernel;
  if (count != 1 && !one_per_shard)
    return error::handover_mismatch;
  for (std::size_t i = 0; i < count; ++i) {
    detail::owned_descriptor socket{predecessor.take(i)};
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      return detail::last_socket_error();
    const auto protocol = address.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4();
    auto& acceptor = shards[i]->acceptor();
    std::error_code ec;
    acceptor.assign(protocol, socket.get(), ec);
    if (ec)
      return ec;
    socket.release();
    const auto at = acceptor.local_endpoint(ec);
    if (ec)
      return ec;
    if (at.address() != options_.address || (options_.port != 0 && at.port() != options_.port))
      return error::handover_mismatch;
  }
  every_shard_accepts = one_per_shard;
  return {};
}

// The handover point keeps copies of the listening sockets that no reactor watches, for a successor to take.
template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::serve_handover(const std::vector<std::shared_ptr<shard_type>>& shards) {
  std::vector<detail::owned_descriptor> copies;
  for (const auto& shard : shards) {
    if (!shard->acceptor().is_open())
      continue;
    detail::owned_descriptor copy{::fcntl(shard->acceptor().native_handle(), F_DUPFD_CLOEXEC, 0)};
    if (!copy)
      return detail::last_socket_error();
    copies.push_back(std::move(copy));
  }
  auto point = std::make_shared<detail::handover_point>(io_, options_.handover.path, options_.handover.timeout,
                                                         std::move(copies), [this] { begin_stop(options_.handover.drain, true); });
  if (auto ec = point->open())
    return ec;
  handover_point_ = std::move(point);
  return {};
}
#endif

template <class Codec, liveness_policy Liveness, class UserData>
native_socket listener<Codec, Liveness, UserData>::native_handle() {
  return core_.shards.empty() ? detail::invalid_socket : core_.shards.front()->acceptor().native_handle();
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::stop(std::chrono::milliseconds deadline) {
  begin_stop(deadline, false);
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::begin_stop(std::chrono::milliseconds deadline, bool handed_over) {
  if (stopping_.exchange(true))
    return;
#if !defined(TETHER_PLATFORM_WINDOWS)
  // A stopped listener's port must close for good, so the copies kept for a successor go too.
  if (handover_point_)
    asio::post(io_, [point = handover_point_] { point->close(); });
#endif
  const auto until = std::chrono::steady_clock::now() + deadline;
  // Half the deadline to spread the clients' returns over, and the other half for the last of them to leave.
  const auto goaway = std::make_shared<const std::string>(goaway_payload({.earliest = {}, .latest = deadline / 2}));
  for (const auto& shard : core_.shards) {
    asio::post(shard->context(), [weak = std::weak_ptr<shard_type>(shard), until, goaway, handed_over] {
      auto alive = weak.lock();
      if (!alive)
        return;
      if (!handed_over) {
        alive->stop(until, *goaway);
        return;
      }
      // The stop waits behind a connection whose accept has completed but not yet run, so that it is admitted
      // and then asked to leave like the others rather than refused.
      alive->let_go_of_acceptor();
      asio::post(alive->context(), [weak, until, goaway] {
        if (auto still = weak.lock())
          still->stop(until, *goaway);
      });
    });
  }
  if (handed_over && on_handed_over_)
    on_handed_over_();
}

template <class Codec, liveness_policy Liveness, class UserData>
std::vector<asio::io_context::executor_type> listener<Codec, Liveness, UserData>::executors() const {
  std::vector<asio::io_context::executor_type> result;
  for (const auto& shard : core_.shards)
    result.push_back(shard->context().get_executor());
  return result;
}

template <class Codec, liveness_policy Liveness, class UserData>
std::vector<std::size_t> listener<Codec, Liveness, UserData>::shard_connections() const {
  std::vector<std::size_t> counts;
  for (const auto& shard : core_.shards)
    counts.push_back(shard->load());
  return counts;
}

template <class Codec, liveness_policy Liveness, class UserData>
void listener<Codec, Liveness, UserData>::for_each_connection(std::function<void(connection_type&)> visit) {
  const auto shared = std::make_shared<const std::function<void(connection_type&)>>(std::move(visit));
  for (const auto& shard : core_.shards) {
    asio::post(shard->context(), [weak = std::weak_ptr<shard_type>(shard), shared] {
      if (auto alive = weak.lock())
        alive->visit_each(*shared);
    });
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::open_first_acceptor(acceptor_type& acceptor, bool& every_shard_accepts) const {
  const asio::ip::tcp::endpoint requested{options_.address, options_.port};
  if (auto ec = open(acceptor, requested))
    return ec;
  if (options_.reuse_port) {
    const std::error_code refused = set_option(acceptor, sockopt::reuse_port{});
    if (refused && options_.shards == 1)
      return refused;
    every_shard_accepts = !refused && options_.shards > 1;
  }
  return bind_and_listen(acceptor, requested);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::open_sibling_acceptor(acceptor_type& acceptor,
                                                                const asio::ip::tcp::endpoint& bound) const {
  if (auto ec = open(acceptor, bound))
    return ec;
  if (auto ec = set_option(acceptor, sockopt::reuse_port{}))
    return ec;
  return bind_and_listen(acceptor, bound);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::open(acceptor_type& acceptor, const asio::ip::tcp::endpoint& at) const {
  std::error_code ec;
  acceptor.open(at.protocol(), ec);
  if (!ec && options_.reuse_address)
    ec = set_option(acceptor, sockopt::reuse_address{});
  return ec;
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code listener<Codec, Liveness, UserData>::bind_and_listen(acceptor_type& acceptor,
                                                          const asio::ip::tcp::endpoint& at) const {
  std::error_code ec;
  acceptor.bind(at, ec);
  if (!ec)
    acceptor.listen(options_.backlog, ec);
  return ec;
}

} // namespace tether
