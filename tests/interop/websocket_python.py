#!/usr/bin/python3
"""tether's WebSocket codec against python3-websockets (Debian's, for /usr/bin/python3), a peer nobody here wrote.

    websocket_python.py ECHO_SERVER ECHO_CLIENT SCENARIO

Scenarios:
  client   python3-websockets connects to echo_server --codec websocket: text and binary echoes (70 KB among
           them), its own keep-alive pings answered by tether, tether's heartbeat pings answered by it over an idle
           period of several intervals, and close code 1001 when the server stops gracefully.
  errors   a raw client that breaks the protocol after a valid handshake gets the close code it calls for.
  server   echo_client --codec websocket --heartbeat talks to a python3-websockets echo server: every echo comes
           back, its pings are answered, and the server's own pings are answered by tether.
Exit status 0 on success; every wait is bounded.
"""
import asyncio, json, os, signal, socket, struct, subprocess, sys, time

import websockets

SCALE = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))


def fail(why, *logs):
    print(f"FAIL: {why}", file=sys.stderr)
    for name, text in logs:
        print(f"--- {name}\n{text}", file=sys.stderr)
    sys.exit(1)


def start_echo_server(binary, *flags):
    server = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--json", "--codec", "websocket", *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    event = json.loads(line)
    if event.get("event") != "listening":
        fail(f"unexpected first event {line!r}")
    return server, int(event["address"].rsplit(":", 1)[1])


def stop_echo_server(server):
    server.send_signal(signal.SIGTERM)
    try:
        out, err = server.communicate(timeout=15 * SCALE)
    except subprocess.TimeoutExpired:
        server.kill()
        fail("echo_server did not stop after SIGTERM")
    if server.returncode != 0:
        fail(f"echo_server exited {server.returncode}", ("stderr", err))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def echo_and_idle(ws, idle_seconds):
    for message in ["hello", "ünïcode ✓", "x" * 70_000]:
        await ws.send(message)
        if await asyncio.wait_for(ws.recv(), 5 * SCALE) != message:
            fail("text echo differs")
    blob = bytes(range(256)) * 280  # 71,680 bytes
    await ws.send(blob)
    echo = await asyncio.wait_for(ws.recv(), 5 * SCALE)
    if not isinstance(echo, bytes) or echo != blob:
        fail("binary echo differs or came back as text")
    await asyncio.sleep(idle_seconds)  # nobody's code answers a ping meanwhile
    await ws.send("after the idle period")
    if await asyncio.wait_for(ws.recv(), 5 * SCALE) != "after the idle period":
        fail("no echo after the idle period")


def scenario_client(server_binary):
    server, port = start_echo_server(server_binary, "--heartbeat", "200ms,1s")

    async def run():
        uri = f"ws://127.0.0.1:{port}/"
        # Its own keep-alive: a ping every 200 ms that tether must answer within a second, or the library closes.
        async with websockets.connect(uri, ping_interval=0.2, ping_timeout=1.0 * SCALE, max_size=2**20) as ws:
            await echo_and_idle(ws, 1.5)
        # Silent: now tether's heartbeat pings, every 200 ms of silence, and the library answers by itself.
        ws = await websockets.connect(uri, ping_interval=None, max_size=2**20)
        await echo_and_idle(ws, 1.5)
        server.send_signal(signal.SIGTERM)  # a graceful stop: close 1001
        try:
            await asyncio.wait_for(ws.recv(), 10 * SCALE)
            fail("the server sent a message instead of closing")
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    code = asyncio.run(run())
    events = stop_echo_server(server)
    if code != 1001:
        fail(f"expected close code 1001 on a graceful stop, got {code}", ("server", json.dumps(events, indent=1)))
    beats = [e for e in events if e["event"] == "heartbeat"]
    if len(beats) < 3:
        fail(f"expected at least 3 heartbeats answered by python3-websockets, got {len(beats)}")
    closes = [e for e in events if e["event"] == "closed"]
    if [c["reason"] for c in closes] != ["peer_closed", "shutdown"] or closes[0].get("close_code") != 1000:
        fail(f"unexpected close events {closes}")
    print(f"client: python3-websockets' own pings answered by tether; {len(beats)} tether heartbeats answered by "
          "it; close 1001 on stop")


def raw_upgrade(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            fail("the server closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        fail(f"handshake refused: {head!r}")
    return sock, head.split(b"\r\n\r\n", 1)[1]


def close_code_after(sock, rest):
    data = rest
    deadline = time.monotonic() + 5 * SCALE
    while time.monotonic() < deadline:
        if len(data) >= 4 and data[0] & 0x0F == 8:
            return struct.unpack("!H", data[2:4])[0]
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return None


def masked(opcode_byte, payload):
    key = b"\x01\x02\x03\x04"
    return bytes([opcode_byte, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def scenario_errors(server_binary):
    server, port = start_echo_server(server_binary)
    cases = {
        "unmasked frame": (b"\x81\x02hi", 1002),
        "invalid UTF-8": (masked(0x81, b"\xc0\xaf"), 1007),
        "fragmented ping": (masked(0x09, b"p"), 1002),
        "reserved opcode": (masked(0x83, b"x"), 1002),
        "message over max size": (b"\x82\xff" + struct.pack("!Q", 1 << 28), 1009),
    }
    for name, (frame, expected) in cases.items():
        sock, rest = raw_upgrade(port)
        sock.sendall(frame)
        code = close_code_after(sock, rest)
        sock.close()
        if code != expected:
            fail(f"{name}: expected close code {expected}, got {code}")
    events = stop_echo_server(server)
    errors = [e for e in events if e["event"] == "closed" and e["reason"] == "protocol_error"]
    if len(errors) != len(cases):
        fail(f"expected {len(cases)} protocol_error closes, got {errors}")
    print(f"errors: {len(cases)} protocol violations closed with 1002/1007/1009")


def scenario_server(client_binary):
    async def echo(ws, path=None):
        async for message in ws:
            await ws.send(message)

    async def run(ping_interval):
        async with websockets.serve(echo, "127.0.0.1", 0, ping_interval=ping_interval,
                                    ping_timeout=1.0 * SCALE) as server:
            port = server.sockets[0].getsockname()[1]
            client = await asyncio.create_subprocess_exec(
                client_binary, "--connect", f"127.0.0.1:{port}", "--codec", "websocket", "--heartbeat", "200ms,1s",
                "--messages", "3", "--pause", "700ms", "--json", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(client.communicate(), 30 * SCALE)
            if client.returncode != 0:
                fail(f"echo_client exited {client.returncode} (server ping_interval {ping_interval})",
                     ("stdout", out.decode()), ("stderr", err.decode()))
            return [json.loads(line) for line in out.decode().splitlines() if line.strip()]

    # The python server pings every 200 ms: tether must answer, or the library closes the connection (1011).
    pinged = asyncio.run(run(0.2))
    # The python server never pings: tether's client pings through each pause, and the library answers.
    silent = asyncio.run(run(None))
    for events in (pinged, silent):
        if len([e for e in events if e["event"] == "echo"]) != 3:
            fail("expected 3 echoes", ("events", json.dumps(events)))
    beats = [e for e in silent if e["event"] == "heartbeat"]
    if len(beats) < 2:
        fail(f"expected 2+ tether heartbeats answered by the python server, got {len(beats)}")
    print(f"server: the python server's pings answered by tether; {len(beats)} tether heartbeats answered by it")


if __name__ == "__main__":
    server_binary, client_binary, scenario = sys.argv[1:4]
    {"client": lambda: scenario_client(server_binary),
     "errors": lambda: scenario_errors(server_binary),
     "server": lambda: scenario_server(client_binary)}[scenario]()
