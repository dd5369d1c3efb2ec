// A three-host network built from Linux network namespaces for fault tests:
//
//   client ns  198.18.1.2 --veth-- 198.18.1.1  router ns  198.18.2.1 --veth-- 198.18.2.2  server ns
//
// The router forwards through an nftables firewall with conntrack: established flows pass, new flows only as
// a SYN from the client side, and packets of a flow conntrack no longer knows are answered with a TCP reset,
// as a stateful firewall or NAT does once it has forgotten an idle flow. 198.18.0.0/15 is the range set
// aside for benchmarking (RFC 2544); these addresses exist only inside the namespaces made here, and
// everything is removed again when the object dies (stale leftovers of a killed run are removed first).
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <memory>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace tether::fault {

inline int shell(const std::string& command) {
  const int status = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline void must(const std::string& command) {
  if (shell(command) != 0)
    throw std::runtime_error{"fault network setup failed: " + command};
}

// Why fault tests cannot run here, or empty when they can (root, ip, nft, namespaces, conntrack).
inline std::string missing_privileges() {
  if (::geteuid() != 0)
    return "needs root (network namespaces and nftables)";
  if (shell("command -v ip") != 0 || shell("command -v nft") != 0)
    return "needs iproute2 and nftables (scripts/install-deps)";
  const std::string probe = "tether-probe-" + std::to_string(::getpid());
  if (shell("ip netns add " + probe) != 0)
    return "cannot create network namespaces";
  const bool conntrack = shell("ip netns exec " + probe + " nft add table inet probe && ip netns exec " + probe +
                               " nft add chain inet probe c '{ type filter hook forward priority 0; }' && "
                               "ip netns exec " + probe + " nft add rule inet probe c ct state established accept") == 0;
  shell("ip netns del " + probe);
  return conntrack ? "" : "nftables conntrack expressions are unavailable in this kernel";
}

// Enters a namespace for the current thread while alive; sockets opened meanwhile stay in it for good.
class netns_scope {
public:
  explicit netns_scope(const std::string& name) : original_(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) {
    const int target = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    if (original_ < 0 || target < 0 || ::setns(target, CLONE_NEWNET) != 0)
      throw std::runtime_error{"cannot enter network namespace " + name};
    ::close(target);
  }
  ~netns_scope() {
    ::setns(original_, CLONE_NEWNET);
    ::close(original_);
  }
  netns_scope(const netns_scope&) = delete;
  netns_scope& operator=(const netns_scope&) = delete;

private:
  int original_;
};

class network {
public:
  static constexpr const char* client_address = "198.18.1.2";
  static constexpr const char* server_address = "198.18.2.2";

  network() : prefix_("tether-" + std::to_string(::getpid())), client(prefix_ + "-c"), router(prefix_ + "-r"), server(prefix_ + "-s") {
    remove_stale();
    try {
      build();
    } catch (...) {
      remove();
      throw;
    }
  }

  ~network() { remove(); }

  network(const network&) = delete;
  network& operator=(const network&) = delete;

private:
  void build() {
    for (const auto& ns : {client, router, server}) {
      must("ip netns add " + ns);
      must("ip -n " + ns + " link set lo up");
    }
    link(client, "c0", "198.18.1.2/24", router, "r1", "198.18.1.1/24");
    link(server, "s0", "198.18.2.2/24", router, "r2", "198.18.2.1/24");
    must("ip -n " + client + " route add default via 198.18.1.1");
    must("ip -n " + server + " route add default via 198.18.2.1");
    must("ip netns exec " + router + " sysctl -qw net.ipv4.ip_forward=1");
    // Mid-stream packets of a forgotten flow must not be adopted as new ones.
    must("ip netns exec " + router + " sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0");
    must("printf '%s\\n' 'table inet firewall {' "
         "'  chain forward {' "
         "'    type filter hook forward priority 0; policy drop;' "
         "'    ct state established,related accept' "
         "'    iifname \"r1\" ct state new tcp flags & (syn | ack) == syn accept' "
         "'    meta l4proto tcp reject with tcp reset' "
         "'  }' '}' | ip netns exec " + router + " nft -f -");
  }

  void remove() noexcept {
    for (const auto& ns : {client, router, server})
      shell("ip netns del " + ns);
  }

public:
  // How long the firewall remembers an established flow without traffic.
  void forget_idle_flows_after(std::chrono::seconds timeout) {
    must("ip netns exec " + router + " sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established=" +
         std::to_string(timeout.count()));
  }

  // The path goes silent: the router drops everything it would forward, in both directions.
  void blackhole(bool on) {
    if (on)
      must("printf '%s\\n' 'table inet blackhole {' 'chain forward {' "
           "'type filter hook forward priority -10; policy drop;' '}' '}' | ip netns exec " + router + " nft -f -");
    else
      must("ip netns exec " + router + " nft delete table inet blackhole");
  }

  // Another address of the client host, so that faults can pick out the connections made from it.
  void add_client_address(const std::string& address) {
    must("ip -n " + client + " addr add " + address + "/24 dev c0");
  }

  // What the router does to the packets from and to one client address, before its firewall sees them.
  enum class fate { blackholed, reset, lossy };
  void afflict(const std::string& address, fate what, int loss_percent = 0) {
    if (!chaos_table_) {
      must("printf '%s\\n' 'table inet chaos {' 'chain forward {' "
           "'type filter hook forward priority -20; policy accept;' '}' '}' | ip netns exec " + router + " nft -f -");
      chaos_table_ = true;
    }
    const std::string action = what == fate::blackholed ? "counter drop"
                               : what == fate::reset    ? "counter reject with tcp reset"
                                                        : "numgen random mod 100 < " + std::to_string(loss_percent) +
                                                              " counter drop";
    for (const char* side : {"saddr", "daddr"})
      must("ip netns exec " + router + " nft add rule inet chaos forward 'ip " + side + " " + address +
           " meta l4proto tcp " + action + "'");
  }

  // Packets the router dropped or answered with a reset for one client address, in both directions.
  std::uint64_t afflicted_packets(const std::string& address) const {
    const std::string command = "ip netns exec " + router + " nft list table inet chaos 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> listing{::popen(command.c_str(), "r"), &::pclose};
    std::uint64_t packets = 0;
    char line[512];
    while (listing && std::fgets(line, sizeof line, listing.get())) {
      const std::string text{line};
      const auto counted = text.find("packets ");
      if (text.find(address + " ") != std::string::npos && counted != std::string::npos)
        packets += std::stoull(text.substr(counted + 8));
    }
    return packets;
  }

  // A token bucket on the router's link towards the clients: queueing delay when the path is busy, as a
  // congested uplink has (netem is not available in every kernel; tbf is).
  void limit_rate_towards_clients(const std::string& rate) {
    must("tc -n " + router + " qdisc add dev r1 root tbf rate " + rate + " burst 16kb latency 200ms");
  }

  // The server host vanishes: its link is gone, nothing answers for its address any more.
  void remove_server_link() { must("ip -n " + router + " link del r2"); }

  asio::ip::tcp::endpoint server_endpoint(std::uint16_t port) const {
    return {asio::ip::make_address(server_address), port};
  }

  const std::string prefix_;
  const std::string client;
  const std::string router;
  const std::string server;

private:
  bool chaos_table_ = false;

  static void link(const std::string& a, const std::string& a_if, const std::string& a_addr, const std::string& b,
                   const std::string& b_if, const std::string& b_addr) {
    // Interface names are limited to 15 characters; the pid keeps parallel runs apart until the move.
    const std::string a_tmp = a_if + "x" + std::to_string(::getpid());
    const std::string b_tmp = b_if + "x" + std::to_string(::getpid());
    must("ip link add " + a_tmp + " type veth peer name " + b_tmp);
    must("ip link set " + a_tmp + " netns " + a + " name " + a_if);
    must("ip link set " + b_tmp + " netns " + b + " name " + b_if);
    must("ip -n " + a + " addr add " + a_addr + " dev " + a_if);
    must("ip -n " + b + " addr add " + b_addr + " dev " + b_if);
    must("ip -n " + a + " link set " + a_if + " up");
    must("ip -n " + b + " link set " + b_if + " up");
  }

  // Namespaces of an earlier run that was killed before it could clean up (its pid is gone).
  static void remove_stale() {
    shell("for ns in $(ip netns list | awk '/^tether-[0-9]+-/ {print $1}'); do "
          "pid=${ns#tether-}; pid=${pid%%-*}; [ -d /proc/$pid ] || ip netns del $ns; done");
  }
};

} // namespace tether::fault
