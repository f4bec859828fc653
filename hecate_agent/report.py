"""Render validation problems for people (text), programs (json), GitHub (annotations) and SARIF tools."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from hecate_agent import __version__
from hecate_agent.errors import SpecProblem, printable

FORMATS = ("text", "json", "github", "sarif")
_KIND_ORDER = ("Route", "AuthPolicy", "Stream", "Config")


def _location(problem: SpecProblem) -> str:
    if problem.line <= 0:
        return printable(problem.file)
    return f"{printable(problem.file)}:{problem.line}:{problem.column}"


def problem_line(problem: SpecProblem) -> str:
    """`path:line:col: Kind/name: field: message` (parts that are unknown are left out)."""
    parts = [_location(problem)]
    if problem.subject():
        parts.append(problem.subject())
    if problem.field:
        parts.append(problem.field)
    parts.append(problem.message if problem.is_error else f"warning: {problem.message}")
    return printable(": ".join(parts))  # a crafted key or name cannot break the line or drive the terminal


def counts_line(counts: Mapping[str, int]) -> str:
    shown = [f"{counts.get(kind, 0)} {kind}" for kind in _KIND_ORDER if kind != "Config"]
    if counts.get("Config"):
        shown.append("config.yaml")
    return ", ".join(shown)


def render_text(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    lines = [problem_line(p) for p in problems]
    errors = [p for p in problems if p.is_error]
    warned = len(problems) - len(errors)
    also = f"; {warned} warning(s)" if warned else ""
    if errors:
        files = len({p.file for p in errors})
        lines.append(f"{printable(source)}: {len(errors)} problem(s) in {files} file(s){also}; nothing was changed")
    else:
        lines.append(f"{printable(source)}: valid ({counts_line(counts)}){also}")
    return "\n".join(lines) + "\n"


def render_json(problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str) -> str:
    del counts, source  # the array of problems is the documented contract
    return json.dumps([p.to_dict() for p in problems], indent=2) + "\n"


def _github_escape(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    text = printable(text)  # the other control characters (ESC, NUL, bidi overrides) as escapes
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def repository_relative(file: str, root: Path | None) -> str | None:
    """`file` (as shown, relative to the working directory or absolute) relative to `root`, POSIX-style;
    None when there is no root or the file is not under it."""
    if root is None:
        return None
    for where in (os.path.abspath(file), os.path.realpath(file)):
        for base in (os.path.abspath(root), os.path.realpath(root)):
            relative = os.path.relpath(where, base)
            if relative != ".." and not relative.startswith(".." + os.sep) and not os.path.isabs(relative):
                return relative.replace(os.sep, "/")
    return None


def render_github(
    problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str, *, root: Path | None = None
) -> str:
    """Workflow commands; `file=` is relative to `root` (the repository), as the runner maps annotations."""
    out = []
    for p in problems:
        file = repository_relative(p.file, root) or p.file
        props = [f"file={_github_escape(file, property_value=True)}"]
        if p.line > 0:
            props += [f"line={p.line}", f"col={p.column}"]
        title = p.subject() or "hecate-agent"
        props.append(f"title={_github_escape(title, property_value=True)}")
        message = f"{p.field}: {p.message}" if p.field else p.message
        command = "error" if p.is_error else "warning"
        out.append(f"::{command} {','.join(props)}::{_github_escape(message)}")
    errors = sum(1 for p in problems if p.is_error)
    out.append(render_text([], counts, source).strip() if not errors else f"{source}: {errors} problem(s)")
    return "\n".join(out) + "\n"


SARIF_ROOT = "SRCROOT"


def _artifact_location(file: str, root: Path | None) -> dict[str, str]:
    """A repository-relative URI reference (RFC 3986: each character outside unreserved and '/'
    percent-encoded as UTF-8) against SRCROOT; an absolute file: URI for a file outside the root."""
    relative = repository_relative(file, root)
    if relative is None:
        return {"uri": Path(os.path.abspath(file)).as_uri()}
    return {"uri": quote(relative, safe="/"), "uriBaseId": SARIF_ROOT}


def render_sarif(
    problems: Sequence[SpecProblem], counts: Mapping[str, int], source: str, *, root: Path | None = None
) -> str:
    """SARIF 2.1.0 for code scanning: URIs relative to `root` (the repository), columns in code points
    (what the YAML reader counts)."""
    del counts, source
    results = []
    for p in problems:
        region = {"startLine": p.line, "startColumn": p.column} if p.line > 0 else {}
        location: dict[str, object] = {"artifactLocation": _artifact_location(p.file, root)}
        if region:
            location["region"] = region
        message = problem_line(p)[len(_location(p)) + 2 :]
        results.append(
            {
                "ruleId": "hecate/spec",
                "level": "error" if p.is_error else "warning",
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
                "columnKind": "unicodeCodePoints",
                **({"originalUriBaseIds": {SARIF_ROOT: {"uri": _directory_uri(root)}}} if root is not None else {}),
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"


def _directory_uri(root: Path) -> str:
    uri = Path(os.path.abspath(root)).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def select_problems(
    problems: Iterable[SpecProblem], cross_problems: Iterable[SpecProblem], files: Iterable[Path]
) -> tuple[list[SpecProblem], int]:
    """The problems a change to `files` answers for, and how many other errors were left out.

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
        elif problem.is_error:  # warnings elsewhere are left out without being counted
            hidden += 1
    return kept, hidden


RENDERERS: dict[str, Callable[..., str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
    "sarif": render_sarif,
}
# The formats whose file names are relative to the repository root (`root=`), for CI tools to map them.
ROOTED_FORMATS = ("github", "sarif")
