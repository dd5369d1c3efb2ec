#!/usr/bin/python3
"""A real browser against tether's WebSocket codec: Debian's chromium, headless, loads a page whose JavaScript opens
ws:// to echo_server --codec websocket --heartbeat, echoes text and binary, idles through several server heartbeats
(which the browser answers by itself: no application code of the page handles a ping) and echoes again; then the
server stops gracefully and the page sees close code 1001. The page reports each verdict to a small HTTP endpoint
of this test, which also serves the page.

    websocket_browser.py ECHO_SERVER [--tls]

With --tls the server serves wss:// with a self-signed certificate the test makes with openssl, which chromium is
told to accept (--ignore-certificate-errors).
"""
import http.server, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.parse

SCALE = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))

PAGE = """<!doctype html><meta charset="utf-8"><title>tether websocket</title><script>
const report = (path) => fetch(path).catch(() => {});
const ws = new WebSocket("%(scheme)s://127.0.0.1:%(port)d/");
ws.binaryType = "arraybuffer";
let step = 0;
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (event) => {
  if (step === 0) {
    if (event.data !== "hello from the browser") return report("/verdict?ok=0&why=first+echo");
    step = 1;
    setTimeout(() => ws.send(new Uint8Array([1, 2, 3, 255]).buffer), %(idle_ms)d);
  } else if (step === 1) {
    const bytes = new Uint8Array(event.data);
    if (bytes.length !== 4 || bytes[3] !== 255) return report("/verdict?ok=0&why=binary+echo");
    step = 2;
    ws.send("after the idle period");
  } else if (step === 2) {
    if (event.data !== "after the idle period") return report("/verdict?ok=0&why=last+echo");
    step = 3;
    report("/verdict?ok=1&why=every+echo");
  }
};
ws.onclose = (event) => report("/closed?code=" + event.code + "&step=" + step);
</script>"""


class Recorder(http.server.BaseHTTPRequestHandler):
    page = ""
    events = []
    arrived = threading.Condition()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/":
            body = self.page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            with Recorder.arrived:
                Recorder.events.append((url.path, dict(urllib.parse.parse_qsl(url.query))))
                Recorder.arrived.notify_all()
            body = b"recorded"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait_for(path, seconds):
    deadline = time.monotonic() + seconds
    with Recorder.arrived:
        while True:
            for event in Recorder.events:
                if event[0] == path:
                    return event[1]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            Recorder.arrived.wait(left)


def main():
    server_binary = sys.argv[1]
    tls = "--tls" in sys.argv[2:]
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="tether-chromium-")
    tls_flags = []
    if tls:
        cert, key = os.path.join(profile, "cert.pem"), os.path.join(profile, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        tls_flags = ["--tls-cert", cert, "--tls-key", key]
    echo = subprocess.Popen([server_binary, "--listen", "127.0.0.1:0", "--json", "--codec", "websocket",
                             "--heartbeat", "200ms,2s", *tls_flags], stdout=subprocess.PIPE, text=True)
    browser = None
    try:
        ws_port = int(json.loads(echo.stdout.readline())["address"].rsplit(":", 1)[1])
        Recorder.page = PAGE % {"port": ws_port, "idle_ms": 1500, "scheme": "wss" if tls else "ws"}
        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        # As root, chromium needs --no-sandbox; the other flags keep it off the network this machine does not have.
        browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                    "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
                                    *(["--ignore-certificate-errors"] if tls else []),
                                    f"http://127.0.0.1:{web.server_address[1]}/"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        verdict = wait_for("/verdict", 60 * SCALE)
        if verdict is None:
            sys.exit("FAIL: the page reported no verdict within its time")
        if verdict.get("ok") != "1":
            sys.exit(f"FAIL: the page reported {verdict}")
        echo.send_signal(signal.SIGTERM)
        closed = wait_for("/closed", 20 * SCALE)
        out, _ = echo.communicate(timeout=20 * SCALE)
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        beats = [e for e in events if e["event"] == "heartbeat"]
        if closed is None or closed.get("code") != "1001":
            sys.exit(f"FAIL: expected the page to see close code 1001 on a graceful stop, saw {closed}")
        if len(beats) < 3:
            sys.exit(f"FAIL: expected 3+ heartbeats answered by the browser during the idle period, got {len(beats)}")
        print(f"PASS: chromium over {'wss' if tls else 'ws'} echoed text and binary, answered {len(beats)} "
              "heartbeats unaided, saw close 1001")
    finally:
        if browser and browser.poll() is None:
            browser.kill()
            browser.wait()
        if echo.poll() is None:
            echo.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
