#!/usr/bin/env python3
"""Restarting echo_server with --handover while clients keep coming and staying: no connection is refused or
reset, no long-lived client loses or repeats a message, and each old process has let every client leave by its
drain deadline. A successor whose shards cannot take the sockets is refused and the running server keeps
serving.  restart_test.py ECHO_SERVER ECHO_CLIENT"""
import json, os, socket, subprocess, sys, tempfile, threading, time

scale = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))
server_binary, client_binary = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="tether-restart-")
handover = os.path.join(work, "handover.sock")
drain_s = 5  # echo_server's stop deadline, which it also uses as its drain after a handover
failures = []


def fail(why):
    failures.append(why)
    print(f"FAIL: {why}", flush=True)


class server:
    """One echo_server generation, its JSON events collected as they come."""

    def __init__(self, name, port, threads):
        self.name = name
        self.events = []
        self.arrived = threading.Condition()
        self.process = subprocess.Popen([server_binary, "--listen", f"127.0.0.1:{port}", "--threads", str(threads),
                                         "--handover", handover, "--json"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.process.stdout:
            event = json.loads(line)
            event["at"] = time.monotonic()
            with self.arrived:
                self.events.append(event)
                self.arrived.notify_all()

    def wait_for(self, name, timeout):
        deadline = time.monotonic() + timeout * scale
        with self.arrived:
            while True:
                found = [e for e in self.events if e["event"] == name]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self.reader.is_alive():
                    return None
                self.arrived.wait(min(left, 0.1))

    def of(self, name):
        with self.arrived:
            return [e for e in self.events if e["event"] == name]


class newcomers:
    """Short connections opened back to back from two threads: connect, one line, its echo, close."""

    def __init__(self, port):
        self.port = port
        self.attempts = 0
        self.errors = []
        self.running = True
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(2)]
        for t in self.threads:
            t.start()

    def run(self, worker):
        n = 0
        while self.running:
            n += 1
            line = f"newcomer {worker} {n}\n".encode()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5 * scale) as s:
                    s.sendall(line)
                    # A generation that hands over may send its goaway (a DLE control line) before or after the echo.
                    received = b""
                    while True:
                        while b"\n" not in received:
                            chunk = s.recv(4096)
                            if not chunk:
                                raise EOFError("closed before the echo")
                            received += chunk
                        first, received = received.split(b"\n", 1)
                        if not first.startswith(b"\x10"):
                            break
                    if first + b"\n" != line:
                        raise ValueError(f"echo {first!r} for {line!r}")
            except Exception as e:  # refused, reset, timed out, closed early or altered: all count against us
                with self.lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
            with self.lock:
                self.attempts += 1
            time.sleep(0.002)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join()


def check_drained(gen, handed_over_at):
    """The old generation let every connection leave before its drain deadline and exited."""
    stopped = gen.wait_for("stopped", drain_s + 5)
    if stopped is None:
        fail(f"{gen.name} did not stop after handing over")
        return
    took = stopped["at"] - handed_over_at
    budget = drain_s * scale
    print(f"TIMING | {gen.name} drained after the handover | measured {took * 1000:.0f} ms | budget {budget * 1000} ms")
    if took > budget:
        fail(f"{gen.name} took {took:.1f}s to drain, over its {drain_s}s deadline")
    for closed in gen.of("closed"):
        if closed["reason"] not in ("shutdown", "peer_closed") or closed["reason"] == "shutdown" and \
                closed.get("detail") != "asked to leave with a goaway":
            fail(f"{gen.name}: a connection ended {closed['reason']} ({closed.get('detail')}), not by leaving")
    if gen.process.wait(timeout=5 * scale) != 0:
        fail(f"{gen.name} exited {gen.process.returncode}")


gens = []
try:
    first = server("generation 1", 0, 2)
    gens.append(first)
    listening = first.wait_for("listening", 5)
    if listening is None:
        sys.exit("FAIL: generation 1 did not start: " + first.process.stderr.read())
    port = int(listening["address"].rsplit(":", 1)[1])
    if not listening["handover"].startswith("bound the port"):
        fail(f"generation 1 handover field: {listening['handover']!r}")

    churn = newcomers(port)
    messages = 60
    stayers = subprocess.Popen([client_binary, "--connect", f"127.0.0.1:{port}", "--connections", "20",
                                "--messages", str(messages), "--pause", "100ms", "--reconnect", "--json",
                                "--timeout", f"{60 * scale}s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)

    second = server("generation 2", port, 2)
    gens.append(second)
    if second.wait_for("listening", 5) is None or not second.of("listening")[0]["handover"].startswith("took"):
        fail("generation 2 did not take the port over")
    handed = first.wait_for("handed_over", 5)
    if handed is None:
        fail("generation 1 never handed over")
    else:
        check_drained(first, handed["at"])

    # A successor with one shard cannot take two sockets: it is refused and generation 2 keeps serving.
    misfit = subprocess.run([server_binary, "--listen", f"127.0.0.1:{port}", "--threads", "1",
                             "--handover", handover, "--json"], capture_output=True, text=True, timeout=10 * scale)
    if misfit.returncode != 1 or "do not fit this listener" not in misfit.stderr:
        fail(f"a misfit successor exited {misfit.returncode}: {misfit.stderr.strip()!r}")
    if second.of("handed_over"):
        fail("generation 2 handed over to a successor that could not take the sockets")

    time.sleep(1.0)
    third = server("generation 3", port, 2)
    gens.append(third)
    handed = second.wait_for("handed_over", 5)
    if handed is None:
        fail("generation 2 never handed over")
    else:
        check_drained(second, handed["at"])

    out, err = stayers.communicate(timeout=90 * scale)
    churn.stop()
    events = [json.loads(line) for line in out.splitlines()]
    finished = [e for e in events if e["event"] == "finished"]
    if stayers.returncode != 0 or not finished or finished[0]["failed"] != 0:
        fail(f"long-lived clients: exit {stayers.returncode}, {finished}, {err.strip()}")
    echoes = {}
    for e in events:
        if e["event"] == "echo":
            echoes.setdefault(e["connection"], []).append(e["message"])
    for connection in range(1, 21):
        if echoes.get(connection) != list(range(1, messages + 1)):
            fail(f"client {connection} echoes out of sequence: {echoes.get(connection)}")
    goaways = sum(1 for e in events if e["event"] == "goaway")
    reconnects = sum(1 for e in events if e["event"] == "connected") - 20
    print(f"long-lived: 20 clients x {messages} messages in sequence, {goaways} goaways, {reconnects} reconnects")
    if goaways < 20:
        fail(f"only {goaways} goaways over two restarts of 20 clients")
    print(f"newcomers: {churn.attempts} connections, {len(churn.errors)} failed")
    if churn.errors:
        fail(f"{len(churn.errors)} newcomers failed, first: {churn.errors[0]}")
    if churn.attempts < 300:
        fail(f"only {churn.attempts} newcomers connected during the restarts")

    third.process.terminate()
    if third.wait_for("stopped", 10) is None:
        fail("generation 3 did not stop on SIGTERM")
    third.process.wait(timeout=10 * scale)
    if os.path.exists(handover):
        fail("the last generation left its handover socket behind")
finally:
    for gen in gens:
        if gen.process.poll() is None:
            gen.process.kill()

if failures:
    sys.exit(f"FAIL: {len(failures)} problems")
print("PASS: restarts lost no connection and no message")
