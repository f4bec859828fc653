"""The state directory: atomic files, permissions, the lock, snapshots, history, suspension."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from hecate_agent.store.state import LockedError, Snapshot, StateStore, write_atomic


def snap(revision: str, fingerprint: str) -> Snapshot:
    return Snapshot(revision, "2026-01-01T00:00:00Z", fingerprint, {"apps": {}}, {"a.conf": "x"}, [], {})


def test_atomic_write_and_permissions(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temporary files left


def test_snapshots_are_private_and_rolling(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", keep=3)
    for i in range(5):
        store.record(snap(f"rev{i}", f"fp{i}"))
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.snapshots_dir.stat().st_mode) == 0o700
    files = sorted(store.snapshots_dir.iterdir())
    assert len(files) == 3 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert [s.revision for s in store.snapshots()] == ["rev2", "rev3", "rev4"]
    assert store.last_applied().revision == "rev4"
    assert store.find(previous=True).revision == "rev3"
    assert store.find("rev2").fingerprint == "fp2"
    assert store.find("nope") is None


def test_a_damaged_snapshot_does_not_hide_the_others(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(snap("a", "1"))
    store.record(snap("b", "2"))
    sorted(store.snapshots_dir.iterdir())[0].write_text("{broken")
    assert [s.revision for s in store.snapshots()] == ["b"]


def _hold_lock(root: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    with StateStore(Path(root)).lock():
        ready.set()
        release.wait(10)


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockedError) as caught, StateStore(tmp_path).lock():
            pass
        assert f"pid {holder.pid}" in str(caught.value)
    finally:
        release.set()
        holder.join()
    with StateStore(tmp_path).lock():  # free again once the holder is gone
        pass


def test_history_suspend_and_journal(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.append_history({"outcome": "applied"})
    store.append_history({"outcome": "noop"})
    assert [e["outcome"] for e in store.history()] == ["applied", "noop"]
    assert store.suspension() is None
    store.suspend("maintenance", by="ops")
    assert store.suspension()["reason"] == "maintenance"
    assert store.resume() and store.suspension() is None and not store.resume()
    store.write_journal({"revision": "x"})
    assert store.journal() == {"revision": "x"}
    store.clear_journal()
    assert store.journal() is None


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text("{")
    from hecate_agent.store.state import StateError

    with pytest.raises(StateError) as caught:
        StateStore(tmp_path).history()
    assert "history.json is unreadable" in str(caught.value)
    os.chmod(tmp_path, 0o700)
