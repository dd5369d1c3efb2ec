// The budget's bookkeeping without sockets: who is closed to make room, who is refused, and that every byte comes
// back when a share is left or destroyed.
#include "catch.hpp"

#include <tether/buffer_budget.hpp>
#include <tether/stats.hpp>

#include <array>
#include <cstddef>
#include <vector>

namespace {

// Stands in for a connection: it holds a share and, when the budget closes it, lets go of it.
struct holder {
  tether::detail::budget_share share;
  bool evicted = false;
  bool lets_go = true;

  static void evict(void* self) noexcept {
    auto& h = *static_cast<holder*>(self);
    h.evicted = true;
    if (h.lets_go)
      h.share.leave();
  }
  void hold(tether::buffer_budget& budget, std::size_t bytes) { budget.settle(share, bytes, this, &holder::evict); }
};

} // namespace

TEST_CASE("a buffer budget closes the largest holders larger than the asker, and refuses the largest asker") {
  tether::stats stats;
  tether::buffer_budget budget{1000, &stats};
  std::array<holder, 3> h;
  h[0].hold(budget, 500);
  h[1].hold(budget, 300);
  h[2].hold(budget, 100);
  CHECK(budget.used() == 900);
  CHECK(stats.buffered_bytes() == 900);

  // 100 more fits without closing anyone.
  CHECK(budget.make_room(h[2].share, 100));
  h[2].hold(budget, 200);
  CHECK(budget.used() == 1000);

  // 250 more for the holder of 200: the largest (500) goes, and that is enough.
  CHECK(budget.make_room(h[2].share, 250));
  CHECK(h[0].evicted);
  CHECK_FALSE(h[1].evicted);
  CHECK(budget.evictions() == 1);
  h[2].hold(budget, 450);
  CHECK(budget.used() == 750);

  // 300 more for the largest holder (450): no one holds more, so it is refused and nobody is closed.
  CHECK_FALSE(budget.make_room(h[2].share, 300));
  CHECK_FALSE(h[1].evicted);
  CHECK(budget.refusals() == 1);

  // A holder equal to what the asker would hold is not closed for it either.
  holder asker;
  asker.hold(budget, 150);
  CHECK_FALSE(budget.make_room(asker.share, 300));  // would hold 450, as much as h[2]
  CHECK_FALSE(h[2].evicted);
  CHECK(budget.peak() == 1000);

  // Shares give everything back when they hold nothing, when they leave and when they are destroyed.
  asker.hold(budget, 0);
  CHECK(budget.used() == 750);
  h[1].share.leave();
  CHECK(budget.used() == 450);
  {
    holder brief;
    brief.hold(budget, 100);
    CHECK(budget.used() == 550);
  }
  CHECK(budget.used() == 450);
  CHECK(stats.buffered_bytes() == 450);
}

TEST_CASE("a buffer budget does not spin on a holder that keeps its share when closed") {
  tether::buffer_budget budget{100};
  holder stubborn;
  stubborn.lets_go = false;
  stubborn.hold(budget, 90);
  holder asker;
  CHECK(budget.make_room(asker.share, 50));
  CHECK(stubborn.evicted);
  CHECK(budget.used() == 0);
}

TEST_CASE("a buffer budget that goes first lets its shares go") {
  holder outliving;
  {
    tether::buffer_budget budget{100};
    outliving.hold(budget, 40);
  }
  outliving.share.leave();
  CHECK(outliving.share.bytes() == 0);
}
