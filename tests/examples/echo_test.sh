#!/usr/bin/env bash
# Runs echo_server and echo_client on loopback and checks their command lines, exit statuses and events.
#   echo_test.sh ECHO_SERVER ECHO_CLIENT SCENARIO
# Every server listens on port 0 and the port is read from its "listening" event, so scenarios run in parallel.
# Every wait is bounded; the trap kills whatever a scenario left running.
set -uo pipefail

server_bin=$1 client_bin=$2 scenario=$3
# Sanitizer builds run slower: every wall-clock budget below is multiplied by this factor (tests/CMakeLists.txt).
scale=${TETHER_TEST_TIME_SCALE:-1}
work=$(mktemp -d)
server_pid=""

cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL ($scenario): $*" >&2
  for log in "$work"/*; do
    [ -f "$log" ] && { echo "--- $(basename "$log")"; tail -n 40 "$log"; }
  done >&2
  exit 1
}

# Every line of the file is a JSON object with an "event" field.
check_json_lines() {
  python3 - "$1" <<'EOF' || fail "$1 holds a line that is not a JSON event"
import json, sys
with open(sys.argv[1]) as lines:
    for number, line in enumerate(lines, 1):
        event = json.loads(line)
        if not isinstance(event, dict) or "event" not in event:
            sys.exit(f"line {number} has no event field: {line}")
EOF
}

# How many events of a kind the file holds, optionally with one field equal to a value: count FILE EVENT [FIELD VALUE]
count() {
  python3 - "$@" <<'EOF'
import json, sys
path, kind = sys.argv[1], sys.argv[2]
field, value = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
with open(path) as lines:
    events = [json.loads(line) for line in lines if line.strip()]
print(sum(1 for e in events if e["event"] == kind and (field is None or str(e.get(field)) == value)))
EOF
}

# start_server ARGS...: runs the server with --json on a free port and sets $port once it listens.
start_server() {
  : >"$work/server.out"
  "$server_bin" --listen 127.0.0.1:0 --json "$@" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq $((100 * scale))); do
    port=$(sed -n 's/.*"event":"listening","address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/server.out")
    [ -n "$port" ] && return
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening"
    sleep 0.1
  done
  fail "the server did not listen within $((10 * scale))s"
}

# stop_server: SIGTERM, then waits (bounded), sets $server_status and checks that the output is JSON events.
stop_server() {
  kill -TERM "$server_pid"
  for _ in $(seq $((100 * scale))); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && fail "the server still runs $((10 * scale))s after SIGTERM"
  wait "$server_pid"
  server_status=$?
  server_pid=""
  check_json_lines "$work/server.out"
}

# run_client NAME ARGS...: runs the client with --json, bounded, and sets $client_status; output in $work/NAME.out.
run_client() {
  local name=$1
  shift
  timeout $((60 * scale)) "$client_bin" --connect "127.0.0.1:$port" --json "$@" >"$work/$name.out" 2>"$work/$name.err"
  client_status=$?
  [ "$client_status" -eq 124 ] && fail "$name did not finish within $((60 * scale))s"
  check_json_lines "$work/$name.out"
}

# expect_usage_error BINARY FLAG ARGS...: exit status 2 and one line on stderr that names FLAG.
expect_usage_error() {
  local binary=$1 flag=$2
  shift 2
  timeout 10 "$binary" "$@" >"$work/usage.out" 2>"$work/usage.err"
  local status=$?
  [ "$status" -eq 2 ] || fail "$(basename "$binary") $* exited $status, expected 2"
  [ "$(wc -l <"$work/usage.err")" -eq 1 ] || fail "$(basename "$binary") $* printed more or less than one line"
  grep -q -- "$flag" "$work/usage.err" || fail "$(basename "$binary") $*: the error does not name $flag"
}

case $scenario in
usage)
  s=$server_bin c=$client_bin
  expect_usage_error "$s" --listen
  expect_usage_error "$s" --listen --listen 127.0.0.1
  expect_usage_error "$s" --listen --listen
  expect_usage_error "$s" --threads --listen 127.0.0.1:0 --threads 0
  expect_usage_error "$s" --codec --listen 127.0.0.1:0 --codec json
  expect_usage_error "$s" --keepalive --listen 127.0.0.1:0 --keepalive 60s,10s
  expect_usage_error "$s" --keepalive --listen 127.0.0.1:0 --keepalive 10h,10s,3
  expect_usage_error "$s" --user-timeout --listen 127.0.0.1:0 --user-timeout 5sec
  expect_usage_error "$s" --heartbeat --listen 127.0.0.1:0 --heartbeat 0s,1s
  expect_usage_error "$s" --min-peer-ping --listen 127.0.0.1:0 --min-peer-ping 1s
  expect_usage_error "$s" --min-peer-ping --listen 127.0.0.1:0 --heartbeat 15s,5s --min-peer-ping 1.5s
  expect_usage_error "$s" --idle-timeout --listen 127.0.0.1:0 --idle-timeout 1.5s
  expect_usage_error "$s" --max-per-address --listen 127.0.0.1:0 --max-per-address -1
  expect_usage_error "$s" --buffer-budget --listen 127.0.0.1:0 --buffer-budget 64MB
  expect_usage_error "$s" --max-age --listen 127.0.0.1:0 --max-age 0s
  expect_usage_error "$s" --max-age --listen 127.0.0.1:0 --max-age 1s,2s,3s
  expect_usage_error "$s" --middlebox-timeout --listen 127.0.0.1:0 --middlebox-timeout 0s
  expect_usage_error "$s" --verbose --listen 127.0.0.1:0 --verbose
  expect_usage_error "$s" --tls-cert --listen 127.0.0.1:0 --tls-cert cert.pem
  expect_usage_error "$s" --proxy-protocol --listen 127.0.0.1:0 --proxy-protocol 10.0.0.0/33
  expect_usage_error "$s" --proxy-protocol --listen 127.0.0.1:0 --proxy-protocol 10.0.0.0/8,
  expect_usage_error "$c" --tls-ca --connect 127.0.0.1:7000 --tls-ca ca.pem
  expect_usage_error "$c" --connect --messages 2
  expect_usage_error "$c" --connect --connect localhost:7000
  expect_usage_error "$c" --bind --connect 127.0.0.1:7000 --bind 127.0.0.1:5
  expect_usage_error "$c" --connections --connect 127.0.0.1:7000 --connections 0
  expect_usage_error "$c" --messages --connect 127.0.0.1:7000 --messages
  expect_usage_error "$c" --pause --connect 127.0.0.1:7000 --pause 1m
  expect_usage_error "$c" --timeout --connect 127.0.0.1:7000 --timeout 0s
  expect_usage_error "$c" --middlebox-timeout --connect 127.0.0.1:7000 --middlebox-timeout 1min30s
  expect_usage_error "$c" --adaptive-heartbeat --connect 127.0.0.1:7000 --adaptive-heartbeat 1s
  expect_usage_error "$c" --adaptive-heartbeat --connect 127.0.0.1:7000 --adaptive-heartbeat 0s,1s
  expect_usage_error "$c" --adaptive-heartbeat --connect 127.0.0.1:7000 --adaptive-heartbeat 5s,1s
  expect_usage_error "$c" --message --connect 127.0.0.1:7000 --message "$(printf 'two\nlines')"
  for binary in "$s" "$c"; do
    timeout 10 "$binary" --help >"$work/help.out" 2>&1 || fail "$(basename "$binary") --help did not exit 0"
    grep -q "^usage: $(basename "$binary") " "$work/help.out" ||
      fail "$(basename "$binary") --help prints no usage line"
  done
  ;;

round-trip)
  # Besides the defaults: two shards sharing the port, the length codec, every kernel strategy, a source address.
  for variant in "" "--threads 2 --codec length --keepalive 30s,5s,4 --user-timeout 10s"; do
    # shellcheck disable=SC2086 # the variant is a list of flags
    start_server $variant
    client_flags=$([ -n "$variant" ] && echo "--codec length --keepalive 30s,5s,4 --user-timeout 10s --bind 127.0.0.2")
    # shellcheck disable=SC2086
    run_client client --connections 3 --messages 4 --pause 0ms --message "echo me" $client_flags
    [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
    [ "$(count "$work/client.out" echo)" -eq 12 ] || fail "expected 12 echo events"
    [ "$(count "$work/client.out" connected)" -eq 3 ] || fail "expected 3 connected events"
    python3 - "$work/client.out" <<'EOF' || fail "an echo event lacks a positive rtt_us"
import json, sys
echoes = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "echo"]
sys.exit(not all(isinstance(e["rtt_us"], int) and e["rtt_us"] > 0 for e in echoes))
EOF
    if [ -n "$variant" ]; then
      grep -q '"event":"connected".*"keepalive":"30s,5s,4","user_timeout":"10s"' "$work/client.out" ||
        fail "the client's connected events do not show the effective keepalive and user timeout"
      grep -q '"event":"listening".*"port_shared":"with any process that binds it with SO_REUSEPORT".*"reuse_port":"on"' \
        "$work/server.out" || fail "two shards but the listening event shows no reuse_port or shared port"
      [ "$(grep -c '"event":"accepted","remote":"127\.0\.0\.2:' "$work/server.out")" -eq 3 ] ||
        fail "the connections did not come from the --bind address"
    else
      grep -q '"event":"listening".*"port_shared":"no"' "$work/server.out" || fail "one shard, yet a shared port"
    fi
    stop_server
    [ "$server_status" -eq 0 ] || fail "the server exited $server_status after SIGTERM"
    [ "$(count "$work/server.out" accepted)" -eq 3 ] || fail "expected 3 accepted events"
    [ "$(count "$work/server.out" closed reason peer_closed)" -eq 3 ] || fail "expected 3 peer_closed events"
    [ "$(count "$work/server.out" stopped echoed 12)" -eq 1 ] || fail "the summary does not count 12 echoes"
  done
  # --reuse-port with one shard: a second server binds the same port while the first serves.
  start_server --reuse-port
  grep -q '"event":"listening".*"port_shared":"with any process that binds it with SO_REUSEPORT".*"reuse_port":"on"' \
    "$work/server.out" || fail "--reuse-port but the listening event shows no shared port"
  timeout 10 "$server_bin" --listen "127.0.0.1:$port" --reuse-port --json >"$work/second.out" 2>&1 &
  second_pid=$!
  for _ in $(seq $((50 * scale))); do
    grep -q '"event":"listening"' "$work/second.out" && break
    sleep 0.1
  done
  grep -q "\"event\":\"listening\",\"address\":\"127.0.0.1:$port\"" "$work/second.out" ||
    fail "a second --reuse-port server could not bind the port: $(cat "$work/second.out")"
  kill -TERM "$second_pid"
  wait "$second_pid" || fail "the second server did not exit 0 after SIGTERM"
  stop_server
  [ "$server_status" -eq 0 ] || fail "the --reuse-port server exited $server_status after SIGTERM"
  ;;

closed-port)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run_client client --messages 1
  [ "$client_status" -eq 1 ] || fail "the client exited $client_status against a closed port, expected 1"
  [ "$(count "$work/client.out" connect_failed)" -eq 1 ] || fail "expected one connect_failed event"
  [ -s "$work/client.err" ] || fail "the client did not say why it failed"
  ;;

idle-timeout)
  start_server --idle-timeout 300ms
  run_client plain --messages 3 --pause 1s
  [ "$client_status" -eq 1 ] || fail "without --reconnect the client exited $client_status, expected 1"
  [ "$(count "$work/plain.out" failed)" -eq 1 ] || fail "the client did not report the failure"
  run_client reconnecting --messages 3 --pause 1s --reconnect
  [ "$client_status" -eq 0 ] || fail "with --reconnect the client exited $client_status, expected 0"
  [ "$(count "$work/reconnecting.out" echo)" -eq 3 ] || fail "with --reconnect expected 3 echoes"
  stop_server
  [ "$(count "$work/server.out" closed reason idle_timeout)" -ge 3 ] || fail "expected idle_timeout closes"
  python3 - "$work/server.out" "$scale" <<'EOF' || fail "an idle_timeout close does not report after_ms near 300"
import json, sys
closes = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "closed" and e["reason"] == "idle_timeout"]
# after_ms is the silence before the close; a connection that never received a byte has none to report.
silences = [e["after_ms"] for e in closes if "after_ms" in e]
late = 300 + 700 * int(sys.argv[2])
print("TIMING | idle_timeout after_ms | " + ", ".join(map(str, silences)) + f" | budget 250..{late} ms")
sys.exit(not silences or not all(250 <= ms <= late for ms in silences) or not all(e["detail"] for e in closes))
EOF
  ;;

limits)
  start_server --max-per-address 1
  run_client plain --connections 3 --messages 2 --pause 200ms
  [ "$client_status" -eq 1 ] || fail "two of three connections were refused, yet the client exited $client_status"
  [ "$(count "$work/server.out" rejected reason limit_exceeded)" -ge 2 ] || fail "expected limit_exceeded rejections"
  [ "$(count "$work/server.out" rejected detail "over max_per_address")" -ge 2 ] || fail "rejections do not name the limit"
  run_client reconnecting --connections 3 --messages 2 --pause 200ms --reconnect
  [ "$client_status" -eq 0 ] || fail "with --reconnect the refused connections should get their turn"
  stop_server
  [ "$(count "$work/server.out" stopped)" -eq 1 ] || fail "no summary"
  ;;

buffer-budget)
  # Four hoarders of 700 kB partial frames against a 2 MB budget: the largest holders are closed, and a client
  # sending whole messages is still served.
  start_server --codec length --buffer-budget 2000000
  python3 - "$port" "$scale" <<'EOF' || fail "the hoarding scenario did not go as expected"
import socket, struct, sys, time
port, scale = int(sys.argv[1]), int(sys.argv[2])
hoarders = []
for _ in range(4):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * scale)
    s.sendall(struct.pack(">IB", 1 << 20, 0) + b"h" * 700_000)
    hoarders.append(s)
    time.sleep(0.2)
client = socket.create_connection(("127.0.0.1", port), timeout=10 * scale)
message = b"m" * 10_000
for _ in range(5):
    client.sendall(struct.pack(">IB", len(message), 0) + message)
    echoed = b""
    while len(echoed) < len(message) + 5:
        chunk = client.recv(65536)
        if not chunk:
            sys.exit("the honest client's connection ended")
        echoed += chunk
    if echoed[5:] != message:
        sys.exit("the echo differs")
closed = 0
for s in hoarders:
    s.settimeout(0.5 * scale)
    try:
        closed += s.recv(1) == b""
    except ConnectionResetError:
        closed += 1
    except socket.timeout:
        pass
print(f"hoarders closed: {closed} of 4")
sys.exit(0 if closed >= 1 else "expected a hoarder closed, none was")
EOF
  stop_server
  [ "$(count "$work/server.out" closed reason over_budget)" -ge 1 ] || fail "expected over_budget closes"
  ;;

max-age)
  # Connections older than 1 s (each within +-10 %) are asked to leave; the reconnecting client moves on each
  # time and gets every echo.
  start_server --max-age 1s,1s
  run_client reconnecting --connections 2 --messages 25 --pause 100ms --reconnect
  [ "$client_status" -eq 0 ] || fail "the reconnecting client exited $client_status"
  [ "$(count "$work/reconnecting.out" goaway)" -ge 2 ] || fail "expected goaways at the maximum age"
  [ "$(count "$work/reconnecting.out" echo)" -eq 50 ] || fail "expected all 50 echoes across the reconnects"
  stop_server
  [ "$(count "$work/server.out" closed reason max_age)" -ge 2 ] || fail "expected closes with max_age"
  ;;

sigterm)
  start_server
  timeout $((60 * scale)) "$client_bin" --connect "127.0.0.1:$port" --json --messages 100 --pause 100ms \
    >"$work/client.out" 2>"$work/client.err" &
  client_pid=$!
  for _ in $(seq 100); do
    [ "$(count "$work/server.out" accepted)" -eq 1 ] && break
    sleep 0.1
  done
  started=$(date +%s%N)
  stop_server
  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  [ "$server_status" -eq 0 ] || fail "the server exited $server_status after SIGTERM, expected 0"
  last_event=$(tail -n 1 "$work/server.out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["event"])')
  [ "$last_event" = stopped ] ||
    fail "the server's last line is not the stopped summary"
  [ "$(count "$work/server.out" closed reason shutdown)" -eq 1 ] ||
    fail "the client's connection did not close with shutdown"
  echo "TIMING | sigterm with a client that leaves after goaway | measured ${elapsed_ms} ms | budget $((4000 * scale)) ms"
  [ "$elapsed_ms" -lt $((4000 * scale)) ] || fail "the server took ${elapsed_ms}ms although its client left after goaway"
  wait "$client_pid"
  client_status=$?
  [ "$client_status" -eq 1 ] || fail "the client exited $client_status after goaway without --reconnect, expected 1"
  [ "$(count "$work/client.out" goaway)" -eq 1 ] || fail "the client saw no goaway"
  ;;

heartbeat)
  start_server --heartbeat 200ms,1s
  run_client client --heartbeat 200ms,1s --messages 2 --pause 1s
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
  python3 - "$work/client.out" <<'EOF' || fail "expected heartbeat events with a positive rtt_us"
import json, sys
beats = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "heartbeat"]
sys.exit(not beats or not all(isinstance(e["rtt_us"], int) and e["rtt_us"] > 0 for e in beats))
EOF
  stop_server
  [ "$(count "$work/server.out" closed reason peer_closed)" -eq 1 ] || fail "heartbeats should keep the connection up"
  ;;

min-peer-ping)
  # A client pinging every 200ms is told after its burst of 3 that the server takes one ping a second, and
  # keeps the connection by pinging once a second from then on: about 6 pings in the 4s idle instead of 20.
  start_server --heartbeat 15s,5s --min-peer-ping 1s
  run_client client --heartbeat 200ms,1s --messages 2 --pause 4s
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
  [ "$(count "$work/client.out" connected)" -eq 1 ] || fail "the connection should have lasted"
  python3 - "$work/client.out" <<'EOF' || fail "expected one heartbeat_interval of at least 1000ms for too_many_pings and 4 to 10 heartbeats"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
changes = [e for e in events if e["event"] == "heartbeat_interval"]
beats = [e for e in events if e["event"] == "heartbeat"]
sys.exit(len(changes) != 1 or changes[0]["interval_ms"] < 1000 or "too_many_pings" not in changes[0]["why"] or
         not 4 <= len(beats) <= 10)
EOF
  stop_server
  [ "$(count "$work/server.out" closed reason peer_closed)" -eq 1 ] || fail "the slowed-down client should close itself"
  [ "$(count "$work/server.out" closed reason ping_flood)" -eq 0 ] || fail "a client that slowed down is no flood"
  ;;

adaptive-heartbeat)
  # Loopback forgets no flow: every probe holds (1s, 2s, then the 2.67s that lets the connection run at MAX),
  # and the connection's interval grows through 750ms and 1500ms to 2000ms. The server never pings, so the
  # idle periods are the client's own. Each probe is a connection of its own to the server.
  start_server
  run_client client --adaptive-heartbeat 500ms,2s --messages 2 --pause 7s
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
  [ "$(count "$work/client.out" connected)" -eq 1 ] || fail "the protected connection should have lasted"
  python3 - "$work/client.out" <<'EOF' || fail "expected heartbeat_interval 750, 1500, 2000 ms (proven_longer) after 1, 2, 3 probes"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
changes = [(e["interval_ms"], e["why"], e["probes"], e["probes_failed"]) for e in events
           if e["event"] == "heartbeat_interval"]
print(changes, file=sys.stderr)
sys.exit(changes != [(750, "proven_longer", 1, 0), (1500, "proven_longer", 2, 0), (2000, "proven_longer", 3, 0)])
EOF
  stop_server
  [ "$(count "$work/server.out" closed reason peer_closed)" -eq 4 ] ||
    fail "expected the connection and its 3 probes to close gracefully at the server"
  ;;

websocket)
  start_server --codec websocket --heartbeat 200ms,1s
  run_client client --codec websocket --heartbeat 200ms,1s --connections 2 --messages 3 --pause 400ms \
    --message "über WebSocket"
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
  [ "$(count "$work/client.out" echo)" -eq 6 ] || fail "expected 6 echoes"
  stop_server
  # Whichever side's interval runs out first pings; the other's bytes keep its own heartbeat quiet.
  beats=$(($(count "$work/client.out" heartbeat) + $(count "$work/server.out" heartbeat)))
  [ "$beats" -ge 2 ] || fail "expected pings to be answered over WebSocket, got $beats"
  [ "$(count "$work/server.out" closed reason peer_closed)" -eq 2 ] || fail "expected 2 peer_closed closes"
  [ "$(count "$work/server.out" closed close_code 1000)" -eq 2 ] || fail "the clients' close frames should say 1000"
  ;;

config-check)
  # A keepalive idle at the declared timeout is reported before the server listens, and it serves anyway.
  start_server --keepalive 60s,10s,3 --middlebox-timeout 60s
  python3 - "$work/server.out" <<'EOF' || fail "expected one config_check first: error keepalive_idle_too_long, with the numbers"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
checks = [e for e in events if e["event"] == "config_check"]
first = events[0]
sys.exit(len(checks) != 1 or first != checks[0] or first["severity"] != "error" or
         first["finding"] != "keepalive_idle_too_long" or
         "keepalive idle 60s is not below the path's idle timeout of 60s" not in first["message"])
EOF
  # Neither mechanism keeps a 1min path, and the user timeout cuts keepalive's count: the client says all three
  # and runs anyway.
  run_client client --heartbeat 90s,5s --keepalive 60s,10s,3 --user-timeout 20s --middlebox-timeout 1min \
    --messages 1 --pause 100ms
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0: findings do not stop it"
  for finding in keepalive_idle_too_long heartbeat_interval_too_long user_timeout_cuts_keepalive; do
    [ "$(count "$work/client.out" config_check finding $finding)" -eq 1 ] || fail "the client did not report $finding"
  done
  [ "$(count "$work/client.out" config_check)" -eq 3 ] || fail "expected exactly three findings"
  stop_server
  # A configuration that fits the path reports nothing.
  start_server --keepalive 45s,5s,3 --heartbeat 15s,5s --middlebox-timeout 60s
  run_client client --keepalive 45s,5s,3 --user-timeout 60s --middlebox-timeout 60s --messages 1 --pause 100ms
  [ "$client_status" -eq 0 ] || fail "the client exited $client_status, expected 0"
  [ "$(count "$work/client.out" config_check)" -eq 0 ] || fail "a configuration that fits the path was reported"
  stop_server
  [ "$(count "$work/server.out" config_check)" -eq 0 ] || fail "a configuration that fits the path was reported"
  ;;

*)
  fail "unknown scenario"
  ;;
esac
echo "PASS ($scenario)"
