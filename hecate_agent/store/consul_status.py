"""Publish the node's status to Consul and read the fleet's back.

`<prefix>/nodes/<node>/status` holds the status JSON, written while holding a
Consul session with a TTL (behavior `delete`): if the agent dies, the session
expires and the entry disappears, so a dead node is visibly gone rather than
frozen at "Synced". The agent also registers itself as a Consul service with a
TTL check fed by the same heartbeat, so Consul's UI and DNS show node health.

Consul being down never stops reconciling: only the latest status is kept
(no queue) and published when Consul answers again.

py-consul is the maintained fork of python-consul (same `consul` import):
python-consul is unmaintained and its asyncio client is broken on Python 3.11.
Two of its habits are neutralised here: `CONSUL_HTTP_TOKEN` would override an
explicit token, and requests would otherwise wait without a timeout.
"""

from __future__ import annotations

import contextlib
import json
import threading
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
                        self.session = None  # expired while we could not reach Consul
                self._register()
                self.client.agent.check.ttl_pass(f"service:{self.service_id}", notes="hecate-agent heartbeat")
            except (consul.ConsulException, OSError, ValueError) as exc:
                return self._failed(exc)
            return self._flush()

    def ensure_session(self) -> str:
        """The node's session (created if needed): rollout slots live and die with it, like the status."""
        with self.lock:
            if self.session is None:
                self.session = self._create_session()
            return self.session

    def _create_session(self) -> str:
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
        try:
            if self.session is None:
                self.session = self._create_session()
            body = json.dumps(self.pending, sort_keys=True)
            if not self.client.kv.put(self.key, body, acquire=self.session):
                # Someone else's session holds the key (a previous run of this node): take over.
                self.client.kv.delete(self.key)
                self.client.kv.put(self.key, body, acquire=self.session)
        except (consul.ConsulException, OSError, ValueError) as exc:
            if isinstance(exc, consul.NotFound):
                self.session = None
            return self._failed(exc)
        self.pending = None
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
                self.session = None

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
