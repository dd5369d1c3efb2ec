// A strategy whose next_deadline is misspelled would never be asked for a deadline, so its on_deadline would
// never run: this must not compile, and the message must name the hook. Built with TETHER_EXPECT_COMPILES the
// same strategy spells it right and must compile, which shows the failure comes from the spelling alone.
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/strategy.hpp>

namespace {
struct max_silence {
  std::chrono::milliseconds limit{std::chrono::seconds{30}};
  struct state {};
  static constexpr bool needs_control_frames = false;

#ifdef TETHER_EXPECT_COMPILES
  tether::liveness_clock::time_point next_deadline(const state&, const tether::activity& seen) const noexcept {
#else
  tether::liveness_clock::time_point next_dealine(const state&, const tether::activity& seen) const noexcept {
#endif
    return seen.received + limit;
  }

  tether::verdict on_deadline(state&, const tether::activity& seen, tether::liveness_clock::time_point now) const noexcept {
    return now >= seen.received + limit ? tether::verdict::close(tether::close_reason::idle_timeout, "silent")
                                        : tether::verdict::none();
  }
};
} // namespace

int main() {
  const tether::liveness policy{max_silence{}};
  return decltype(policy)::timed ? 0 : 1;
}
