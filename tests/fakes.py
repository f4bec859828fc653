"""In-memory fakes of the engine's ports, so the engine is unit-tested in milliseconds.

- `MemoryTarget`: a target whose live state is a value in memory. It can be told to fail
  its apply, and it logs every apply/restore in a shared `events` list (to check order).
- `CrashingStore`: the real state store (in a tmp dir: it is fast) that "dies" right after
  writing the journal at a chosen step: a `Crash` (a BaseException, like SIGKILL nothing
  catches it) leaves the journal and the targets exactly as they were at that instant.
- `fake_node`: a Node with fake targets, no secrets, and a scripted verifier.
- `MemorySource`: a Source port serving revisions from dicts of files; `MemorySink`: a StatusSink.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hecate_agent.engine.errors import ApplyError
from hecate_agent.engine.node import Node
from hecate_agent.engine.ports import TargetLive
from hecate_agent.engine.prepare import Prepared
from hecate_agent.engine.verify import Probe
from hecate_agent.errors import SpecProblem
from hecate_agent.render.bundle import Rendered
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.secrets import SecretResolver
from hecate_agent.settings import AgentSettings
from hecate_agent.spec.loader import SourceFile
from hecate_agent.store.state import Snapshot, StateStore
from hecate_agent.targets.caddy import caddy_resources
from hecate_agent.targets.nginx import nginx_resources


class Crash(BaseException):
    """The process died here."""


class MemoryTarget:
    """A target that holds its state in memory.

    `pick` takes its desired state out of a Rendered revision; `key` is its field in a
    last-known-good snapshot (None: not kept there); `keyed` makes resources of a state.
    """

    def __init__(
        self,
        name: str,
        order: int,
        *,
        pick: Callable[[Rendered], Any],
        keyed: Callable[[Any], dict[str, Any]],
        key: str | None,
        events: list[str],
        state: Any = None,
    ) -> None:
        self.name = name
        self.order = order
        self.pick = pick
        self.keyed = keyed
        self.key = key
        self.events = events
        self.state: Any = state if state is not None else {}
        self.fail_apply: str | None = None  # an error message: the next applies fail with it
        self.refuse: list[str] = []  # preflight problems

    def read(self) -> TargetLive:
        return TargetLive(self.state)

    def desired(self, rendered: Rendered, live: Any) -> Any:
        del live
        return self.pick(rendered)

    def owned(self, state: Any) -> Any:
        return state

    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]:
        return self.keyed(state or {}), []

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return getattr(snapshot, self.key) if self.key else {}

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        return {self.key: prepared.desired[self.name]} if self.key else {}

    def preflight(self, prepared: Prepared) -> list[str]:
        del prepared
        return list(self.refuse)

    def begin(self, prepared: Prepared) -> dict[str, Any]:
        return {"old": prepared.live.state(self.name), "new": prepared.desired[self.name]}

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        del save
        if self.fail_apply is not None:
            self.events.append(f"fail {self.name}")
            raise ApplyError(self.name, self.fail_apply)
        self.events.append(f"apply {self.name}")
        self.state = prepared.desired[self.name]

    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None:
        if (live or self.read()).state != record["old"]:
            self.events.append(f"restore {self.name}")
            self.state = record["old"]

    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool:
        del snapshot
        return bool(live.state == record["new"])

    def finish(self, record: dict[str, Any]) -> None:
        del record

    def commit(self, record: dict[str, Any]) -> None:
        del record

    def close(self) -> None:
        pass


class CrashingStore(StateStore):
    """A state store that dies right after writing the journal at step `crash_at`."""

    crash_at: str | None = None

    def write_journal_text(self, text: str) -> None:
        super().write_journal_text(text)
        if self.crash_at is not None and json.loads(text).get("step") == self.crash_at:
            raise Crash(self.crash_at)


class Verifier:
    """The verification port, scripted: `failures` are returned for every call."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.calls: list[list[Probe]] = []

    def __call__(self, probes: Sequence[Probe]) -> list[str]:
        self.calls.append(list(probes))
        return list(self.failures)


def fake_targets(events: list[str]) -> list[MemoryTarget]:
    """Three targets in a declared order: a DNS-like one first (10), then Caddy-like (30), Nginx-like (40)."""
    return [
        MemoryTarget("nginx", 40, pick=lambda r: r.nginx_files, keyed=nginx_resources, key="nginx_files",
                     events=events),
        MemoryTarget("caddy", 30, pick=lambda r: r.caddy_owned, keyed=lambda s: caddy_resources(s, "hecate")[0],
                     key="caddy_config", events=events),
        MemoryTarget("dns", 10, pick=lambda r: {"records": sorted(k for k in r.specs if k.startswith("Route/"))},
                     keyed=lambda s: {f"Record/{k}": k for k in s.get("records", [])}, key=None, events=events),
    ]


def fake_node(root: Path, targets: list[MemoryTarget], *, verifier: Verifier | None = None,
              settings: dict[str, Any] | None = None, store: StateStore | None = None) -> Node:
    agent = AgentSettings.model_validate({"stateDir": str(root), "node": {"name": "fake-1"}, **(settings or {})})
    return Node(
        settings=agent,
        store=store or CrashingStore(root),
        capabilities=CaddyCapabilities(),
        resolver=SecretResolver({}, None),
        targets=list(targets),  # type: ignore[arg-type]
        verifier=verifier or Verifier(),
    )


class MemorySink:
    """The StatusSink port (Consul, in production): keeps every document it is given."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, status: dict[str, Any]) -> bool:
        self.published.append(status)
        return True


class MemorySource:
    """A Source port over revisions kept in memory: `push(files)` makes a new tip."""

    def __init__(self) -> None:
        self.revisions: dict[str, list[SourceFile]] = {}
        self.tip = ""
        self.accepted: list[str] = []

    def push(self, files: dict[str, str]) -> str:
        revision = f"rev-{len(self.revisions) + 1}"
        self.revisions[revision] = [SourceFile(path, text.encode()) for path, text in sorted(files.items())]
        self.tip = revision
        return revision

    def fetch(self) -> str:
        return self.tip

    def snapshot(self, revision: str) -> tuple[list[SourceFile], list[SpecProblem]]:
        return list(self.revisions[revision]), []

    def accept(self, revision: str) -> None:
        self.accepted.append(revision)
