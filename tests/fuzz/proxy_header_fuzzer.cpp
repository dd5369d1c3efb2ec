// libFuzzer target for the PROXY protocol header parser, which reads bytes from balancers before anything else
// does. Whatever arrives, parsing must stay inside the bytes, never claim more than it was given or than the
// limits allow, explain every refusal, and decide the same however the bytes are split: every prefix of a
// complete header is incomplete, and bytes after it change nothing.
//
// The first input byte picks max_header_size (232 + value * 4); the rest is the stream.
#include <tether/detail/proxy_header.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

void require(bool holds, const char* invariant) {
  if (!holds) {
    std::fprintf(stderr, "proxy header invariant violated: %s\n", invariant);
    std::abort();
  }
}

bool same(const tether::detail::proxy_header& a, const tether::detail::proxy_header& b) {
  return a.status == b.status && a.length == b.length && a.version == b.version && a.local == b.local &&
         a.source == b.source && a.destination == b.destination && std::strcmp(a.problem, b.problem) == 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  using namespace tether::detail;
  const std::size_t max_size = 232 + static_cast<std::size_t>(data[0]) * 4;
  const std::string_view stream{reinterpret_cast<const char*>(data + 1), size - 1};
  const proxy_header whole = parse_proxy_header(stream, max_size);

  switch (whole.status) {
  case proxy_header_status::invalid:
    require(std::strlen(whole.problem) > 0, "a refusal says why");
    break;
  case proxy_header_status::incomplete:
    require(stream.size() < std::max(proxy_v1_max_size, max_size), "an incomplete header fits its limit");
    require(proxy_signature_in(stream) != proxy_signature::absent, "an incomplete header could still be one");
    break;
  case proxy_header_status::complete: {
    require(whole.length > 0 && whole.length <= stream.size(), "a header spans bytes that arrived");
    require(whole.version == 1 || whole.version == 2, "a header has a version");
    require(whole.length <= (whole.version == 1 ? proxy_v1_max_size : max_size), "a header fits its limit");
    require(proxy_signature_in(stream) == proxy_signature::present, "a header begins with its signature");
    require(same(parse_proxy_header(stream.substr(0, whole.length), max_size), whole),
            "what follows a header changes nothing");
    for (std::size_t cut = 0; cut < whole.length; ++cut)
      require(parse_proxy_header(stream.substr(0, cut), max_size).status == proxy_header_status::incomplete,
              "every prefix of a header is incomplete");
    break;
  }
  }
  return 0;
}
