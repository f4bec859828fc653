"""The quick start's main job: the agent daemon syncs a Git repository made from sample-repo/ to a
local Caddy and Nginx, traffic flows through them, and a new commit is picked up.

Everything runs on loopback under build/demo/ (no Consul, no Vault, no network):
stand-in backends and an Authentik-like outpost on 127.0.0.1:91xx-93xx and
127.0.0.2, Caddy with its admin API on 127.0.0.1:20190 (HTTP 18080, HTTPS 18443,
certificates from its internal CA), Nginx with the stream module on a private
prefix, a bare Git repository as the remote. The agent is the real
`hecate-agent run` with a generated agent.yaml.

    python scripts/demo.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "demo"
SAMPLE = ROOT / "sample-repo"
ADMIN, HTTP, HTTPS, AGENT_HTTP = 20190, 18080, 18443, 19469
WEBHOOK_SECRET = b"demo-webhook-secret"
OUTPOST = 9000
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
CLI = [sys.executable, "-m", "hecate_agent", "--config", str(WORK / "agent.yaml")]


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.server.server_address[1] == OUTPOST:  # type: ignore[index]
            self._outpost()
            return
        body = json.dumps({"backend": f"127.0.0.1:{self.server.server_address[1]}",  # type: ignore[index]
                           "user": self.headers.get("X-Authentik-Username")}).encode()
        self._reply(200, body, {"Content-Type": "application/json"})

    def _outpost(self) -> None:
        if self.path.startswith("/outpost.goauthentik.io/auth/caddy"):
            if "authentik_session=demo" in self.headers.get("Cookie", ""):
                self._reply(200, b"", {"X-Authentik-Username": "demo", "X-Authentik-Groups": "staff|customers",
                                      "X-Authentik-Email": "demo@example.com"})
            else:
                self._reply(302, b"", {"Location": "https://auth.example.com/flows/login/"})
        else:
            self._reply(200, b"outpost", {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TcpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(4096)
        self.request.sendall(f"{self.server.server_address[0]}:{self.server.server_address[1]} got ".encode() + data)  # type: ignore[index]


class UdpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(f"resolver {self.server.server_address[1]} answers ".encode() + data, self.client_address)  # type: ignore[index]


class _Reusable(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a demo run right after another must not trip over TIME_WAIT
    daemon_threads = True


@contextlib.contextmanager
def backends() -> Iterator[None]:
    servers: list[socketserver.BaseServer] = []
    for port in (OUTPOST, 9101, 9111, 9112, 9119, 9121, 9122, 9131, 9141):
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), Backend))
    six = type("V6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    servers.append(six(("::1", 9123), Backend))
    for address in (("127.0.0.1", 9201), ("127.0.0.1", 9202), ("127.0.0.2", 1514), ("127.0.0.2", 1515)):
        servers.append(_Reusable(address, TcpEcho))
    for port in (9301, 9302):
        servers.append(socketserver.ThreadingUDPServer(("127.0.0.1", port), UdpEcho))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def write_configs() -> None:
    for folder in ("caddy", "nginx/conf", "nginx/logs", "state"):
        (WORK / folder).mkdir(parents=True, exist_ok=True)
    (WORK / "caddy" / "boot.json").write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{ADMIN}"}}))
    prefix = WORK / "nginx"
    (prefix / "conf" / "nginx.conf").write_text(f"""\
load_module {STREAM_MODULE};
daemon off;
worker_processes 2;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log notice;
events {{ worker_connections 1024; }}
stream {{
    include {prefix}/streams.d/*.conf;
}}
""")
    base = ["nginx", "-p", str(prefix), "-c", str(prefix / "conf" / "nginx.conf")]
    settings = {
        "node": {"name": "demo"},
        "caddy": {"adminUrl": f"http://127.0.0.1:{ADMIN}", "httpListen": [f"127.0.0.1:{HTTP}"],
                  "httpsListen": [f"127.0.0.1:{HTTPS}"]},
        "nginx": {"streamDir": str(prefix / "streams.d"), "testCommand": [*base, "-t", "-q"],
                  "reloadCommand": [*base, "-s", "reload"], "dumpCommand": [*base, "-T", "-q"],
                  "pidFile": str(prefix / "logs" / "nginx.pid"), "errorLog": str(prefix / "logs" / "error.log")},
        "stateDir": str(WORK / "state"),
        "source": {"git": {"url": str(WORK / "git" / "config.git"), "branch": "main", "interval": "5s"}},
        "http": {"listen": f"127.0.0.1:{AGENT_HTTP}", "webhookSecretFile": str(WORK / "webhook.secret")},
        # The sample policies ask for MFA, flows and session lengths that only Authentik can enforce. The demo's
        # stand-in outpost plays Authentik, so it declares them enforced outside the agent (until the agent can
        # provision a test Authentik itself); without this line plan and apply would stop, as they should.
        "authentik": {"provisioning": "external"},
    }
    (WORK / "webhook.secret").write_bytes(WEBHOOK_SECRET + b"\n")
    (WORK / "agent.yaml").write_text(json.dumps(settings, indent=2))


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_proxies() -> list[subprocess.Popen[bytes]]:
    busy = [p for p in (ADMIN, HTTP, HTTPS, 15432) if not port_free(p)]
    if busy:
        sys.exit(f"demo: ports {busy} are in use on 127.0.0.1; stop whatever holds them and run the demo again")
    env = dict(os.environ, XDG_CONFIG_HOME=str(WORK / "caddy"), XDG_DATA_HOME=str(WORK / "caddy"), HOME=str(WORK))
    caddy_log = open(WORK / "caddy" / "caddy.log", "wb")  # noqa: SIM115 - lives as long as the process
    caddy = subprocess.Popen(["caddy", "run", "--config", str(WORK / "caddy" / "boot.json")], stdout=caddy_log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    prefix = WORK / "nginx"
    nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "conf" / "nginx.conf")],
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not port_free(ADMIN) and (prefix / "logs" / "nginx.pid").exists():
            return [caddy, nginx]
        if caddy.poll() is not None or nginx.poll() is not None:
            break
        time.sleep(0.1)
    stop([caddy, nginx])
    sys.exit(f"demo: Caddy or Nginx did not start; see {WORK / 'caddy' / 'caddy.log'} and {prefix / 'logs'}")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process, sig in zip(processes, (signal.SIGTERM, signal.SIGQUIT), strict=False):
        if process.poll() is None:
            process.send_signal(sig)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def https(host: str, path: str = "/", cookie: str = "") -> tuple[int, str]:
    """GET over TLS to the local Caddy with SNI `host`, trusting only Caddy's internal CA."""
    context = ssl.create_default_context(cafile=str(WORK / "caddy" / "caddy" / "pki" / "authorities" / "local" / "root.crt"))
    conn = http.client.HTTPConnection(host, HTTPS, timeout=10)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", HTTPS), timeout=10), server_hostname=host)
    conn.request("GET", path, headers={"Host": host, **({"Cookie": cookie} if cookie else {})})
    response = conn.getresponse()
    return response.status, response.read().decode(errors="replace")


def plain(host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    return response.status, response.getheader("Location") or response.read().decode(errors="replace")


def tcp(port: int, address: str = "127.0.0.1") -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(b"hello")
        return conn.recv(4096).decode()


def udp(port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"query", ("127.0.0.1", port))
        return sock.recvfrom(4096)[0].decode()


def show_traffic() -> bool:
    checks = [
        ("https shop.example.com (weights 2:1 + 10% canary)", lambda: https("shop.example.com"), 200),
        ("https api.example.com", lambda: https("api.example.com"), 200),
        ("https grafana.example.com, anonymous", lambda: https("grafana.example.com"), 302),
        ("https grafana.example.com, logged in", lambda: https("grafana.example.com", cookie="authentik_session=demo"), 200),
        ("https acme.tenants.example.com, logged in", lambda: https("acme.tenants.example.com", cookie="authentik_session=demo"), 200),
        ("http  shop.example.com (forceHTTPS)", lambda: plain("shop.example.com"), 308),
        ("http  docs.api.example.com (plain HTTP)", lambda: plain("docs.api.example.com"), 200),
        ("http  unknown.example.org", lambda: plain("unknown.example.org"), 404),
    ]
    ok = True
    print("\nTraffic through the proxies:")
    for label, call, expected in checks:
        try:
            status, detail = call()
        except OSError as exc:
            status, detail = 0, str(exc)
        good = status == expected
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label:<46} {status}  {detail.strip()[:70]}")
    for label, call, expect in [
        ("tcp  127.0.0.1:15432 (postgres stream)", lambda: tcp(15432), "9201"),
        ("udp  127.0.0.1:15353 (dns stream)", lambda: udp(15353), "answers"),
        ("tcp  127.0.0.1:1514 (wazuh preset)", lambda: tcp(1514), "1514"),
        ("tcp  127.0.0.1:1515 (wazuh preset)", lambda: tcp(1515), "1515"),
    ]:
        try:
            detail = call()
        except OSError as exc:
            detail = f"error: {exc}"
        good = expect in detail
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {label:<46}      {detail.strip()[:70]}")
    return ok


def git(*args: str) -> str:
    work = WORK / "git" / "work"
    command = ["git", "-C", str(work), "-c", "user.email=demo@example.com", "-c", "user.name=demo", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def make_repository() -> str:
    """A bare remote and a clone holding sample-repo, as a team's config repository would be."""
    root = WORK / "git"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "config.git")], check=True)
    shutil.copytree(SAMPLE, root / "work")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root / "work")], check=True)
    git("add", "-A")
    git("commit", "-qm", "Initial config from sample-repo")
    git("remote", "add", "origin", str(root / "config.git"))
    git("push", "-q", "origin", "main")
    return git("rev-parse", "HEAD")


def agent_status() -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{AGENT_HTTP}/status", timeout=2) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return {}


def wait_applied(revision: str, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if agent_status().get("appliedRevision") == revision:
            return time.monotonic() - started
        time.sleep(0.02)
    sys.exit(f"demo: the agent did not apply {revision[:12]} within {timeout:.0f} s; see {WORK / 'agent.log'}")


def push_a_change() -> tuple[str, float]:
    """Commit a header change to the API route, push, ping the webhook; time until Caddy serves it."""
    api = WORK / "git" / "work" / "routes" / "api.yaml"
    api.write_text(api.read_text().replace("      X-Frame-Options: DENY\n", "      X-Frame-Options: DENY\n      X-Demo: picked-up\n", 1))
    git("commit", "-qam", "api: add X-Demo header")
    git("push", "-q", "origin", "main")
    revision = git("rev-parse", "HEAD")
    body = json.dumps({"ref": "refs/heads/main", "after": revision}).encode()
    signature = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://127.0.0.1:{AGENT_HTTP}/hooks/git", data=body, method="POST",
                                     headers={"X-Hub-Signature-256": f"sha256={signature}"})
    started = time.monotonic()
    urllib.request.urlopen(request, timeout=5).close()
    wait_applied(revision)
    return revision, time.monotonic() - started


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    for tool in ("caddy", "nginx", "git"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"demo: {tool} is not installed; run ./scripts/bootstrap as root (it installs Debian's packages)")
    shutil.rmtree(WORK / "state", ignore_errors=True)
    write_configs()
    first = make_repository()
    env = dict(os.environ, AUTHENTIK_OUTPOST_URL=f"http://127.0.0.1:{OUTPOST}", PATH=os.environ.get("PATH", "") + ":/usr/sbin")
    ok = False
    with backends():
        processes = start_proxies()
        log = open(WORK / "agent.log", "w")  # noqa: SIM115 - lives as long as the daemon
        agent = subprocess.Popen([*CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            print(f"$ hecate-agent run   (source: {WORK.relative_to(ROOT) / 'git' / 'config.git'}, branch main)", flush=True)
            seconds = wait_applied(first)
            print(f"  applied {first[:12]} (sample-repo) {seconds:.2f} s after start")
            time.sleep(0.5)  # the internal CA issues certificates in the background
            ok = show_traffic()
            revision, latency = push_a_change()
            print("\n$ git commit -am 'api: add X-Demo header' && git push   (+ webhook)")
            print(f"  picked up {revision[:12]} and serving it {latency * 1000:.0f} ms after the webhook")
            ok &= demo_header_served()
            print("\n$ hecate-agent plan   (against the live proxies)", flush=True)
            again = subprocess.run([*CLI, "plan", str(WORK / "git" / "work")], env=env, check=False,
                                   capture_output=True, text=True)
            # the summary line (notes, e.g. what Authentik enforces outside the agent, follow it)
            print("  " + next((line for line in again.stdout.splitlines() if line.startswith(("No changes", "Plan:"))),
                              again.stdout.strip().splitlines()[-1]))
            ok &= again.returncode == 0
            current = agent_status()
            print(f"\nStatus: phase {current.get('phase')}, applied {str(current.get('appliedRevision'))[:12]}; "
                  f"agent log: {WORK.relative_to(ROOT) / 'agent.log'}")
            print(f"  try: .venv/bin/hecate-agent --config {WORK.relative_to(ROOT) / 'agent.yaml'} history")
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
            stop(processes)
    sys.exit(0 if ok else 1)


def demo_header_served() -> bool:
    context = ssl.create_default_context(cafile=str(WORK / "caddy" / "caddy" / "pki" / "authorities" / "local" / "root.crt"))
    conn = http.client.HTTPConnection("api.example.com", HTTPS, timeout=10)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", HTTPS), timeout=10),
                                    server_hostname="api.example.com")
    conn.request("GET", "/", headers={"Host": "api.example.com"})
    response = conn.getresponse()
    response.read()
    return response.getheader("X-Demo") == "picked-up"


if __name__ == "__main__":
    main()
