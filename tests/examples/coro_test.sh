#!/usr/bin/env bash
# The coroutine echo examples end to end on loopback: the client's messages come back in order, it closes
# gracefully, and the server reports the close and stops on SIGTERM.
#   coro_test.sh CORO_ECHO_SERVER CORO_ECHO_CLIENT
set -uo pipefail
server_bin=$1 client_bin=$2
scale=${TETHER_TEST_TIME_SCALE:-1}
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*; do echo "--- $(basename "$log")"; cat "$log"; done >&2
  exit 1
}

"$server_bin" --listen 127.0.0.1:0 --heartbeat 200ms,1s >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq $((100 * scale))); do
  port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || fail "the server did not listen"

timeout $((30 * scale)) "$client_bin" --connect "127.0.0.1:$port" --messages 5 --message "co_await me" \
  --heartbeat 200ms,1s >"$work/client.out" 2>"$work/client.err" || fail "the client exited $?"
[ "$(grep -c '^echo [1-5]: co_await me (' "$work/client.out")" -eq 5 ] || fail "expected 5 echoes in order"
grep -q '^closed: local_close$' "$work/client.out" || fail "the client did not close gracefully"

for _ in $(seq $((50 * scale))); do
  grep -q '^closed 127\.0\.0\.1:[0-9]* after 5 echoes: peer_closed' "$work/server.out" && break
  sleep 0.1
done
grep -q '^closed 127\.0\.0\.1:[0-9]* after 5 echoes: peer_closed' "$work/server.out" ||
  fail "the server did not report the client's close after 5 echoes"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server exited $? after SIGTERM"
server_pid=""
grep -q '^stopped: stats{live=0 opened=1 peer_closed=1' "$work/server.out" || fail "the server's summary is wrong"
echo "PASS"
