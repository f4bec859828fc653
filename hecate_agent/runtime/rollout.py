"""Rollout coordination: a fleet takes a new revision a few nodes at a time.

Before applying a revision it does not run yet, a node joins a queue for that
revision in Consul: a contender key `<prefix>/rollout/<revision>/<session>`
held by the node's session. Consul orders the keys (CreateIndex); a node may
apply once fewer than `maxConcurrent` live contenders are ahead of it. Keys
ahead of a node only ever disappear, so at most `maxConcurrent` nodes hold a
slot at once. A node gives its slot back by deleting its key after apply,
verification and `soak`; a crashed node's key goes with its session (behavior
`delete`), so its slot comes free after the session TTL. Nothing is kept per
revision once the last node is through.

Waiting costs Consul little (a rollout is a bounded number of requests per
node, not one per change of the queue): a waiting node blocks on one key only,
the contender `maxConcurrent` places ahead of it, whose departure is what lets
it in when nodes finish in order. A holder that finishes before the front of
the queue touches the front's key, which wakes the node it lets in.

A revision that fails on a node (rolled back, or refused by verification or by
the renderer) is marked failed under `<prefix>/halts/<revision>`. Halts hold:
the node that halts touches every queued contender key (a write that keeps the
value and the session), so every waiting node wakes, sees a touched key ahead
of it, reads the halt and leaves the queue; and a node reads the halt again
after winning its slot, before it applies. A node that met a halt does not queue again: it
blocks on the halt key (one open request) until a newer revision arrives or an
operator runs `hecate-agent rollout resume REV`, and is woken when that happens.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import consul

from hecate_agent.errors import HecateError
from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import utc_now

_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_.-]")
QUEUE_WAIT = 30.0  # seconds per blocking read while queued (py-consul stretches its HTTP timeout to match)
HALT_WAIT = 300.0  # seconds per blocking read on a halt key
_CONSUL_ERRORS = (consul.ConsulException, OSError, ValueError)


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


def halted_revisions(client: Any, prefix: str) -> set[str]:
    """Every revision halted in Consul now (one read)."""
    _, entries = client.kv.get(f"{prefix.strip('/')}/halts/", recurse=True)
    found = set()
    for entry in entries or []:
        revision = _halt_value(entry).get("revision")
        found.add(str(revision) if revision else str(entry["Key"]).rsplit("/", 1)[-1])
    return found


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
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self.publisher = publisher
        self.client = publisher.client
        self.node = publisher.node
        self.prefix = publisher.prefix
        self.max_concurrent = max_concurrent
        self.soak = soak
        self.wait_timeout = wait_timeout
        self.stopping = stopping
        self.on_resume = on_resume  # called when a halt this node met is lifted
        self.session: str | None = None
        self.halts: dict[str, dict[str, Any]] = {}  # halts this node met, watched (not polled) until lifted
        self.watched: str | None = None  # the one revision whose halt key a thread blocks on

    def _semaphore(self, revision: str) -> str:
        return f"{self.prefix}/rollout/{revision_key(revision)}/"

    def halted(self, revision: str) -> dict[str, Any] | None:
        try:
            _, entry = self.client.kv.get(halt_key(self.prefix, revision))
        except _CONSUL_ERRORS as exc:
            raise RolloutError(f"rollout: cannot read the halt flag from Consul ({type(exc).__name__})") from None
        return None if entry is None else _halt_value(entry)

    def acquire(self, revision: str) -> bool:
        """Hold a slot for `revision`: True once held, False if the wait timed out or the agent stops.
        Raises RolloutHaltedError when the revision failed elsewhere, RolloutError when Consul cannot tell."""
        known = self.halts.get(revision)
        if known is not None:
            raise RolloutHaltedError(revision, known)  # no request: the halt watch wakes us when it is lifted
        self.halts, self.watched = {}, None  # a newer revision: the old halt's watch ends after its read
        try:
            self.session = self.publisher.ensure_session()
            mine = self._semaphore(revision) + self.session
            body = json.dumps({"node": self.node, "limit": self.max_concurrent, "since": utc_now()})
            if not self.client.kv.put(mine, body, acquire=self.session):
                raise RolloutError("rollout: Consul refused this node's contender key")
            # Queued first, then the halt read: a node that halts after this read touches our key.
            self._refuse_if_halted(revision)
            if self._wait_turn(revision, mine, time.monotonic() + self.wait_timeout):
                self._refuse_if_halted(revision)  # won the slot: a halt written meanwhile still holds
                return True
            self._withdraw(revision)
            return False
        except _CONSUL_ERRORS as exc:
            raise RolloutError(f"rollout: Consul did not answer ({type(exc).__name__}); waiting for it") from None

    def _wait_turn(self, revision: str, mine: str, deadline: float) -> bool:
        while not self.stopping.is_set():
            queue = self._queue(revision)
            keys = [e["Key"] for e in queue]
            if mine not in keys:
                raise RolloutError("rollout: this node's place in the queue went (its Consul session expired)")
            position = keys.index(mine)
            if any(e["ModifyIndex"] != e["CreateIndex"] for e in queue[:position]):
                # A contender key ahead was touched: by a halting node (or by a release, see there).
                self._refuse_if_halted(revision)
            # Every contender names its limit; the strictest one queued up to here binds.
            limit = min(_limit(e, self.max_concurrent) for e in queue[: position + 1])
            if position < limit:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            gate = queue[position - limit]  # its departure lets us in when nodes finish in order
            wait = max(1, int(min(QUEUE_WAIT, remaining)))
            self.client.kv.get(gate["Key"], index=gate["ModifyIndex"], wait=f"{wait}s")
        return False

    def _refuse_if_halted(self, revision: str) -> None:
        halt = self.halted(revision)
        if halt is None:
            return
        self._withdraw(revision)
        self._watch_halt(revision, halt)
        raise RolloutHaltedError(revision, halt)

    def _watch_halt(self, revision: str, halt: dict[str, Any]) -> None:
        """Remember the halt and block on its key in a thread, instead of queueing on every sync."""
        self.halts = {revision: halt}  # a newer revision makes older halts moot
        if self.watched == revision:
            return
        self.watched = revision
        threading.Thread(target=self._halt_watch, args=(revision,), name="halt-watch", daemon=True).start()

    def _halt_watch(self, revision: str) -> None:
        key = halt_key(self.prefix, revision)
        index: str | None = None
        while not self.stopping.is_set() and self.watched == revision:
            try:
                index, entry = self.client.kv.get(key, index=index, wait=f"{int(HALT_WAIT)}s" if index else None)
            except _CONSUL_ERRORS:
                self.stopping.wait(5.0)  # Consul away: the halt stays in force meanwhile
                index = None
                continue
            if entry is None:  # lifted (`rollout resume`)
                self.halts.pop(revision, None)
                if self.watched == revision:
                    self.watched = None
                if self.on_resume is not None:
                    self.on_resume()
                return

    def release(self, revision: str) -> None:
        """Give the slot back (best effort: the session's expiry frees it anyway).

        The node let in by this release watches the front of the queue. When this node was not the
        front (nodes finished out of order), the front's key is touched so that node wakes now rather
        than when the front finishes."""
        with contextlib.suppress(*_CONSUL_ERRORS):
            queue = self._queue(revision)
            keys = [e["Key"] for e in queue]
            mine = self._semaphore(revision) + (self.session or "")
            self._withdraw(revision)
            if mine in keys and keys.index(mine) > 0 and len(keys) > self.max_concurrent:
                front = queue[0]
                self.client.kv.put(front["Key"], front.get("Value") or b"", cas=front["ModifyIndex"])

    def _queue(self, revision: str) -> list[dict[str, Any]]:
        """The live contenders for `revision`, in queue order."""
        _, entries = self.client.kv.get(self._semaphore(revision), recurse=True)
        return sorted((e for e in entries or [] if e.get("Session")), key=lambda e: int(e["CreateIndex"]))

    def _withdraw(self, revision: str) -> None:
        if self.session is not None:
            self.client.kv.delete(self._semaphore(revision) + self.session)

    def halt(self, revision: str, error: str) -> None:
        """Mark `revision` failed for the whole fleet (the first node to fail is the one named), and
        wake every node queued for it: each watches one contender key, so each key is touched."""
        body = json.dumps({"node": self.node, "revision": revision, "error": error[:500], "at": utc_now()})
        # Best effort: the other nodes' own failures halt it too; this must never stop the rollback.
        with contextlib.suppress(*_CONSUL_ERRORS):
            self.client.kv.put(halt_key(self.prefix, revision), body, cas=0)
            _, entries = self.client.kv.get(self._semaphore(revision), recurse=True)
            for entry in entries or []:
                if entry.get("Session"):
                    # Same value, new ModifyIndex; CAS so a key deleted meanwhile is not recreated.
                    # A plain write keeps the key's session (no acquire/release).
                    value = entry.get("Value") or b""
                    self.client.kv.put(entry["Key"], value, cas=entry["ModifyIndex"])

    def soak_wait(self) -> None:
        self.stopping.wait(self.soak)


def _limit(entry: dict[str, Any], default: int) -> int:
    try:
        value = json.loads(entry.get("Value") or b"{}")
        return max(1, int(value.get("limit") or default))
    except (ValueError, TypeError, AttributeError):
        return default


def _halt_value(entry: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(entry.get("Value") or b"{}")
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}
