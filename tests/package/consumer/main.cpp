// The smallest real use of an installed tether: a loopback connection whose keepalive is tuned and read back.
#include <tether/tether.hpp>

#include <asio.hpp>
#include <fmt/core.h>

int main() {
  using namespace std::chrono_literals;
  asio::io_context io;
  asio::ip::tcp::acceptor listener{io, {asio::ip::address_v4::loopback(), 0}};
  asio::ip::tcp::socket client{io};
  client.connect(listener.local_endpoint());

  const tether::sockopt::keepalive wanted{.idle = 30s, .interval = 5s, .count = 4};
  tether::sockopt::keepalive effective;
  if (auto ec = tether::set_option(client, wanted); ec || (ec = tether::get_option(client, effective))) {
    fmt::print(stderr, "tether {}: {}\n", TETHER_VERSION, ec.message());
    return 1;
  }
  fmt::print("tether {}.{}.{}: {}\n", TETHER_VERSION_MAJOR, TETHER_VERSION_MINOR, TETHER_VERSION_PATCH, effective);
  return effective == wanted ? 0 : 1;
}
