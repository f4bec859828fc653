"""`validate --root ROOT FILE...` (the pre-commit hook): the whole folder is checked, but only problems in the
given files and problems between files are reported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_REPO


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hecate_agent", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A config repository with the specs in proxy/: shop.yaml has a per-file problem, and grafana.yaml takes
    api.yaml's domain (a problem between files, reported on grafana.yaml)."""
    shutil.copytree(SAMPLE_REPO, tmp_path / "proxy")
    replace(tmp_path / "proxy/routes/shop.yaml", "percentage: 10", "percentage: 150")
    replace(tmp_path / "proxy/routes/grafana.yaml", "domain: grafana.example.com", "domain: api.example.com")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github/ci.yaml").write_text("on: push\n")
    return tmp_path


def problems(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    return [(p["file"], p["field"]) for p in json.loads(result.stdout)]


def test_reports_the_given_files_and_every_problem_between_files(repo: Path) -> None:
    result = run("validate", "--root", "proxy", "--format", "json", "proxy/routes/shop.yaml", cwd=repo)
    assert result.returncode == 1
    assert problems(result) == [("proxy/routes/grafana.yaml", "spec.domain"), ("proxy/routes/shop.yaml",
                                                                                "spec.canary.percentage")]


def test_problems_in_other_files_are_counted_not_shown(repo: Path) -> None:
    # api.yaml is the other half of the duplicate domain: the problem between files is reported (on grafana.yaml).
    result = run("validate", "--root", "proxy", "--format", "json", "./proxy/routes/api.yaml", ".github/ci.yaml",
                 cwd=repo)
    assert result.returncode == 1
    assert problems(result) == [("proxy/routes/grafana.yaml", "spec.domain")]
    assert "1 problem(s) in other files not shown; `hecate-agent validate proxy` lists them" in result.stderr


def test_exit_zero_when_the_given_files_are_fine(repo: Path) -> None:
    replace(repo / "proxy/routes/grafana.yaml", "domain: api.example.com", "domain: grafana.example.com")
    result = run("validate", "--root", "proxy", "proxy/routes/api.yaml", "proxy/config.yaml", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shop.yaml" not in result.stdout
    assert "1 problem(s) in other files not shown" in result.stderr
    # Without files, --root ROOT is `validate ROOT`.
    everything = run("validate", "--root", "proxy", cwd=repo)
    assert everything.returncode == 1
    assert "proxy/routes/shop.yaml:17:17" in everything.stdout


def test_absolute_paths_and_github_format(repo: Path) -> None:
    shop = repo / "proxy/routes/shop.yaml"
    result = run("validate", "--root", str(repo / "proxy"), "--format", "github", str(shop), cwd=repo)
    assert result.returncode == 1
    files = [line.split(",")[0] for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert files == [f"::error file={repo}/proxy/routes/grafana.yaml", f"::error file={shop}"]


def test_more_than_one_path_needs_root(repo: Path) -> None:
    result = run("validate", "proxy/routes/api.yaml", "proxy/routes/shop.yaml", cwd=repo)
    assert result.returncode == 2
    assert "--root" in result.stderr


def test_a_later_root_wins_as_the_pre_commit_args_override_documents(repo: Path) -> None:
    # The hook's entry is `hecate-agent validate --root .`; `args: [--root, proxy]` comes after it.
    result = run("validate", "--root", ".", "--root", "proxy", "--format", "json", "proxy/routes/shop.yaml", cwd=repo)
    assert result.returncode == 1
    assert problems(result) == [("proxy/routes/grafana.yaml", "spec.domain"), ("proxy/routes/shop.yaml",
                                                                                "spec.canary.percentage")]
