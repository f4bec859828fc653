"""The status document: one writer that never loses a field, never torn, and a phase that never lies."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from hecate_agent.engine.outcomes import Outcome, Phase
from hecate_agent.store.state import Snapshot, StateStore, write_atomic
from hecate_agent.store.status import compose_status, phase_of, update_status

ROUNDS = 150


def store_with(tmp_path: Path, revision: str | None) -> StateStore:
    store = StateStore(tmp_path / "state")
    store.ensure()
    if revision is not None:
        store.record(Snapshot(revision, "2026-01-01T00:00:00Z", "f", {}, {}, [], {}))
    return store


def test_worker_probes_and_heartbeat_writing_at_once_never_lose_the_last_attempt(tmp_path: Path) -> None:
    """The daemon's three writers (the worker's attempt, the stream probes' components, the
    heartbeat's refresh) run concurrently; every document read in between parses, and once the
    worker recorded its attempt no later document is without it."""
    store = store_with(tmp_path, "rev-a")
    path = store.root / "status.json"
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    seen: list[dict[str, Any]] = []
    attempt_written = threading.Event()
    done = threading.Event()

    def worker() -> None:
        start.wait()
        for _ in range(ROUNDS):
            update_status(store, "n", last_attempt={"revision": "rev-a", "outcome": "applied"}, desired_revision="rev-a")
            attempt_written.set()

    def probes() -> None:
        start.wait()
        for i in range(ROUNDS):
            update_status(store, "n", components={"streams": {"s": {"127.0.0.1:1": {"up": i % 2 == 0}}}})

    def heartbeat() -> None:
        start.wait()
        for _ in range(ROUNDS):
            update_status(store, "n")

    def reader() -> None:
        start.wait()
        while not done.is_set():
            after = attempt_written.is_set()
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            if after:
                seen.append(data)

    def guarded(target: Any) -> Any:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in (worker, probes, heartbeat)]
    watcher = threading.Thread(target=guarded(reader))
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=30)
    assert not errors, errors
    assert seen, "the reader saw no document after the first attempt"
    lost = [d for d in seen if d.get("lastAttempt") is None]
    assert not lost, f"{len(lost)} of {len(seen)} documents lost lastAttempt"
    final = json.loads(path.read_text())
    assert final["lastAttempt"]["outcome"] == "applied"
    assert final["components"]["streams"]["s"]
    assert final["phase"] == "Synced"
    assert sorted(p.name for p in store.root.iterdir() if p.name.endswith(".tmp")) == []


def test_concurrent_atomic_writes_of_one_file_each_use_their_own_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    errors: list[BaseException] = []

    def write(value: int) -> None:
        try:
            for _ in range(100):
                write_atomic(target, json.dumps({"v": value, "pad": "x" * 4096}).encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert json.loads(target.read_text())["v"] in range(4)
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]


def doc(outcome: Outcome | None, applied: str | None, desired: str | None, **extra: Any) -> dict[str, Any]:
    attempt = {"revision": desired, "outcome": str(outcome)} if outcome is not None else None
    return {"appliedRevision": applied, "desiredRevision": desired, "lastAttempt": attempt, **extra}


def test_synced_only_when_the_last_attempt_succeeded_and_applied_is_desired() -> None:
    assert phase_of(doc(Outcome.APPLIED, "a", "a")) is Phase.SYNCED
    assert phase_of(doc(Outcome.NOOP, "a", "a")) is Phase.SYNCED
    assert phase_of(doc(None, "a", "a")) is Phase.PROGRESSING  # no attempt yet: not Synced
    assert phase_of(doc(Outcome.APPLIED, "a", "b")) is Phase.PROGRESSING  # a newer revision is wanted
    assert phase_of(doc(Outcome.APPLIED, None, "a")) is Phase.PROGRESSING
    assert phase_of(doc(Outcome.ERROR, "a", "b")) is Phase.DEGRADED
    assert phase_of(doc(Outcome.ROLLED_BACK, "a", "b")) is Phase.DEGRADED
    assert phase_of(doc(Outcome.FAILED, "a", "b")) is Phase.FAILED
    assert phase_of(doc(Outcome.APPLIED, "a", "a", drift={"detected": True})) is Phase.OUT_OF_SYNC
    assert phase_of(doc(Outcome.APPLIED, "a", "a", suspended={"reason": "x"})) is Phase.SUSPENDED
    assert phase_of(doc(Outcome.APPLIED, "a", "a", sourceError="down")) is Phase.DEGRADED
    assert phase_of(doc(None, "a", "a") | {"lastAttempt": {"outcome": "no-such-outcome"}}) is Phase.PROGRESSING


def test_compose_keeps_what_it_is_not_given() -> None:
    first = compose_status({}, node_name="n", applied_revision="a", suspended=None,
                           last_attempt={"revision": "a", "outcome": Outcome.APPLIED})
    assert first["lastAttempt"]["outcome"] == "applied" and first["desiredRevision"] == "a"
    second = compose_status(first, node_name="n", applied_revision="a", suspended=None, components={"caddy": {}})
    assert second["lastAttempt"] == first["lastAttempt"] and second["phase"] == "Synced"
