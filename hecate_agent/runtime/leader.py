"""Leader election: one node of the fleet does what must be done once (a DNS zone, an Authentik sync).

A Consul lock, as Consul's leader-election recipe has it: the key
`<prefix>/leaders/<name>` is acquired with the node's session (`?acquire=`),
the one the node's status lives under. Whoever holds the key leads.

- Released on shutdown: `release()` (`?release=`), and destroying the session
  (the agent does on stop) releases it too.
- Taken over when the holder dies: its session expires after the session TTL
  (or is invalidated); the session's behavior is `delete`, so the key goes and a
  node blocked in `wait()` (a blocking read on the key) takes it. The sessions
  have no lock-delay, so the takeover is immediate.
- Without Consul (a single node, or a fleet that elects by configuration) a
  static setting decides: `static_leader=True` leads, anything else does not.

`is_leader()` asks Consul (one read) rather than trusting a cached answer: a
session can expire behind the node's back. A Consul error counts as "not the
leader", so two nodes never both act because one could not ask.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import consul

from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import utc_now

_CONSUL_ERRORS = (consul.ConsulException, OSError, ValueError)
WAIT_STEP = 30.0  # seconds per blocking read in wait()


class LeaderElection:
    def __init__(
        self,
        publisher: ConsulPublisher | None,
        name: str,
        session: str | None = None,
        *,
        static_leader: bool = False,
        stopping: threading.Event | None = None,
    ) -> None:
        self.publisher = publisher
        self.name = name
        self.session = session  # None: the publisher's session (created when first needed)
        self.static_leader = static_leader
        self.stopping = stopping or threading.Event()

    @property
    def key(self) -> str:
        prefix = self.publisher.prefix if self.publisher is not None else "hecate"
        return f"{prefix}/leaders/{self.name}"

    def _session(self) -> str:
        assert self.publisher is not None
        if self.session is None:
            self.session = self.publisher.ensure_session()
        return self.session

    def try_acquire(self) -> bool:
        """Take the lead if nobody holds it; True if this node leads now."""
        if self.publisher is None:
            return self.static_leader
        try:
            session = self._session()
            body = json.dumps({"node": self.publisher.node, "since": utc_now()})
            return bool(self.publisher.client.kv.put(self.key, body, acquire=session))
        except _CONSUL_ERRORS:
            return False

    def is_leader(self) -> bool:
        if self.publisher is None:
            return self.static_leader
        entry = self._entry()
        return entry is not None and self.session is not None and entry.get("Session") == self.session

    def leader(self) -> str | None:
        """The node that leads (from the key's value), or None when nobody does or Consul cannot tell."""
        if self.publisher is None:
            return None
        entry = self._entry()
        if entry is None or not entry.get("Session"):
            return None
        try:
            value = json.loads(entry.get("Value") or b"{}")
        except ValueError:
            return None
        return str(value.get("node")) if isinstance(value, dict) and value.get("node") else None

    def _entry(self) -> dict[str, Any] | None:
        assert self.publisher is not None
        try:
            _, entry = self.publisher.client.kv.get(self.key)
        except _CONSUL_ERRORS:
            return None
        return entry if isinstance(entry, dict) else None

    def release(self) -> None:
        """Give up the lead (best effort: the session's end releases it anyway)."""
        if self.publisher is None or self.session is None:
            return
        try:
            self.publisher.client.kv.put(self.key, b"", release=self.session)
        except _CONSUL_ERRORS:
            return

    def wait(self, timeout: float) -> bool:
        """Block until this node leads (True) or `timeout` seconds pass / the agent stops (False).
        Waiting is a blocking read on the key: it wakes when the holder releases or its session dies."""
        if self.publisher is None:
            return self.static_leader
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            if self.try_acquire():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                index, entry = self.publisher.client.kv.get(self.key)
            except _CONSUL_ERRORS:
                entry, index = None, None
            if entry is not None and entry.get("Session"):
                wait = max(1, int(min(WAIT_STEP, remaining)))
                try:
                    self.publisher.client.kv.get(self.key, index=index, wait=f"{wait}s")
                except _CONSUL_ERRORS:
                    self.stopping.wait(min(1.0, remaining))
            else:
                # Free, yet not ours (Consul away, or our session refused): try again shortly, not in a spin.
                self.stopping.wait(min(1.0, remaining))
        return False
