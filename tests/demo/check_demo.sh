#!/usr/bin/env bash
# Runs the demo and checks that its story happened: every failure it stages was detected with the right
# reason, the refused client was refused, the stop was graceful, and it finished on its own in time.
set -euo pipefail
started=$(date +%s%N)
budget_s=$((60 * ${TETHER_TEST_TIME_SCALE:-1}))
output=$(timeout "$budget_s" "$1")
echo "TIMING | demo | measured $((($(date +%s%N) - started) / 1000000)) ms | budget $((budget_s * 1000)) ms"
echo "$output"
for expected in "closed frozen: heartbeat_timeout" "closed silent: idle_timeout" \
                "refused a connection from 127.0.0.6: limit_exceeded" "closed alice: shutdown" \
                "closed bob: shutdown" "pong in" "limit_exceeded     1"; do
  grep -qF "$expected" <<<"$output" || { echo "missing from the demo's narration: $expected"; exit 1; }
done
