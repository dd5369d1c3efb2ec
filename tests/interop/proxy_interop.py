#!/usr/bin/python3
"""echo_server behind the balancers users put in front of it, Debian's HAProxy (send-proxy, send-proxy-v2, with
health checks) and nginx's stream module (proxy_protocol on), all on loopback. Clients connect from addresses of
their own (127.0.0.10 and up) so the server must see each client's address, not the balancer's 127.0.0.1:
remote addresses, the per-address limit and the health checks are checked in the server's JSON events.

    proxy_interop.py ECHO_SERVER WORK_DIRECTORY_PARENT
"""
import json, os, signal, socket, subprocess, sys, tempfile, time

SCALE = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))
MAX_PER_ADDRESS = 2
PROBE = "127.0.0.99"  # where this script checks that a balancer listens from; left out of the counts


def fail(why, *logs):
    print(f"FAIL: {why}", file=sys.stderr)
    for name, text in logs:
        print(f"--- {name}\n{text}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, process):
    deadline = time.monotonic() + 10 * SCALE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{what} exited {process.returncode}", ("output", process.communicate()[0] or ""))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1, source_address=(PROBE, 0)):
                return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} never listened on {port}")


def start_balancers(directory, server_port):
    haproxy_v1, haproxy_v2, nginx_port = free_port(), free_port(), free_port()
    with open(os.path.join(directory, "haproxy.cfg"), "w") as cfg:
        cfg.write(f"""global
  maxconn 500
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend with_v1
  bind 127.0.0.1:{haproxy_v1}
  default_backend echo_v1
backend echo_v1
  server echo 127.0.0.1:{server_port} send-proxy
frontend with_v2
  bind 127.0.0.1:{haproxy_v2}
  default_backend echo_v2
backend echo_v2
  server echo 127.0.0.1:{server_port} send-proxy-v2 check inter 200ms
""")
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(directory, "haproxy.cfg")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(directory, "nginx.conf"), "w") as cfg:
        cfg.write(f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
stream {{
  server {{
    listen 127.0.0.1:{nginx_port};
    proxy_pass 127.0.0.1:{server_port};
    proxy_protocol on;
  }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-p", directory, "-c", os.path.join(directory, "nginx.conf")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(haproxy_v1, "haproxy", haproxy)
    wait_for_port(haproxy_v2, "haproxy", haproxy)
    wait_for_port(nginx_port, "nginx", nginx)
    return [haproxy, nginx], {"haproxy send-proxy": haproxy_v1, "haproxy send-proxy-v2": haproxy_v2,
                              "nginx proxy_protocol": nginx_port}


def client(source, port):
    s = socket.socket()
    s.settimeout(5 * SCALE)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def echo(s, line):
    s.sendall(line.encode() + b"\n")
    received = b""
    while not received.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            return None
        received += chunk
    return received.decode().rstrip("\n")


def refused(s):
    """True when the balancer closes the client's connection (the server refused it behind the balancer)."""
    try:
        s.sendall(b"anyone there?\n")
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def main():
    server_binary, parent = sys.argv[1:3]
    with tempfile.TemporaryDirectory(dir=parent) as directory:
        server = subprocess.Popen([server_binary, "--listen", "127.0.0.1:0", "--json", "--proxy-protocol",
                                   "127.0.0.1/32", "--max-per-address", str(MAX_PER_ADDRESS)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listening = json.loads(server.stdout.readline())
        if listening.get("proxy_protocol") != "from 127.0.0.1/32":
            fail(f"unexpected listening event {listening}")
        server_port = int(listening["address"].rsplit(":", 1)[1])
        balancers, fronts = start_balancers(directory, server_port)
        try:
            expected = {}  # client source address -> the balancer it came through
            held = []
            for index, (name, port) in enumerate(fronts.items()):
                source = f"127.0.0.{10 + index}"
                # MAX_PER_ADDRESS connections from one client are served; one more is refused for that client only.
                for n in range(MAX_PER_ADDRESS):
                    s = client(source, port)
                    if echo(s, f"{name} {n}") != f"{name} {n}":
                        fail(f"no echo through {name}")
                    held.append(s)
                extra = client(source, port)
                if not refused(extra):
                    fail(f"a third connection from {source} through {name} was served")
                extra.close()
                other = client(f"127.0.0.{20 + index}", port)
                if echo(other, f"another client through {name}") != f"another client through {name}":
                    fail(f"another client was not served through {name} after one was refused")
                held.append(other)
                expected[source] = name
                expected[f"127.0.0.{20 + index}"] = name
            # A client that skips the balancer is not trusted to send a header; a plain one is served.
            forger = client("127.0.0.30", server_port)
            forger.sendall(b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\nlet me in\n")
            try:
                forged_echo = forger.recv(4096)
            except ConnectionResetError:
                forged_echo = b""
            direct = client("127.0.0.31", server_port)
            if echo(direct, "direct") != "direct":
                fail("a direct client was not served")
            time.sleep(0.6)  # a few HAProxy health checks
            for s in held + [forger, direct]:
                s.close()
            time.sleep(0.3)
        finally:
            for process in balancers:
                process.terminate()
            for process in balancers:
                process.wait(timeout=10)
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15 * SCALE)
        if server.returncode != 0:
            fail(f"echo_server exited {server.returncode}", ("stderr", err))
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        log = ("events", out)

        def source(e):
            return e["remote"].rsplit(":", 1)[0]
        events = [e for e in events if "remote" not in e or source(e) != PROBE]
        accepted = [e for e in events if e["event"] == "accepted"]
        clients = [e for e in accepted if e.get("proxy_header") in ("v1", "v2")]
        # A health check may reset before it is accepted: its closed event says what it was too.
        checks = [e for e in events if e["event"] in ("accepted", "closed") and e.get("proxy_header") == "local"]
        sources = {e["remote"].rsplit(":", 1)[0] for e in clients}
        if sources != set(expected):
            fail(f"clients seen from {sorted(sources)}, expected {sorted(expected)}", log)
        for e in clients:
            if e.get("proxy", "").rsplit(":", 1)[0] != "127.0.0.1":
                fail(f"an accepted client without the balancer's address: {e}", log)
            want = "v2" if expected[e["remote"].rsplit(":", 1)[0]] == "haproxy send-proxy-v2" else "v1"
            if e["proxy_header"] != want:
                fail(f"{e['remote']} came with {e['proxy_header']}, expected {want}", log)
        if len(clients) != 3 * (MAX_PER_ADDRESS + 1):
            fail(f"expected {3 * (MAX_PER_ADDRESS + 1)} clients accepted, got {len(clients)}", log)
        rejected = [e for e in events if e["event"] == "rejected"]
        # A balancer may retry a refused connection (HAProxy does, once): the header names the same client port.
        over = sorted({e["remote"] for e in rejected if e["detail"] == "over max_per_address" and source(e) != "127.0.0.1"})
        if sorted(endpoint.rsplit(":", 1)[0] for endpoint in over) != ["127.0.0.10", "127.0.0.11", "127.0.0.12"]:
            fail(f"per-address refusals for {over}, expected one client connection each from .10, .11, .12", log)
        if not checks or any(e["remote"].rsplit(":", 1)[0] != "127.0.0.1" for e in checks):
            fail(f"HAProxy's health checks should arrive as the balancer's own (local): {checks}", log)
        forged = [e for e in events if e["event"] == "closed" and e["remote"].startswith("127.0.0.30:")]
        if len(forged) != 1 or forged[0]["reason"] != "protocol_error" or forged_echo:
            fail(f"a header from an untrusted client should close it with protocol_error: {forged}", log)
    print(f"PASS: {len(clients)} clients behind HAProxy (v1, v2) and nginx (v1) seen from their own addresses, "
          f"{len(over)} refused per address, {len(checks)} health checks as the balancer's own, a forged header refused")


if __name__ == "__main__":
    main()
