"""Rollout coordination: a fleet takes a new revision a few nodes at a time.

Before applying a revision it does not run yet, a node takes a slot in a Consul
semaphore for that revision (Consul's semaphore recipe: a contender key per
node held by its session, and a `.lock` key whose `Holders` list is only ever
changed with check-and-set). It gives the slot back after apply, verification
and `soak`. The session is the one the node's status lives under: if the node
dies, its contender key goes with the session and the others prune it from
`Holders`, so a crashed node's slot comes free after the session TTL.

A revision that fails on a node (rolled back, or refused by verification or by
the renderer) is marked failed under `<prefix>/halts/<revision>`; every other
node refuses it ("halted by node X") until a newer revision arrives or an
operator runs `hecate-agent rollout resume REV`.

Waiting for a slot uses blocking queries (`?index=`), so a fleet of waiting
nodes costs Consul one open request each, not a poll loop.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from typing import Any

import consul

from hecate_agent.errors import HecateError
from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import utc_now

_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_.-]")
LOCK = ".lock"
BLOCKING_WAIT = 3  # seconds per blocking query; below the client's HTTP timeout


class RolloutError(HecateError):
    """Consul could not be asked for a slot (the node waits and tries again; it never applies unasked)."""


class RolloutHaltedError(HecateError):
    def __init__(self, revision: str, halt: dict[str, Any]) -> None:
        self.revision = revision
        self.halt = halt
        super().__init__(
            f"halted by node {halt.get('node', '?')}: revision {revision} failed there "
            f"({halt.get('error') or 'no detail'}); a newer revision, or "
            f"`hecate-agent rollout resume {revision}`, lifts the halt"
        )


def revision_key(revision: str) -> str:
    return _UNSAFE_KEY.sub("_", revision)[:200]


def halt_key(prefix: str, revision: str) -> str:
    return f"{prefix.strip('/')}/halts/{revision_key(revision)}"


def resume(client: Any, prefix: str, revision: str) -> bool:
    """Lift a halt; True if there was one."""
    _, entry = client.kv.get(halt_key(prefix, revision))
    if entry is None:
        return False
    client.kv.delete(halt_key(prefix, revision))
    return True


class RolloutCoordinator:
    def __init__(
        self,
        publisher: ConsulPublisher,
        *,
        max_concurrent: int,
        soak: float,
        wait_timeout: float,
        stopping: threading.Event,
    ) -> None:
        self.publisher = publisher
        self.client = publisher.client
        self.node = publisher.node
        self.prefix = publisher.prefix
        self.max_concurrent = max_concurrent
        self.soak = soak
        self.wait_timeout = wait_timeout
        self.stopping = stopping
        self.session: str | None = None

    def _semaphore(self, revision: str) -> str:
        return f"{self.prefix}/rollout/{revision_key(revision)}/"

    def halted(self, revision: str) -> dict[str, Any] | None:
        try:
            _, entry = self.client.kv.get(halt_key(self.prefix, revision))
        except (consul.ConsulException, OSError, ValueError) as exc:
            raise RolloutError(f"rollout: cannot read the halt flag from Consul ({type(exc).__name__})") from None
        if entry is None:
            return None
        try:
            value = json.loads(entry.get("Value") or b"{}")
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def acquire(self, revision: str) -> bool:
        """Hold a slot for `revision`: True once held, False if the wait timed out or the agent stops.
        Raises RolloutHaltedError when the revision failed elsewhere, RolloutError when Consul cannot tell."""
        prefix = self._semaphore(revision)
        try:
            self.session = self.publisher.ensure_session()
            contender = prefix + self.session
            body = json.dumps({"node": self.node, "since": utc_now()})
            if not self.client.kv.put(contender, body, acquire=self.session):
                raise RolloutError("rollout: Consul refused this node's contender key")
            deadline = time.monotonic() + self.wait_timeout
            index: str | None = None
            while not self.stopping.is_set():
                halt = self.halted(revision)
                if halt is not None:
                    self._withdraw(revision)
                    raise RolloutHaltedError(revision, halt)
                remaining = max(0.1, min(BLOCKING_WAIT, deadline - time.monotonic()))
                index, entries = self.client.kv.get(
                    prefix, recurse=True, index=index, wait=f"{int(remaining * 1000)}ms" if index else None
                )
                if self._try_take(prefix, entries or []):
                    return True
                if time.monotonic() >= deadline:
                    self._withdraw(revision)
                    return False
            self._withdraw(revision)
            return False
        except (consul.ConsulException, OSError, ValueError) as exc:
            raise RolloutError(f"rollout: Consul did not answer ({type(exc).__name__}); waiting for it") from None

    def _try_take(self, prefix: str, entries: list[dict[str, Any]]) -> bool:
        lock_entry = next((e for e in entries if e["Key"] == prefix + LOCK), None)
        alive = {e["Session"] for e in entries if e["Key"] != prefix + LOCK and e.get("Session")}
        lock = json.loads(lock_entry["Value"]) if lock_entry and lock_entry.get("Value") else {}
        limit = int(lock.get("Limit") or self.max_concurrent)  # the first contender's limit binds everyone
        holders = [h for h in lock.get("Holders") or [] if h in alive]  # crashed nodes' sessions are gone
        if self.session in holders:
            return True
        if len(holders) >= limit:
            return False
        updated = json.dumps({"Limit": limit, "Holders": [*holders, self.session]})
        cas = lock_entry["ModifyIndex"] if lock_entry else 0
        return bool(self.client.kv.put(prefix + LOCK, updated, cas=cas))

    def release(self, revision: str) -> None:
        """Give the slot back (best effort: the session's expiry frees it anyway)."""
        with contextlib.suppress(consul.ConsulException, OSError, ValueError):
            self._withdraw(revision)

    def _withdraw(self, revision: str) -> None:
        if self.session is None:
            return
        prefix = self._semaphore(revision)
        for _ in range(20):  # CAS races with other nodes; each round sees fresher state
            _, entry = self.client.kv.get(prefix + LOCK)
            if entry is None:
                break
            lock = json.loads(entry["Value"] or b"{}")
            holders = [h for h in lock.get("Holders") or [] if h != self.session]
            if holders == lock.get("Holders"):
                break
            if not holders:
                # The last holder tidies up, so Consul does not keep a key per revision forever. A
                # node about to take a slot had read this index: its CAS fails, it re-reads, and it
                # creates the key again with its own limit.
                if self.client.kv.delete(prefix + LOCK, cas=entry["ModifyIndex"]):
                    break
            elif self.client.kv.put(prefix + LOCK, json.dumps({**lock, "Holders": holders}), cas=entry["ModifyIndex"]):
                break
        self.client.kv.delete(prefix + self.session)

    def halt(self, revision: str, error: str) -> None:
        """Mark `revision` failed for the whole fleet (the first node to fail is the one named)."""
        body = json.dumps({"node": self.node, "error": error[:500], "at": utc_now()})
        # Best effort: the other nodes' own failures halt it too; this must never stop the rollback.
        with contextlib.suppress(consul.ConsulException, OSError, ValueError):
            self.client.kv.put(halt_key(self.prefix, revision), body, cas=0)

    def soak_wait(self) -> None:
        self.stopping.wait(self.soak)
