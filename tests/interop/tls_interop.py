#!/usr/bin/python3
"""TLS under tether's codecs against peers nobody here wrote: Python's ssl module and `openssl s_client` on the line
codec, python3-websockets over wss://, and tether's own echo_client with verification. The certificates are made by
this test with the openssl command: a CA, and a server certificate it signed for localhost and 127.0.0.1.

    tls_interop.py ECHO_SERVER ECHO_CLIENT CERTIFICATE_DIRECTORY_PARENT
"""
import asyncio, json, os, signal, socket, ssl, subprocess, sys, tempfile, time

import websockets

SCALE = int(os.environ.get("TETHER_TEST_TIME_SCALE", "1"))


def fail(why, *logs):
    print(f"FAIL: {why}", file=sys.stderr)
    for name, text in logs:
        print(f"--- {name}\n{text}", file=sys.stderr)
    sys.exit(1)


def make_certificates(directory):
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=tether interop CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "san.ext"), "w") as ext:
        ext.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.pem", "-days", "2", "-extfile", "san.ext")
    return tuple(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))


def start_server(binary, cert, key, *flags):
    server = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--json", "--tls-cert", cert, "--tls-key", key,
                               *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    event = json.loads(server.stdout.readline())
    if event.get("event") != "listening" or event.get("tls") != "on":
        fail(f"unexpected first event {event}")
    return server, int(event["address"].rsplit(":", 1)[1])


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    out, err = server.communicate(timeout=15 * SCALE)
    if server.returncode != 0:
        fail(f"echo_server exited {server.returncode}", ("stderr", err))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def python_ssl_client(port, ca):
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            version = tls.version()
            lines = [f"line {i} " + "y" * 1000 for i in range(50)]
            tls.sendall("".join(line + "\n" for line in lines).encode())
            received = b""
            while received.count(b"\n") < len(lines):
                chunk = tls.recv(65536)
                if not chunk:
                    fail("the TLS server closed before echoing everything")
                received += chunk
            if received.decode().splitlines() != lines:
                fail("python's ssl client got other echoes")
            return version


def openssl_s_client(port, ca):
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca,
                             "-verify_return_error", "-verify_hostname", "localhost", "-servername", "localhost",
                             "-quiet"], input=b"from s_client\n", capture_output=True, timeout=20 * SCALE)
    if b"from s_client\n" not in result.stdout:
        fail("openssl s_client got no echo", ("stderr", result.stderr.decode(errors="replace")))


async def websockets_client(port, ca):
    context = ssl.create_default_context(cafile=ca)
    async with websockets.connect(f"wss://localhost:{port}/", ssl=context, ping_interval=0.2,
                                  ping_timeout=1.0 * SCALE) as ws:
        for message in ["over wss", "z" * 70_000]:
            await ws.send(message)
            if await asyncio.wait_for(ws.recv(), 5 * SCALE) != message:
                fail("wss echo differs")
        await ws.send(b"\x00binary\xff")
        if await asyncio.wait_for(ws.recv(), 5 * SCALE) != b"\x00binary\xff":
            fail("wss binary echo differs")
        await asyncio.sleep(1.0)  # the library pings every 200 ms inside TLS; tether must answer
        await ws.send("after the idle period")
        if await asyncio.wait_for(ws.recv(), 5 * SCALE) != "after the idle period":
            fail("no wss echo after the idle period")


def main():
    server_binary, client_binary, parent = sys.argv[1:4]
    with tempfile.TemporaryDirectory(dir=parent) as directory:
        ca, cert, key = make_certificates(directory)

        server, port = start_server(server_binary, cert, key, "--heartbeat", "200ms,1s")
        version = python_ssl_client(port, ca)
        openssl_s_client(port, ca)
        tether_client = subprocess.run([client_binary, "--connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", ca,
                                        "--tls-server-name", "localhost", "--messages", "3", "--pause", "300ms",
                                        "--heartbeat", "200ms,1s", "--json"], capture_output=True, text=True,
                                       timeout=30 * SCALE)
        if tether_client.returncode != 0:
            fail(f"echo_client --tls exited {tether_client.returncode}", ("stderr", tether_client.stderr))
        refused = subprocess.run([client_binary, "--connect", f"127.0.0.1:{port}", "--tls", "--messages", "1",
                                  "--json"], capture_output=True, text=True, timeout=30 * SCALE)
        events = stop_server(server)
        if refused.returncode != 1 or "handshake_failed" not in refused.stdout:
            fail("echo_client --tls without the test's CA should refuse the server", ("stdout", refused.stdout))
        closes = [e for e in events if e["event"] == "closed"]
        if len(closes) < 4:
            fail(f"expected the four TLS clients' closes, got {closes}")

        server, port = start_server(server_binary, cert, key, "--codec", "websocket", "--heartbeat", "200ms,1s")
        asyncio.run(websockets_client(port, ca))
        stop_server(server)
    print(f"PASS: python ssl ({version}), openssl s_client, echo_client --tls and python3-websockets over wss")


if __name__ == "__main__":
    main()
