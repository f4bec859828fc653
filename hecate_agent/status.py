"""The node's status document (DESIGN.md "Status"), kept in `<stateDir>/status.json`.

One function updates it, from the CLI's applies and from the daemon alike: it
reads the current document, changes what it is given, derives the phase, and
writes it atomically (0644: status holds no secrets; every string in it goes through
`redaction.scrub_value` first).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hecate_agent import __version__, redaction
from hecate_agent.state import StateStore, utc_now, write_atomic

_OUTCOME_PHASE = {
    "applied": "Synced",
    "noop": "Synced",
    "recovered": "Synced",
    "rolled_back": "Degraded",
    "refused": "OutOfSync",
    "invalid": "OutOfSync",
    "blocked": "OutOfSync",
    "quarantined": "Degraded",
    "failed": "Failed",
    "secret_error": "Degraded",
    "halted": "Halted",
    "waiting": "Progressing",
    "rollout_error": "Progressing",
}


def read_status(store: StateStore) -> dict[str, Any] | None:
    try:
        data = json.loads((store.root / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def update_status(
    store: StateStore,
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
    current = read_status(store) or {}
    last = store.last_applied()
    status: dict[str, Any] = {
        "node": node_name,
        "agentVersion": __version__,
        "desiredRevision": current.get("desiredRevision"),
        "appliedRevision": last.revision if last else None,
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
            "outcome": last_attempt.get("outcome"),
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
    suspended = store.suspension()
    status["suspended"] = suspended
    status["phase"] = _phase(status, suspended)
    status["updatedAt"] = utc_now()
    # A full or read-only state dir must not stop the agent; /status still serves it.
    status = redaction.scrub_value(status)  # errors may quote a rendered value
    with contextlib.suppress(OSError):
        write_atomic(store.root / "status.json", (json.dumps(status, indent=2, sort_keys=True) + "\n").encode(), 0o644)
    return status


def _phase(status: dict[str, Any], suspended: dict[str, Any] | None) -> str:
    if suspended:
        return "Suspended"
    if status.get("sourceError"):
        return "Degraded"
    outcome = (status.get("lastAttempt") or {}).get("outcome")
    phase = _OUTCOME_PHASE.get(str(outcome), "Progressing")
    if phase == "Synced" and (status.get("drift") or {}).get("detected"):
        return "OutOfSync"
    return phase
