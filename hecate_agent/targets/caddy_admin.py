"""Caddy adapter: the admin API (TCP or unix socket) and what the installed Caddy can do.

Facts this relies on (shared/research/proxy-brief.md): Caddy 2.6.2 sends the
config ETag as an HTTP trailer, which HTTP clients drop, so it is computed
here from the body (FNV-1a over the exact bytes); `POST /load` ignores
If-Match while `POST /config/` honours it; a unix-socket admin wants an empty
Host header; errors come back as `{"error": "..."}` and are passed on verbatim.

Reads are retried a few times, within ~1.5 s, when the connection is refused or
reset before Caddy answers: right after a `/load`, Caddy restarts its admin
endpoint, and a verification read landing in that moment must not roll back
(and halt) a revision every node can apply. An answer from Caddy (any HTTP
status) is never retried, and writes are never retried.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx

from hecate_agent import fastjson
from hecate_agent.errors import HecateError
from hecate_agent.render.caddy import CaddyCapabilities


class CaddyError(HecateError):
    """Caddy refused or could not be reached; `caddy_message` is Caddy's own text when it answered."""

    def __init__(self, message: str, *, status: int | None = None, caddy_message: str = "") -> None:
        self.status = status
        self.caddy_message = caddy_message
        super().__init__(message)


READ_RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8)  # seconds before each retry of a read Caddy did not answer


class CaddyConflictError(CaddyError):
    """The config changed since we read it (If-Match failed): someone else edited Caddy."""


def fnv1a32(data: bytes) -> str:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


@dataclass(frozen=True)
class LiveConfig:
    config: dict[str, Any]
    etag: str  # quoted, as If-Match wants it


class CaddyAdmin:
    """A thin, typed client of Caddy's admin API."""

    def __init__(self, admin_url: str = "http://127.0.0.1:2019", timeout: float = 30.0) -> None:
        self.admin_url = admin_url
        self.timeout = timeout
        if admin_url.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=admin_url[len("unix://") :])
            # A unix-socket admin endpoint only accepts an empty Host header (fact 11).
            self._client = httpx.Client(
                transport=transport, base_url="http://localhost", timeout=timeout, headers={"Host": ""}
            )
        else:
            self._client = httpx.Client(base_url=admin_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CaddyAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delays = READ_RETRY_DELAYS if method == "GET" else ()
        for attempt in range(len(delays) + 1):
            try:
                response = self._client.request(method, path, **kwargs)
                break
            except httpx.HTTPError as exc:
                if attempt == len(delays) or not isinstance(exc, httpx.TransportError):
                    raise CaddyError(f"cannot reach Caddy's admin API at {self.admin_url}: {exc}") from None
                time.sleep(delays[attempt])
        if response.status_code >= 400:
            text = _error_text(response)
            if response.status_code == 412:
                raise CaddyConflictError(
                    "Caddy's config changed since the agent read it (someone edited it); plan again",
                    status=412,
                    caddy_message=text,
                )
            raise CaddyError(
                f"Caddy refused {method} {path} (HTTP {response.status_code}): {text}",
                status=response.status_code,
                caddy_message=text,
            )
        return response

    def get_config(self) -> LiveConfig:
        """The whole config and its ETag.

        Caddy 2.6.2 sends the ETag as an HTTP trailer, which httpx drops, so this one
        request is made with h11 directly (it hands trailers over). Computing the
        FNV-1a hash ourselves would work too, but costs ~1.3 s per 5 MB in Python.
        """
        for delay in READ_RETRY_DELAYS:
            try:
                body, etag = self._get_with_trailers("/config/")
                break
            except CaddyError as exc:
                if exc.status is not None:  # Caddy answered: no transient error
                    raise
                time.sleep(delay)
        else:
            body, etag = self._get_with_trailers("/config/")
        config = fastjson.loads(body) if body.strip() else None
        return LiveConfig(config if isinstance(config, dict) else {}, etag or f'"/config/ {fnv1a32(body)}"')

    def _get_with_trailers(self, path: str) -> tuple[bytes, str | None]:
        connection = h11.Connection(h11.CLIENT)
        if self.admin_url.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = self.admin_url[len("unix://") :]
            host = ""
        else:
            parts = urlsplit(self.admin_url)
            if parts.scheme != "http":  # a TLS admin endpoint: fall back to hashing the body
                response = self._request("GET", path)
                return response.content, None
            family = socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            target = (parts.hostname, parts.port or 80)
            host = parts.netloc
        sock.settimeout(self.timeout)
        chunks: list[bytes] = []
        etag: str | None = None
        complete = False
        try:
            sock.connect(target)
            request = h11.Request(method="GET", target=path, headers=[("Host", host), ("Connection", "close")])
            sock.sendall(connection.send(request) + connection.send(h11.EndOfMessage()))
            status = 0
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(sock.recv(1 << 20))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    etag = _header(event.headers, b"etag")
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    etag = _header(event.headers, b"etag") or etag
                    complete = True
                    break
                elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    break
        except (OSError, h11.ProtocolError) as exc:
            raise CaddyError(f"cannot reach Caddy's admin API at {self.admin_url}: {exc}") from None
        finally:
            sock.close()
        if not complete:  # closed mid-answer: as unreachable as a refused connection
            raise CaddyError(f"cannot reach Caddy's admin API at {self.admin_url}: the connection closed early")
        body = b"".join(chunks)
        if status >= 400:
            text = body.decode(errors="replace").strip()
            raise CaddyError(f"Caddy refused GET {path} (HTTP {status}): {text}", status=status, caddy_message=text)
        return body, etag

    def ping(self) -> None:
        """Raise CaddyError when the admin API cannot be reached (any answer from Caddy will do): what a plan
        from memory checks, so that a Caddy that is down is found before anything is journaled or changed."""
        try:
            self._request("GET", "/config/admin")
        except CaddyError as exc:
            if exc.status is None:
                raise

    def load(self, config: dict[str, Any]) -> None:
        """Replace the whole config (no concurrency guard; prefer `replace`)."""
        self._request("POST", "/load", content=fastjson.dumps(config), headers={"Content-Type": "application/json"})

    def replace(self, config: dict[str, Any], etag: str) -> None:
        """Replace the whole config only if it is still the one read with `etag`."""
        self._request(
            "POST",
            "/config/",
            content=fastjson.dumps(config),
            headers={"Content-Type": "application/json", "If-Match": etag},
        )


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return response.text.strip()


def detect_capabilities(binary: str = "caddy", timeout: float = 20.0) -> CaddyCapabilities:
    """Version and modules of the Caddy installed on this node (`caddy version`, `caddy list-modules`)."""
    try:
        version_out = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=timeout, check=True
        ).stdout
        modules_out = subprocess.run(
            [binary, "list-modules"], capture_output=True, text=True, timeout=timeout, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CaddyError(f"cannot ask {binary!r} for its version and modules: {exc}") from None
    match = re.search(r"v?([0-9]+\.[0-9]+\.[0-9]+)", version_out)
    modules = frozenset(
        line.strip() for line in modules_out.splitlines() if re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", line.strip())
    )
    return CaddyCapabilities(version=match.group(1) if match else "unknown", modules=modules)
