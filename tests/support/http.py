"""HTTP pieces for Caddy tests: upstreams that report what they saw, a fake Authentik outpost, clients."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Upstream(ThreadingHTTPServer):
    """Answers `{"upstream": name, "path", "method", "headers"}`; `/health` obeys `healthy`."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.requests = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)

    @property
    def dial(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms delayed-ACK stalls

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        if self.path.startswith("/health"):
            status = 200 if self.server.healthy else 503
            body = b"ok" if self.server.healthy else b"down"
        else:
            with self.server.lock:
                self.server.requests += 1
            status = 200
            payload = {"upstream": self.server.name, "path": self.path, "method": self.command,
                       "headers": {k: v for k, v in self.headers.items()}}
            if self.path.startswith("/big"):
                payload["filler"] = "hecate " * 20_000
            body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Powered-By", "upstream-framework")
        self.send_header("X-Upstream", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


@dataclass
class FakeOutpost:
    """Behaves like an Authentik outpost's Caddy endpoint.

    A cookie `authentik_session=<token>` maps to identity headers; anything else is
    redirected to the login flow, as the real outpost does.
    """

    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)


class OutpostServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, outpost: FakeOutpost) -> None:
        self.outpost = outpost
        super().__init__(("127.0.0.1", 0), _OutpostHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OutpostHandler(BaseHTTPRequestHandler):
    server: OutpostServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms delayed-ACK stalls

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        outpost = self.server.outpost
        if self.path.startswith("/outpost.goauthentik.io/auth/caddy"):
            outpost.seen.append(dict(self.headers.items()))
            cookie = self.headers.get("Cookie", "")
            token = next((part.split("=", 1)[1] for part in cookie.split("; ") if part.startswith("authentik_session=")), "")
            identity = outpost.sessions.get(token)
            if identity is None:
                self._reply(302, b"", {"Location": "https://auth.example.com/flows/login/"})
            else:
                self._reply(200, b"", identity)
            return
        self._reply(200, b"outpost page", {"X-From": "outpost"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, host: str, path: str = "/", headers: dict[str, str] | None = None,
             method: str = "GET") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def https_get(port: int, host: str, path: str = "/", *, cafile: Path, headers: dict[str, str] | None = None,
              tls_max: ssl.TLSVersion | None = None) -> Reply:
    context = ssl.create_default_context(cafile=str(cafile))
    if tls_max is not None:
        context.maximum_version = tls_max
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=host)
    try:
        request = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        request += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Reply(response.status, response.headers, response.read())
    finally:
        sock.close()
