"""The node's status document (DESIGN.md "Status"), kept in `<stateDir>/status.json`.

One writer: every change goes through `update_status`, which holds a lock for the
whole read-modify-write (a thread lock within the agent, and `status.lock` in the
state dir across processes, so the CLI and the daemon do not interleave either).
The worker, the stream probes and the heartbeat may all call it at once: none of
them can lose what another wrote (`lastAttempt` in particular). The file is
replaced atomically with a temporary file of its own per write (never torn).

The phase is derived from the document, never stored separately: `Synced` only
when the last attempt succeeded and the applied revision is the desired one.
Every string goes through `redaction.scrub_value` first (0644: status holds no secrets).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hecate_agent import __version__, redaction
from hecate_agent.engine.outcomes import PHASE_OF, SUCCEEDED, Phase, outcome_of
from hecate_agent.store.state import utc_now, write_atomic

if TYPE_CHECKING:
    from hecate_agent.engine.ports import StateStorePort

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def read_status(store: StateStorePort) -> dict[str, Any] | None:
    try:
        data = json.loads((store.root / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _writer(root: Path) -> Iterator[None]:
    """The one-writer lock of a state dir: in this process, then across processes."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(root, threading.Lock())
    with lock:
        fd = None
        with contextlib.suppress(OSError):  # a read-only state dir: the thread lock still holds
            fd = os.open(root / "status.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)


def update_status(
    store: StateStorePort,
    node_name: str,
    *,
    last_attempt: dict[str, Any] | None = None,
    desired_revision: str | None = None,
    drift: dict[str, Any] | None = None,
    components: dict[str, Any] | None = None,
    source_error: str | None = None,
    clear_source_error: bool = False,
    quarantined: list[str] | None = None,
) -> dict[str, Any]:
    """Change what is given, keep the rest, derive the phase, write once. Returns the document."""
    with _writer(store.root):
        current = read_status(store) or {}
        status = compose_status(
            current,
            node_name=node_name,
            applied_revision=_applied(store),
            suspended=store.suspension(),
            last_attempt=last_attempt,
            desired_revision=desired_revision,
            drift=drift,
            components=components,
            source_error=source_error,
            clear_source_error=clear_source_error,
            quarantined=quarantined,
        )
        # A full or read-only state dir must not stop the agent; /status still serves it.
        with contextlib.suppress(OSError):
            data = (json.dumps(status, indent=2, sort_keys=True) + "\n").encode()
            write_atomic(store.root / "status.json", data, 0o644)
    return status


def _applied(store: StateStorePort) -> str | None:
    last = store.last_applied()
    return last.revision if last else None


def compose_status(
    current: dict[str, Any],
    *,
    node_name: str,
    applied_revision: str | None,
    suspended: dict[str, Any] | None,
    last_attempt: dict[str, Any] | None = None,
    desired_revision: str | None = None,
    drift: dict[str, Any] | None = None,
    components: dict[str, Any] | None = None,
    source_error: str | None = None,
    clear_source_error: bool = False,
    quarantined: list[str] | None = None,
) -> dict[str, Any]:
    """The new status document from the current one and what changed. Pure."""
    status: dict[str, Any] = {
        "node": node_name,
        "agentVersion": __version__,
        "desiredRevision": current.get("desiredRevision"),
        "appliedRevision": applied_revision,
        "lastAttempt": current.get("lastAttempt"),
        "drift": current.get("drift") or {"detected": False, "at": None, "resources": []},
        "components": current.get("components") or {},
        "sourceError": None if clear_source_error else current.get("sourceError"),
        "quarantined": current.get("quarantined") or [],
    }
    if quarantined is not None:
        status["quarantined"] = quarantined
    if last_attempt is not None:
        status["lastAttempt"] = {
            "revision": last_attempt.get("revision"),
            "at": last_attempt.get("at") or utc_now(),
            "outcome": str(last_attempt.get("outcome")) if last_attempt.get("outcome") is not None else None,
            "error": last_attempt.get("error"),
        }
        if last_attempt.get("haltedBy"):
            status["lastAttempt"]["haltedBy"] = last_attempt["haltedBy"]
    if desired_revision is not None:
        status["desiredRevision"] = desired_revision
    elif last_attempt is not None and last_attempt.get("revision"):
        status["desiredRevision"] = last_attempt["revision"]
    if drift is not None:
        status["drift"] = drift
    if components is not None:
        status["components"] = {**status["components"], **components}
    if source_error is not None:
        status["sourceError"] = source_error
    status["suspended"] = suspended
    status["phase"] = str(phase_of(status))
    status["updatedAt"] = utc_now()
    scrubbed: dict[str, Any] = redaction.scrub_value(status)  # errors may quote a rendered value
    return scrubbed


def phase_of(status: dict[str, Any]) -> Phase:
    """Suspended, else Degraded on a source error, else what the last attempt says — and Synced
    only when that attempt succeeded, the applied revision is the desired one, and nothing drifted."""
    if status.get("suspended"):
        return Phase.SUSPENDED
    if status.get("sourceError"):
        return Phase.DEGRADED
    outcome = outcome_of((status.get("lastAttempt") or {}).get("outcome"))
    phase = PHASE_OF.get(outcome, Phase.PROGRESSING) if outcome is not None else Phase.PROGRESSING
    if phase is not Phase.SYNCED:
        return phase
    applied, desired = status.get("appliedRevision"), status.get("desiredRevision")
    if outcome not in SUCCEEDED or applied is None or (desired is not None and applied != desired):
        return Phase.PROGRESSING
    if (status.get("drift") or {}).get("detected"):
        return Phase.OUT_OF_SYNC
    return Phase.SYNCED
