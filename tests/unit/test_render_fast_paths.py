"""The faster paths of a cold `render` give exactly what the plain ones give: parsing in forked workers,
and indented JSON through orjson."""

from __future__ import annotations

import json

import pytest

from hecate_agent.render import caddy as caddy_render
from hecate_agent.render.caddy import render_caddy, to_json
from hecate_agent.sources.directory import read_directory
from hecate_agent.spec import loader
from hecate_agent.spec.loader import SourceFile, load_specs
from tests.helpers import SAMPLE_REPO, dump_yaml, route


def test_parsing_in_workers_gives_the_same_state_and_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    files = [SourceFile(f"routes/r{i}.yaml", dump_yaml(route(f"r{i}", f"r{i}.example.com")).encode()) for i in range(40)]
    files.append(SourceFile("routes/bad.yaml", b"apiVersion: hecate.io/v1\nkind: Route\nmetadata: {name: bad}\nspec: [\n"))
    files.append(SourceFile("routes/worse.yaml", dump_yaml(route("worse", "not a host")).encode()))
    one = load_specs(files)
    monkeypatch.setattr(loader, "PARALLEL_THRESHOLD", 2)
    forked: list[bool] = []
    real = loader._parse_in_children

    def spy(*args: object) -> object:
        parsed = real(*args)  # type: ignore[arg-type]
        forked.append(parsed is not None)
        return parsed

    monkeypatch.setattr(loader, "_parse_in_children", spy)
    two = load_specs(files, workers=3)
    assert forked == [True]
    assert one.problems and two.problems == one.problems and two.counts == one.counts
    good = [f for f in files if "bad" not in f.path and "worse" not in f.path]
    state_one, state_two = load_specs(good).state, load_specs(good, workers=2).state
    assert state_one is not None and state_two is not None
    assert to_json(render_caddy(state_two)) == to_json(render_caddy(state_one))
    assert [r.name for r in state_two.routes] == [r.name for r in state_one.routes]


def test_orjson_writes_the_bytes_the_standard_library_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("orjson")
    files, _ = read_directory(SAMPLE_REPO)
    state = load_specs(files).state
    assert state is not None
    owned = render_caddy(state, environment={"AUTHENTIK_OUTPOST_URL": "http://o:9000"})
    tricky = {"s": "\x00\x1f\x7f\u2028 é \"\\/ \t\n", "f": [0.3333, 0.0001, 0.9, 0.0], "e": {}, "l": [], "n": None}
    fast = [to_json(owned), to_json(tricky)]
    monkeypatch.setattr(caddy_render, "_orjson", None)
    plain = [to_json(owned), to_json(tricky)]
    assert fast == plain
    assert plain[1] == json.dumps(tricky, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
