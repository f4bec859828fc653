"""Over a hundred malformed repositories: each gets its exact messages and positions, and none of them
changes a running node (real Caddy + Nginx, the daemon's own reconcile)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.report import problem_line
from hecate_agent.runtime.daemon import Daemon
from hecate_agent.sources.directory import read_directory
from hecate_agent.spec.loader import load_specs
from tests.reliability.cases import BASE, CASES
from tests.support.node import NodeUnderTest

GOLDEN = Path(__file__).with_name("malformed_expected.json")
PORT_IN_GOLDEN = 25432


def write_case(root: Path, case: dict[str, str | bytes | None], port: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    files: dict[str, str | bytes | None] = {**BASE, **case}
    for relative, content in files.items():
        if content is None:
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data.replace(b"STREAM_PORT", str(port).encode()))


def reported(root: Path) -> list[str]:
    files, problems = read_directory(root)
    result = load_specs(files)
    return [problem_line(p).replace(f"{root}/", "") for p in sorted(problems + result.problems)]


def golden() -> dict[str, list[str]]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def test_there_are_at_least_a_hundred_distinct_cases_and_the_base_is_valid(tmp_path: Path) -> None:
    assert len(CASES) >= 100
    write_case(tmp_path / "repo", {}, PORT_IN_GOLDEN)
    assert reported(tmp_path / "repo") == []
    assert set(golden()) == set(CASES), "regenerate: UPDATE_GOLDEN=1 pytest tests/reliability/test_malformed_specs.py"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_malformed_repository_gets_its_exact_messages_and_positions(name: str, tmp_path: Path) -> None:
    write_case(tmp_path / "repo", CASES[name], PORT_IN_GOLDEN)
    lines = reported(tmp_path / "repo")
    if os.environ.get("UPDATE_GOLDEN"):
        expected = golden()
        expected[name] = lines
        GOLDEN.write_text(json.dumps(dict(sorted(expected.items())), indent=2, ensure_ascii=False) + "\n")
    assert lines, f"{name}: accepted, but it is broken"
    assert lines == golden()[name]
    for line in lines:
        # file:line:col first; a position of 0:0 only for problems about a whole file (size, encoding).
        location = line.split(": ", 1)[0]
        assert location.count(":") == 2 or name == "size-file-too-large", line


def test_no_malformed_revision_changes_a_running_node(node: NodeUnderTest, tmp_path: Path) -> None:
    from tests.support.servers import free_port

    specs = tmp_path / "specs"
    port = free_port()
    write_case(specs, {}, port)
    # The base policy names a flow, which only Authentik enforces: declared as configured by hand.
    node.configure(source={"directory": str(specs)}, authentik={"provisioning": "external"})
    daemon = Daemon(node.config, environ={})
    try:
        assert daemon.reconcile("start") == "applied"

        def live() -> tuple[Any, dict[str, str]]:
            with node.caddy.admin() as admin:
                caddy = admin.get_config().config
            streams = {p.name: p.read_text() for p in node.nginx.stream_dir.glob("*.conf")}
            return caddy, streams

        before = live()
        applied = daemon.node.store.last_applied()
        assert applied is not None
        for name, case in sorted(CASES.items()):
            write_case(specs, case, port)
            outcome = daemon.reconcile("file-change")
            assert outcome == "invalid", (name, outcome)
            assert live() == before, f"{name} changed the proxies"
            last = daemon.node.store.last_applied()
            assert last is not None and last.revision == applied.revision, name
        write_case(specs, {}, port)
        assert daemon.reconcile("file-change") in ("noop", "applied")
        assert live() == before
    finally:
        daemon.node.close()
