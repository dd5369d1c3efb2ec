// An on_deadline that is not const (or not noexcept) is not the hook the contract names, and would silently
// never run: this must not compile, and the message must name the hook and its declaration. Built with
// TETHER_EXPECT_COMPILES the same strategy declares it const noexcept and must compile.
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/strategy.hpp>

namespace {
struct max_silence {
  std::chrono::milliseconds limit{std::chrono::seconds{30}};
  struct state {};
  static constexpr bool needs_control_frames = false;

  tether::liveness_clock::time_point next_deadline(const state&, const tether::activity& seen) const noexcept {
    return seen.received + limit;
  }

#ifdef TETHER_EXPECT_COMPILES
  tether::verdict on_deadline(state&, const tether::activity& seen, tether::liveness_clock::time_point now) const noexcept {
#else
  tether::verdict on_deadline(state&, const tether::activity& seen, tether::liveness_clock::time_point now) noexcept {
#endif
    return now >= seen.received + limit ? tether::verdict::close(tether::close_reason::idle_timeout, "silent")
                                        : tether::verdict::none();
  }
};
} // namespace

int main() {
  const tether::liveness policy{max_silence{}};
  return decltype(policy)::timed ? 0 : 1;
}
