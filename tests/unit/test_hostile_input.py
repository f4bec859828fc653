"""Hostile input through the command line: every refusal is a positioned problem, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import dump_yaml, route, stream, write_repo

HUGE = "9" * 5000


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hecate_agent", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def huge_integer_repo(root: Path) -> Path:
    return write_repo(root, {
        "routes/a.yaml": dump_yaml(route()).replace("dial: 10.0.0.1:8080", f"dial: 10.0.0.1:8080\n    weight: {HUGE}"),
        "streams/s.yaml": dump_yaml(stream()).replace("port: 5432", f"port: 0x{'f' * 5000}"),
    })


def assert_positioned(output: str, stderr: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in output
    assert "routes/a.yaml:9:13: integer of 5,000 characters is too large" in output, output
    assert "streams/s.yaml:8:11: integer of 5,002 characters is too large" in output, output
    assert HUGE not in output


def test_huge_integers_are_problems_in_validate(tmp_path: Path) -> None:
    repo = huge_integer_repo(tmp_path / "repo")
    result = run("validate", str(repo))
    assert result.returncode == 1
    assert_positioned(result.stdout, result.stderr)


def test_huge_integers_are_problems_in_the_parallel_loader(tmp_path: Path, monkeypatch) -> None:
    from hecate_agent.sources.directory import read_directory
    from hecate_agent.spec import loader

    repo = huge_integer_repo(tmp_path / "repo")
    write_repo(repo, {f"routes/r{i}.yaml": dump_yaml(route(name=f"r{i}", domain=f"r{i}.example.com"))
                      for i in range(6)})
    files, _ = read_directory(repo)
    monkeypatch.setattr(loader, "PARALLEL_THRESHOLD", 2)
    problems, _ = loader.check_snapshot(files, workers=2)
    assert [(Path(p.file).name, p.line, p.column) for p in problems] == [("a.yaml", 9, 13), ("s.yaml", 8, 11)]


def test_huge_integers_are_problems_in_plan_against(tmp_path: Path) -> None:
    work = huge_integer_repo(tmp_path / "work")
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "huge"], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "hecate_agent", "plan", str(work), "--against", "HEAD"],
        capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HECATE_AGENT_CONFIG": str(tmp_path / "none.yaml")},
    )
    assert result.returncode == 1, result.stderr
    assert_positioned(result.stdout + result.stderr, result.stderr)


CONTROL = "\x1b[2K\x1b[31mforged\x00\u202e"
FORGED_KEY = "X-A\r\nrepo/routes/ok.yaml:1:1: Route/ok: spec: all good"


def control_repo(root: Path) -> Path:
    named = route(name=CONTROL, domain="named.example.com")
    keyed = route(name="keyed", domain="keyed.example.com", headers={"set": {FORGED_KEY: "x"}})
    return write_repo(root, {"routes/named.yaml": dump_yaml(named), "routes/keyed.yaml": dump_yaml(keyed),
                             "routes/esc\x1b[1m.yaml": dump_yaml(route("esc", domain="bad host"))})


@pytest.mark.parametrize("output_format", ["text", "github", "sarif"])
def test_control_characters_are_escaped_and_each_problem_stays_one_line(tmp_path: Path, output_format: str) -> None:
    repo = control_repo(tmp_path / "repo")
    result = run("validate", "--format", output_format, str(repo))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert not any(c in out for c in "\x00\x1b\r\u202e"), out
    if output_format == "sarif":
        messages = [r["message"]["text"] for r in json.loads(out)["runs"][0]["results"]]
        assert any(m.startswith("Route/\\x1b[2K\\x1b[31mforged\\x00\\u202e: ") for m in messages), messages
        return
    lines = out.splitlines()
    assert len(lines) == 4, lines  # three problems and the summary
    assert not any(line.startswith(("repo/routes/ok.yaml", "::error file=repo/routes/ok.yaml")) for line in lines)
    joined = "\n".join(lines)
    assert "Route/\\x1b[2K\\x1b[31mforged\\x00\\u202e" in joined
    line_break = "%0D%0A" if output_format == "github" else "\\r\\n"  # the runner's own escape for line breaks
    assert f"X-A{line_break}repo/routes/ok.yaml:1:1" in joined
    assert "esc\\x1b[1m.yaml" in joined


def test_printable_escapes_only_what_moves_the_terminal() -> None:
    from hecate_agent.errors import printable

    assert printable("plain: ok, héllo 世界 \\n stays") == "plain: ok, héllo 世界 \\n stays"
    assert printable("a\nb\rc\td\x00e\x7ff\x85g\u2028h\u202ei\ufeff") == (
        "a\\nb\\rc\\td\\x00e\\x7ff\\x85g\\u2028h\\u202ei\\ufeff"
    )
