"""A small Vault HTTP API server for tests: the subset the agent uses, spoken over real HTTP.

No licensed Vault build can be installed here, so the real `hvac` client talks
to this instead: KV v2 reads (`GET /v1/<mount>/data/<path>`), token
`lookup-self` / `renew-self` with TTLs that run out and a max TTL that caps
renewal, AppRole login, and a sealed/down switch. Errors use Vault's shape
(`{"errors": [...]}`) and status codes, which is what hvac maps to exceptions.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class VaultState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kv: dict[str, dict[str, dict[str, Any]]] = {"secret": {}}  # mount -> path -> data
        self.tokens: dict[str, dict[str, Any]] = {}
        self.approles: dict[str, dict[str, Any]] = {}  # role_id -> {secret_id, ttl, max_ttl}
        self.requests: list[tuple[str, str]] = []  # (method, path)

    def issue(self, ttl: int, max_ttl: int | None = None, *, renewable: bool = True) -> str:
        token = "hvs." + secrets.token_urlsafe(24)
        now = time.monotonic()
        self.tokens[token] = {
            "ttl": ttl,
            "expires": now + ttl if ttl else None,
            "max_expires": now + max_ttl if max_ttl else None,
            "renewable": renewable and ttl > 0,
        }
        return token

    def valid(self, token: str | None) -> dict[str, Any] | None:
        info = self.tokens.get(token or "")
        if info is None:
            return None
        if info["expires"] is not None and time.monotonic() > info["expires"]:
            del self.tokens[token or ""]
            return None
        return info


class FakeVault(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.state = VaultState()
        self.down = False
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> None:
        with self.state.lock:
            self.state.kv.setdefault(mount, {})[path] = dict(data)

    def token(self, ttl: int = 3600, max_ttl: int | None = None, *, renewable: bool = True) -> str:
        with self.state.lock:
            return self.state.issue(ttl, max_ttl, renewable=renewable)

    def approle(self, role_id: str, secret_id: str, ttl: int = 3600, max_ttl: int | None = None) -> None:
        with self.state.lock:
            self.state.approles[role_id] = {"secret_id": secret_id, "ttl": ttl, "max_ttl": max_ttl}

    def revoke_all(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def count(self, method: str, path: str) -> int:
        with self.state.lock:
            return sum(1 for m, p in self.state.requests if m == method and p == path)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeVault

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, *errors: str) -> None:
        self._reply(status, {"errors": list(errors)})

    def _handle(self) -> None:
        expected = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(expected)
        if len(raw) < expected:
            self.close_connection = True
            return
        if self.server.down:
            self._error(503, "Vault is sealed")
            return
        path = urlsplit(self.path).path
        body = json.loads(raw) if raw else {}
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, path))
            if path.endswith("/login") and path.startswith("/v1/auth/"):
                self._login(state, body)
                return
            info = state.valid(self.headers.get("X-Vault-Token"))
            if info is None:
                self._error(403, "permission denied")
                return
            token = self.headers["X-Vault-Token"]
            if path == "/v1/auth/token/lookup-self":
                remaining = int(info["expires"] - time.monotonic()) if info["expires"] else 0
                self._reply(200, {"data": {"ttl": max(remaining, 0), "renewable": info["renewable"], "id": token}})
            elif path == "/v1/auth/token/renew-self":
                self._renew(info, token)
            elif path == "/v1/auth/token/create":
                child = state.issue(_seconds(body.get("ttl", "3600s")), None, renewable=bool(body.get("renewable", True)))
                self._reply(200, {"auth": {"client_token": child, "lease_duration": state.tokens[child]["ttl"],
                                           "renewable": state.tokens[child]["renewable"]}})
            elif path.startswith("/v1/") and "/metadata/" in path and self.command == "DELETE":
                mount, _, secret_path = path[len("/v1/") :].partition("/metadata/")
                state.kv.get(mount, {}).pop(secret_path, None)
                self.send_response(204)
                self.end_headers()
            elif path.startswith("/v1/") and "/data/" in path and self.command in ("POST", "PUT"):
                mount, _, secret_path = path[len("/v1/") :].partition("/data/")
                state.kv.setdefault(mount, {})[secret_path] = dict(body.get("data") or {})
                self._reply(200, {"data": {"version": 1}})
            elif path.startswith("/v1/") and "/data/" in path:
                mount, _, secret_path = path[len("/v1/") :].partition("/data/")
                data = state.kv.get(mount, {}).get(secret_path)
                if data is None:
                    self._error(404)
                    return
                self._reply(200, {"data": {"data": data, "metadata": {"version": 1, "deletion_time": "",
                                                                      "destroyed": False}}})
            else:
                self._error(404, f"no handler for route '{path}'")

    def _login(self, state: VaultState, body: dict[str, Any]) -> None:
        role = state.approles.get(body.get("role_id", ""))
        if role is None or role["secret_id"] != body.get("secret_id"):
            self._error(400, "invalid role or secret ID")
            return
        token = state.issue(role["ttl"], role["max_ttl"])
        self._reply(200, {"auth": {"client_token": token, "lease_duration": role["ttl"], "renewable": True}})

    def _renew(self, info: dict[str, Any], token: str) -> None:
        if not info["renewable"]:
            self._error(400, "lease is not renewable")
            return
        now = time.monotonic()
        expires = now + info["ttl"]
        if info["max_expires"] is not None:
            if now >= info["max_expires"]:
                self._error(403, "permission denied")
                return
            expires = min(expires, info["max_expires"])  # Vault caps renewals at the max TTL
        info["expires"] = expires
        self._reply(200, {"auth": {"client_token": token, "lease_duration": int(expires - now), "renewable": True}})

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


def _seconds(value: str | int) -> int:
    text = str(value)
    for suffix, factor in (("h", 3600), ("m", 60), ("s", 1)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)
