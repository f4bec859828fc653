"""What an apply of 10,000 routes skips or does faster, and that the result is the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hecate_agent import fastjson
from hecate_agent.plan import make_plan
from hecate_agent.store.state import Snapshot, StateStore

VALUES = [
    {"b": [1, 2, {"z": "x", "a": None}], "a": True, "c": -3.5},
    {"name": "Zürich ☃", "control": "\x01\n\t\"\\"},
    {1: "int key"},
    {"big": 2**70},
    [],
]


@pytest.mark.parametrize("value", VALUES)
def test_fastjson_reads_back_what_the_standard_library_would(value: object) -> None:
    for sort_keys in (False, True):
        text = fastjson.dumps(value, sort_keys=sort_keys)
        assert json.loads(text) == json.loads(json.dumps(value, sort_keys=sort_keys))
        assert fastjson.loads(text) == json.loads(text)
    assert fastjson.dumps(VALUES[0], sort_keys=True) == json.dumps(VALUES[0], sort_keys=True, separators=(",", ":")).encode()


def test_fastjson_refusals_are_the_standard_librarys() -> None:
    assert fastjson.loads(b'{"n": NaN}')["n"] != 0  # orjson refuses NaN; the standard library reads it
    with pytest.raises(ValueError):
        fastjson.loads(b'{"broken": ')


def test_the_next_snapshot_number_comes_from_the_file_names_even_past_a_damaged_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record(Snapshot("rev-1", "2026-01-01T00:00:00Z", "f1"))
    (store.snapshots_dir / "00000007-rev-x.json").write_text("{damaged")
    recorded = store.record(Snapshot("rev-2", "2026-01-01T00:00:01Z", "f2", caddy_config={"é": "☃"}))
    assert recorded.sequence == 8
    assert [s.sequence for s in store.snapshots()] == [1, 8]
    assert StateStore(tmp_path).last_applied() == recorded  # non-ASCII written as UTF-8, read back as such


def test_an_unexplained_plan_has_the_same_actions_drift_and_summary() -> None:
    desired = {"Route/a": {"https": {"x": 2}}, "Route/b": {"https": {"x": 1}}, "Route/c": {"https": {"x": 1}}}
    live = {"Route/a": {"https": {"x": 1}}, "Route/b": {"https": {"x": 1}}, "Route/c": {"https": {"x": 5}}}
    last = {"Route/a": {"https": {"x": 1}}, "Route/b": {"https": {"x": 1}}, "Route/c": {"https": {"x": 1}}}
    specs = {k: {"spec": k} for k in desired}
    common = dict(revision="r", desired=desired, desired_specs=specs, live=live, last=last, last_specs=specs,
                  last_revision="q", desired_fingerprint="d", live_fingerprint="l")
    explained, unexplained = make_plan(**common), make_plan(**common, explain=False)  # type: ignore[arg-type]
    assert explained.summary() == unexplained.summary() == {
        "create": 0, "update": 2, "delete": 0, "unchanged": 1, "drift": 1
    }
    assert [(c.key, c.action, c.drift) for c in explained.changes] == [
        (c.key, c.action, c.drift) for c in unexplained.changes
    ]
    assert any(c.fields for c in explained.changes) and not any(c.fields for c in unexplained.changes)
