"""The GitHub Action's steps (action/run.sh, which action.yml runs) against a config repository with a base
and a head revision: annotations, a SARIF file, a markdown plan, and the exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SAMPLE_REPO

pytestmark = pytest.mark.integration

RUN_SH = ROOT / "action" / "run.sh"
AGENT = Path(sys.executable).parent / "hecate-agent"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def read_outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT (`name<<DELIMITER` blocks) the way the runner does."""
    outputs: dict[str, str] = {}
    lines = path.read_text().split("\n")
    index = 0
    while index < len(lines) and lines[index]:
        match = re.fullmatch(r"([\w-]+)<<(\S+)", lines[index])
        assert match, lines[index]
        end = lines.index(match.group(2), index + 1)
        outputs[match.group(1)] = "\n".join(lines[index + 1 : end])
        index = end + 1
    return outputs


def run_action(checkout: Path, tmp: Path, base: str = "") -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output, summary = tmp / "github_output", tmp / "step_summary"
    output.write_text("")
    env = {**os.environ, "HECATE_PATH": ".", "HECATE_BASE": base, "HECATE_OUT": str(tmp / "out"),
           "HECATE_AGENT": str(AGENT), "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    result = subprocess.run([str(RUN_SH)], cwd=checkout, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    return result, read_outputs(output)


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    """A config repository: the sample repo as the base commit; the head commit moves an upstream and adds a route."""
    repo = tmp_path / "origin"
    shutil.copytree(SAMPLE_REPO, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    replace(repo / "routes/grafana.yaml", "127.0.0.1:9101", "127.0.0.1:9111")
    (repo / "routes/wiki.yaml").write_text(
        "apiVersion: hecate.io/v1\nkind: Route\nmetadata:\n  name: wiki\nspec:\n  domain: wiki.example.com\n"
        "  upstreams:\n    - dial: 127.0.0.1:9200\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "head")
    return repo, base


def shallow_checkout(origin: Path, tmp: Path) -> Path:
    """What actions/checkout does by default: only the head commit."""
    checkout = tmp / "checkout"
    subprocess.run(["git", "clone", "-q", "--depth=1", f"file://{origin}", str(checkout)], check=True)
    return checkout


def test_pull_request_with_changes(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, base = origin
    checkout = shallow_checkout(repo, tmp_path)
    result, outputs = run_action(checkout, tmp_path, base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::error" not in result.stdout
    assert ".: valid (6 Route, 2 AuthPolicy, 3 Stream, config.yaml)" in result.stdout
    assert outputs["validate-exit-code"] == "0"
    sarif = json.loads(Path(outputs["sarif-file"]).read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []
    assert outputs["plan-exit-code"] == "2"
    markdown = outputs["markdown"]
    assert markdown == Path(outputs["plan-file"]).read_text().rstrip("\n")
    assert markdown.startswith("### hecate-agent plan for ") and f"against `{base}`" in markdown
    assert "| + | `Route/wiki` |" in markdown
    assert "`Route/grafana`" in markdown and '+ spec.upstreams[0].dial: "127.0.0.1:9111"' in markdown
    assert markdown in (tmp_path / "step_summary").read_text()


def test_pull_request_with_invalid_specs(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, base = origin
    replace(repo / "routes/shop.yaml", "percentage: 10", "percentage: 150")
    git(repo, "commit", "-q", "-am", "break")
    checkout = shallow_checkout(repo, tmp_path)
    result, outputs = run_action(checkout, tmp_path, base)
    assert result.returncode == 1
    assert ("::error file=routes/shop.yaml,line=17,col=17,title=Route/shop::spec.canary.percentage: "
            "int 150 is out of range; must be at most 100") in result.stdout
    assert outputs["validate-exit-code"] == "1"
    results = json.loads(Path(outputs["sarif-file"]).read_text())["runs"][0]["results"]
    assert [r["locations"][0]["physicalLocation"] for r in results] == [
        {"artifactLocation": {"uri": "routes/shop.yaml"}, "region": {"startLine": 17, "startColumn": 17}}]
    assert outputs["plan-exit-code"] == "1"
    assert outputs["markdown"].startswith(f"### hecate-agent plan against `{base}` failed")
    assert "do not validate" in outputs["markdown"] and "routes/shop.yaml:17:17" in outputs["markdown"]


def test_push_without_a_base_validates_only(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = origin
    result, outputs = run_action(repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(outputs) == {"validate-exit-code", "sarif-file"}
    assert not (tmp_path / "out" / "plan.md").exists()


def test_action_yml_runs_the_script_with_its_inputs() -> None:
    from ruamel.yaml import YAML

    action = YAML(typ="safe").load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    script = steps[-1]
    assert script["run"] == '"$GITHUB_ACTION_PATH/action/run.sh"'
    assert set(script["env"]) == {"HECATE_PATH", "HECATE_BASE", "HECATE_OUT"}
    # Inputs reach shell code only through the environment (no ${{ }} inside `run:`: script injection).
    assert all("${{" not in step.get("run", "") for step in steps)
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
