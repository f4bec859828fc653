"""The daemon's HTTP surface: /healthz, /readyz, /status, /metrics and the signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hecate_agent.render.caddy import parse_listen

MAX_WEBHOOK_BODY = 1 << 20


class Surface:
    """What the endpoints read from the daemon, as plain callables (no daemon import here)."""

    def __init__(
        self,
        *,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        webhook_secret_file: Callable[[], Path | None],
        on_webhook: Callable[[], None],
    ) -> None:
        self.healthy = healthy
        self.ready = ready
        self.status = status
        self.metrics = metrics
        self.webhook_secret_file = webhook_secret_file
        self.on_webhook = on_webhook

    def check_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
        """None when the request is authentic; else (status, reason). Constant-time comparisons."""
        secret_file = self.webhook_secret_file()
        if secret_file is None:
            return 404, "webhooks are disabled (http.webhookSecretFile is not set)"
        try:
            secret = secret_file.read_text().strip().encode()
        except OSError:
            return 500, "cannot read the webhook secret"
        lower = {k.lower(): v for k, v in headers.items()}
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if "x-hub-signature-256" in lower:
            given = lower["x-hub-signature-256"].removeprefix("sha256=")
            return None if _same(given, expected) else (401, "bad signature")
        if "x-gitea-signature" in lower:
            return None if _same(lower["x-gitea-signature"], expected) else (401, "bad signature")
        if "x-gitlab-token" in lower:
            return None if _same(lower["x-gitlab-token"], secret) else (401, "bad token")
        return 401, "missing signature"

    def serve(self, listen: str) -> ThreadingHTTPServer:
        """Start serving on `listen` (host:port) in a daemon thread; the caller shuts it down."""
        host, port = parse_listen(listen)
        handler = type("Handler", (_Handler,), {"surface": self})
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type(
            "Server", (ThreadingHTTPServer,), {"address_family": address_family, "daemon_threads": True}
        )
        server: ThreadingHTTPServer = server_class((host or "127.0.0.1", port or 9469), handler)
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        return server


class _Handler(BaseHTTPRequestHandler):
    server_version = "hecate-agent"
    surface: Surface

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        surface = self.surface
        if self.path == "/healthz":
            healthy = surface.healthy()
            self._send(200 if healthy else 503, b'{"ok": true}' if healthy else b'{"ok": false}')
        elif self.path == "/readyz":
            ready = surface.ready()
            self._send(200 if ready else 503, json.dumps({"ready": ready}).encode())
        elif self.path == "/status":
            self._send(200, json.dumps(surface.status(), indent=2, sort_keys=True).encode())
        elif self.path == "/metrics":
            self._send(200, surface.metrics(), "text/plain; version=0.0.4")
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        if self.path != "/hooks/git":
            self._send(404, b'{"error": "not found"}')
            return
        declared = (self.headers.get("Content-Length") or "0").strip()
        # Negative, garbage or a non-ASCII digit ('²'): never read "until the peer closes".
        if not (declared.isascii() and declared.isdigit()):
            self._send(400, b'{"error": "bad Content-Length"}')
            return
        length = int(declared)
        if length > MAX_WEBHOOK_BODY:
            self._send(413, b'{"error": "payload too large"}')
            return
        body = self.rfile.read(length)
        verdict = self.surface.check_webhook(dict(self.headers.items()), body)
        if verdict is not None:
            self._send(verdict[0], json.dumps({"error": verdict[1]}).encode())
            return
        self.surface.on_webhook()
        self._send(202, b'{"accepted": true}')


def _same(given: str, expected: bytes) -> bool:
    """Constant-time comparison of a header value with the expected bytes. Bytes, not str:
    `hmac.compare_digest` raises on non-ASCII text, and a header can hold anything."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)
