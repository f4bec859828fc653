"""Render validation problems for people (text), programs (json), GitHub (annotations) and SARIF tools."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from hecate_agent import __version__
from hecate_agent.errors import SpecProblem

FORMATS = ("text", "json", "github", "sarif")
_KIND_ORDER = ("Route", "AuthPolicy", "Stream", "Config")


def _location(problem: SpecProblem) -> str:
    if problem.line <= 0:
        return problem.file
    return f"{problem.file}:{problem.line}:{problem.column}"


def problem_line(problem: SpecProblem) -> str:
    """`path:line:col: Kind/name: field: message` (parts that are unknown are left out)."""
    parts = [_location(problem)]
    if problem.subject():
        parts.append(problem.subject())
    if problem.field:
        parts.append(problem.field)
    parts.append(problem.message)
    return ": ".join(parts)


def counts_line(counts: Mapping[str, int]) -> str:
    shown = [f"{counts.get(kind, 0)} {kind}" for kind in _KIND_ORDER if kind != "Config"]
    if counts.get("Config"):
        shown.append("config.yaml")
    return ", ".join(shown)


def render_text(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    lines = [problem_line(p) for p in problems]
    if problems:
        files = len({p.file for p in problems})
        lines.append(f"{source}: {len(problems)} problem(s) in {files} file(s); nothing was changed")
    else:
        lines.append(f"{source}: valid ({counts_line(counts)})")
    return "\n".join(lines) + "\n"


def render_json(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    del counts, source  # the array of problems is the documented contract
    return json.dumps([p.to_dict() for p in problems], indent=2) + "\n"


def _github_escape(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    out = []
    for p in problems:
        props = [f"file={_github_escape(p.file, property_value=True)}"]
        if p.line > 0:
            props += [f"line={p.line}", f"col={p.column}"]
        title = p.subject() or "hecate-agent"
        props.append(f"title={_github_escape(title, property_value=True)}")
        message = f"{p.field}: {p.message}" if p.field else p.message
        out.append(f"::error {','.join(props)}::{_github_escape(message)}")
    out.append(render_text([], counts, source).strip() if not problems else f"{source}: {len(problems)} problem(s)")
    return "\n".join(out) + "\n"


def render_sarif(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    del counts, source
    results = []
    for p in problems:
        region = {"startLine": p.line, "startColumn": p.column} if p.line > 0 else {}
        location: dict[str, object] = {"artifactLocation": {"uri": p.file}}
        if region:
            location["region"] = region
        message = problem_line(p)[len(_location(p)) + 2 :]
        results.append(
            {
                "ruleId": "hecate/spec",
                "level": "error",
                "message": {"text": message},
                "locations": [{"physicalLocation": location}],
            }
        )
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "hecate-agent",
                        "version": __version__,
                        "informationUri": "https://hecate.io/agent",
                        "rules": [
                            {
                                "id": "hecate/spec",
                                "name": "InvalidSpec",
                                "shortDescription": {"text": "Hecate spec is invalid"},
                            }
                        ],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"


def select_problems(
    problems: Iterable[SpecProblem], cross_problems: Iterable[SpecProblem], files: Iterable[Path]
) -> tuple[list[SpecProblem], int]:
    """The problems a change to `files` answers for, and how many others were left out.

    Those in the files themselves, and every problem between files wherever it is
    reported: renaming an AuthPolicy breaks the routes that use it, which are not
    among the changed files (and a deleted file is never among them).
    """
    chosen = {os.path.abspath(f) for f in files}
    between = set(cross_problems)
    kept, hidden = [], 0
    for problem in problems:
        if problem in between or os.path.abspath(problem.file) in chosen:
            kept.append(problem)
        else:
            hidden += 1
    return kept, hidden


RENDERERS = {"text": render_text, "json": render_json, "github": render_github, "sarif": render_sarif}
