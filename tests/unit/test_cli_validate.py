"""`hecate-agent validate` end to end: exit codes, counts, and a broken sample repo in every format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_REPO


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hecate_agent", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_sample_repo_is_valid_and_counted() -> None:
    result = run("validate", str(SAMPLE_REPO))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("valid (5 Route, 2 AuthPolicy, 3 Stream, config.yaml)")


# (file, line, column, field, fragment of the message) for every break made below.
EXPECTED = [
    ("config.yaml", 22, 5, "", "duplicate key 'tlsMinVersion': it is already set at line 21, column 5"),
    ("policies/staff.yaml", 7, 13, "spec.provider", "'authentik' is the only provider for now"),
    ("routes/api.yaml", 16, 22, "spec.headers.set.Cache-Control", "placeholders such as {env.SECRET}"),
    ("routes/api.yaml", 25, 7, "spec.middleware[1]", "unknown middleware 'gzip'"),
    ("routes/grafana.yaml", 12, 13, "spec.upstreams[0].dial", "the port must be from 1 to 65535"),
    ("routes/grafana.yaml", 13, 15, "spec.upstreams[0].weight", "must be at least 1"),
    ("routes/grafana.yaml", 17, 17, "spec.tls.minVersion", "refused by the Hecate security policy"),
    ("routes/shop.yaml", 17, 17, "spec.canary.percentage", "must be at most 100"),
    ("routes/shop.yaml", 21, 14, "spec.healthCheck.timeout", "timeout (9s) must be shorter than interval (5s)"),
    ("routes/tenants.yaml", 10, 3, "spec.upstreamz", "unknown field; allowed here: authPolicy, canary"),
    ("streams/postgres.yaml", 9, 3, "spec.listen", "tcp 127.0.0.1:15432 is already taken by Stream/dns"),
    ("streams/siem.yaml", 6, 9, "metadata.name", "is not a lowercase DNS label"),
]


@pytest.fixture(scope="module")
def broken_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("broken") / "repo"
    shutil.copytree(SAMPLE_REPO, repo)

    def replace(relative: str, old: str, new: str) -> None:
        path = repo / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1))

    replace("routes/grafana.yaml", "    - dial: 127.0.0.1:9101", "    - dial: 127.0.0.1:70000\n      weight: 0")
    replace("routes/grafana.yaml", 'minVersion: "1.3"', 'minVersion: "1.1"')
    replace("routes/shop.yaml", "percentage: 10", "percentage: 150")
    replace("routes/shop.yaml", "timeout: 1s", "timeout: 9s")
    replace("routes/api.yaml", "    - compression", "    - gzip")
    replace("routes/api.yaml", "      Cache-Control: no-store", '      Cache-Control: "{env.AWS_SECRET}"')
    replace("routes/tenants.yaml", "  upstreams:", "  upstreamz: []\n  upstreams:")
    replace("streams/dns.yaml", "port: 15353", "port: 15432")
    replace("streams/dns.yaml", "protocol: udp", "protocol: tcp")
    replace("streams/siem.yaml", "name: siem", "name: Siem_Server")
    replace("policies/staff.yaml", "provider: authentik", "provider: keycloak")
    replace("config.yaml", 'tlsMinVersion: "1.2"', 'tlsMinVersion: "1.2"\n    tlsMinVersion: "1.3"')
    return repo


def test_broken_repo_text(broken_repo: Path) -> None:
    result = run("validate", "repo", cwd=broken_repo.parent)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXPECTED) + 1
    for line, (file, row, column, field, fragment) in zip(lines, EXPECTED, strict=False):
        assert line.startswith(f"repo/{file}:{row}:{column}: "), line
        if field:
            assert f": {field}: " in line, line
        assert fragment in line, line
    assert lines[-1] == "repo: 12 problem(s) in 8 file(s); nothing was changed"
    assert "Route/grafana: spec.upstreams[0].dial: " in result.stdout


def test_broken_repo_json(broken_repo: Path) -> None:
    result = run("validate", "repo", "--format", "json", cwd=broken_repo.parent)
    assert result.returncode == 1
    found = json.loads(result.stdout)
    assert [(p["file"], p["line"], p["column"], p["field"]) for p in found] == [
        (f"repo/{file}", row, column, field) for file, row, column, field, _ in EXPECTED
    ]
    assert all(fragment in p["message"] for p, (*_, fragment) in zip(found, EXPECTED, strict=True))
    assert found[1]["kind"] == "AuthPolicy" and found[1]["name"] == "staff"
    assert set(found[0]) == {"file", "line", "column", "kind", "name", "field", "message"}


def test_broken_repo_github_annotations(broken_repo: Path) -> None:
    result = run("validate", "repo", "--format", "github", cwd=broken_repo.parent)
    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert len(annotations) == len(EXPECTED)
    for line, (file, row, column, _, _) in zip(annotations, EXPECTED, strict=True):
        assert line.startswith(f"::error file=repo/{file},line={row},col={column},title="), line
    assert "title=Route/grafana::spec.upstreams[0].dial: " in result.stdout


def test_broken_repo_sarif(broken_repo: Path) -> None:
    result = run("validate", "repo", "--format", "sarif", cwd=broken_repo.parent)
    assert result.returncode == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert [
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        )
        for r in results
    ] == [(f"repo/{file}", row, column) for file, row, column, _, _ in EXPECTED]


def test_github_escapes_newlines_and_commas() -> None:
    from hecate_agent.errors import SpecProblem
    from hecate_agent.report import render_github

    out = render_github([SpecProblem("a,b.yaml", 1, 2, "line one\nline two: 100%")], {}, "x")
    assert out.splitlines()[0] == "::error file=a%2Cb.yaml,line=1,col=2,title=hecate-agent::line one%0Aline two: 100%25"


def test_validate_needs_an_existing_path() -> None:
    result = run("validate", "/nonexistent/specs")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_schema_command_prints_every_kind() -> None:
    result = run("schema")
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if line.startswith("# ")] == [
        "# route.schema.json", "# authpolicy.schema.json", "# stream.schema.json", "# config.schema.json"
    ]
