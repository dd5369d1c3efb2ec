#!/usr/bin/env python3
"""The pub/sub example end to end: subscribers spread over both shards all get a publish, unsubscribing stops it,
the stats line counts topics and subscribers, and the server stops on SIGTERM.  pubsub_test.py PUBSUB_BINARY"""
import os, re, signal, socket, subprocess, sys, time

scale = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))
server = subprocess.Popen([sys.argv[1], "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
try:
    first = server.stdout.readline()
    match = re.match(r"listening 127\.0\.0\.1:(\d+) on 2 shards", first)
    if not match:
        sys.exit(f"FAIL: unexpected first line {first!r}")
    port = int(match.group(1))

    class client:
        def __init__(self):
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=10 * scale)
            self.buffer = b""
        def send(self, line):
            self.sock.sendall(line.encode() + b"\n")
        def line(self):
            while b"\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise EOFError("server closed")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            return line.decode()
        def expect(self, wanted):
            got = self.line()
            if not re.fullmatch(wanted, got):
                sys.exit(f"FAIL: expected {wanted!r}, got {got!r}")
            return got

    subscribers = [client() for _ in range(6)]
    publisher = client()
    for i, s in enumerate(subscribers):
        s.send("sub news")
        s.expect(rf"ok sub news \({i + 1} subscribers\)")
    publisher.send("pub news hello everyone")
    publisher.expect(r"ok pub news to 6")
    for s in subscribers:
        s.expect(r"news hello everyone")
    subscribers[0].send("unsub news")
    subscribers[0].expect(r"ok unsub news")
    publisher.send("stats")
    publisher.expect(r"topics 1 subscribers 5 published 1 live 7")
    publisher.send("pub news second")
    publisher.expect(r"ok pub news to 5")
    for s in subscribers[1:]:
        s.expect(r"news second")
    subscribers[0].send("stats")  # had it received "news second", this would not be the next line
    subscribers[0].expect(r"topics 1 subscribers 5 published 2 live 7")
    publisher.send("bogus")
    publisher.expect(r"error unknown command: bogus")
    for c in subscribers + [publisher]:
        c.sock.close()
    server.send_signal(signal.SIGTERM)
    status = server.wait(timeout=20 * scale)
    if status != 0:
        sys.exit(f"FAIL: the server exited {status}")
    rest = server.stdout.read()
    if "stopped: stats{live=0 opened=7" not in rest:
        sys.exit(f"FAIL: the summary is wrong: {rest!r}")
    print("PASS")
finally:
    if server.poll() is None:
        server.kill()
