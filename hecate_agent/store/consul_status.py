"""Publish the node's status to Consul and read the fleet's back.

`<prefix>/nodes/<node>/status` holds the status JSON, written while holding a
Consul session with a TTL (behavior `delete`): if the agent dies, the session
expires and the entry disappears, so a dead node is visibly gone rather than
frozen at "Synced". The agent also registers itself as a Consul service with a
TTL check fed by the same heartbeat, so Consul's UI and DNS show node health.

Consul being down never stops reconciling: only the latest status is kept
(no queue) and published when Consul answers again.

An idle node costs Consul little: the status is written when it changes (not
its timestamps: liveness is what the session and the TTL check are for), the
session is renewed at every heartbeat (a third of the session TTL) and the TTL
check is passed once per session TTL (its own TTL is three times that). At the
default 30 s TTL that is 0.13 requests/s per node.

py-consul is the maintained fork of python-consul (same `consul` import):
python-consul is unmaintained and its asyncio client is broken on Python 3.11.
Two of its habits are neutralised here: `CONSUL_HTTP_TOKEN` would override an
explicit token, and requests would otherwise wait without a timeout.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import consul

SERVICE_NAME = "hecate-agent"


class ConsulPublisher:
    def __init__(
        self,
        address: str,
        node: str,
        *,
        prefix: str = "hecate",
        token_file: Path | None = None,
        session_ttl: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self.address = address
        parts = urlsplit(address if "://" in address else f"http://{address}")
        token = token_file.read_text().strip() if token_file is not None else None
        self.client = consul.Consul(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 8500,
            scheme=parts.scheme or "http",
            token=token,
            connections_timeout=timeout,
        )
        self.client.token = token  # the library would otherwise prefer $CONSUL_HTTP_TOKEN
        self.node = node
        self.prefix = prefix.strip("/")
        self.session_ttl = max(10, int(session_ttl))
        self.session: str | None = None
        self.registered = False
        self.pending: dict[str, Any] | None = None
        self.written: str | None = None  # what Consul holds (without timestamps), while the session lives
        self.last: dict[str, Any] | None = None  # the status last written
        self.passed_at = -1e9  # monotonic time of the last TTL check pass
        self.failures = 0
        self.lock = threading.Lock()

    @property
    def key(self) -> str:
        return f"{self.prefix}/nodes/{self.node}/status"

    @property
    def service_id(self) -> str:
        return f"{SERVICE_NAME}-{self.node}"

    def publish(self, status: dict[str, Any]) -> bool:
        """Write `status` now, or keep it (only the newest) for the next heartbeat."""
        with self.lock:
            self.pending = status
            return self._flush()

    def heartbeat(self, latest: dict[str, Any] | None = None) -> bool:
        """Renew the session, feed the TTL check, and write the latest status (or what Consul missed)."""
        with self.lock:
            if latest is not None:
                self.pending = latest
            try:
                if self.session is not None:
                    try:
                        self.client.session.renew(self.session)
                    except consul.NotFound:
                        self._lost_session()  # expired while we could not reach Consul
                self._register()
                if time.monotonic() - self.passed_at >= self.session_ttl:
                    self.client.agent.check.ttl_pass(f"service:{self.service_id}", notes="hecate-agent heartbeat")
                    self.passed_at = time.monotonic()
            except (consul.ConsulException, OSError, ValueError) as exc:
                return self._failed(exc)
            return self._flush()

    def renew_session(self) -> None:
        """Renew the session now (a command has no heartbeat; a daemon's may be due): an expired one is
        forgotten, so the next use makes a new one instead of failing with it. Consul unreachable: unchanged."""
        with self.lock:
            if self.session is None:
                return
            try:
                self.client.session.renew(self.session)
            except consul.NotFound:
                self._lost_session()
            except (consul.ConsulException, OSError, ValueError):
                return

    def ensure_session(self) -> str:
        """The node's session (created if needed): rollout slots live and die with it, like the status."""
        with self.lock:
            if self.session is None:
                self.session = self._create_session()
            return self.session

    def _lost_session(self) -> None:
        self.session = None
        self.written = None  # the status went with the session: write it again
        if self.pending is None:
            self.pending = self.last

    def _create_session(self) -> str:
        self.written = None
        return str(
            self.client.session.create(name=self.service_id, behavior="delete", ttl=self.session_ttl, lock_delay=0)
        )

    def _register(self) -> None:
        if self.registered:
            return
        self.client.agent.service.register(
            SERVICE_NAME,
            service_id=self.service_id,
            check=consul.Check.ttl(f"{self.session_ttl * 3}s"),
            meta={"node": self.node},
        )
        self.registered = True

    def _flush(self) -> bool:
        if self.pending is None:
            return True
        content = _content(self.pending)
        if self.session is not None and content == self.written:
            self.pending = None  # nothing new for Consul
            return True
        try:
            if self.session is None:
                self.session = self._create_session()
            body = json.dumps(self.pending, sort_keys=True)
            if not self.client.kv.put(self.key, body, acquire=self.session):
                # Someone else's session holds the key (a previous run of this node): take over.
                self.client.kv.delete(self.key)
                if not self.client.kv.put(self.key, body, acquire=self.session):
                    self._lost_session()  # ours is gone (Consul refuses it): a new one next time
                    return self._failed(RuntimeError("session refused"))
        except (consul.ConsulException, OSError, ValueError) as exc:
            if isinstance(exc, consul.NotFound):
                self._lost_session()
            return self._failed(exc)
        self.last, self.pending = self.pending, None
        self.written = content
        return True

    def _failed(self, exc: Exception) -> bool:
        del exc  # the caller counts and logs; the message may carry the address, never the token
        self.failures += 1
        return False

    def close(self) -> None:
        with self.lock:
            if self.session is not None:
                with contextlib.suppress(consul.ConsulException, OSError):
                    self.client.session.destroy(self.session)
                self.session, self.written = None, None

    def fleet(self) -> list[dict[str, Any]]:
        """Every live node's status document."""
        _, entries = self.client.kv.get(f"{self.prefix}/nodes/", recurse=True)
        found = []
        for entry in entries or []:
            if entry["Key"].endswith("/status") and entry.get("Value"):
                try:
                    found.append(json.loads(entry["Value"]))
                except ValueError:
                    continue
        return sorted(found, key=lambda s: str(s.get("node")))


def _content(status: dict[str, Any]) -> str:
    """The status without its timestamps: what decides whether Consul needs a write."""
    attempt = status.get("lastAttempt")
    bare = {k: v for k, v in status.items() if k != "updatedAt"}
    if isinstance(attempt, dict):
        bare["lastAttempt"] = {k: v for k, v in attempt.items() if k != "at"}
    return json.dumps(bare, sort_keys=True, default=str)
