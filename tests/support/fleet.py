"""Reading a fleet's behaviour back from its agents' JSON logs and the Consul test server.

The rollout queue keeps no holder list in Consul (a node holds while fewer than
`maxConcurrent` contenders are ahead of it), so who held a slot when is read from
the agents' own "rollout slot taken" / "rollout slot released" log lines (ISO
timestamps with microseconds, one clock: every agent runs on this machine).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.consul_server import FakeConsul


def log_events(path: Path) -> list[dict[str, Any]]:
    events = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        text = line.split(">", 1)[1] if line.startswith("<") and ">" in line else line
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def slot_intervals(logs: dict[str, Path], revision: str) -> list[tuple[str, float, float]]:
    """(node, taken, released) for every slot held for `revision` (released: +inf while held)."""
    intervals = []
    for node, path in logs.items():
        taken: float | None = None
        for event in log_events(path):
            if event.get("revision") != revision:
                continue
            if event.get("event") == "rollout slot taken":
                taken = _seconds(event["timestamp"])
            elif event.get("event") == "rollout slot released" and taken is not None:
                intervals.append((node, taken, _seconds(event["timestamp"])))
                taken = None
        if taken is not None:
            intervals.append((node, taken, float("inf")))
    return intervals


def max_holders(logs: dict[str, Path], revision: str) -> int:
    """The most nodes that held a slot for `revision` at one moment."""
    edges = sorted((t, kind) for _, a, b in slot_intervals(logs, revision) for t, kind in ((a, 1), (b, -1)))
    # At equal times a release counts before a take (sorted: -1 < 1).
    most = count = 0
    for _, kind in edges:
        count += kind
        most = max(most, count)
    return most


def taken_after(logs: dict[str, Path], revision: str, when: float) -> list[str]:
    """Nodes that took a slot for `revision` after wall-clock time `when` (e.g. its halt was written)."""
    return sorted({node for node, taken, _ in slot_intervals(logs, revision) if taken > when})


def halt_written_at(server: FakeConsul, revision: str, prefix: str = "hecate") -> float | None:
    """Wall-clock time the halt of `revision` was written in the Consul test server (None: never)."""
    offset = time.time() - time.monotonic()
    with server.state.lock:
        writes = list(server.state.writes)
    for at, key, _ in writes:
        if key == f"{prefix}/halts/{revision}":
            return at + offset
    return None


def published(server: FakeConsul, prefix: str = "hecate") -> dict[str, dict[str, Any]]:
    """Every node's status document as Consul holds it."""
    with server.state.lock:
        entries = [e for k, e in server.state.kv.items() if k.startswith(f"{prefix}/nodes/") and k.endswith("/status")]
    return {s["node"]: s for s in (json.loads(base64.b64decode(e["Value"])) for e in entries)}
