"""One rule for symlinks in a spec repository, shared by the directory and the Git reader.

`validate` (which reads a directory) must accept exactly what the daemon (which
may read a Git tree) accepts, so both readers hand every symlink they meet to
`follow` with a way to look paths up, and act on its verdict alike:

- a link is followed inside the repository only, component by component as the
  kernel does, so `a/../b` through a linked folder means what it means on disk;
- an absolute target is refused: a repository has no fixed place on the nodes
  that check it out, so it either leads outside or works on one machine only;
- `..` above the repository root is refused;
- more than `MAX_HOPS` links on one path is a loop and refused;
- a link to a regular file is read as that file, under the link's name; a link
  to a folder is not descended into (the folder's files are read where they are).

Pure: the lookup is the only view of the repository.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MAX_HOPS = 40  # Linux's limit (MAXSYMLINKS) for one path

EntryKind = Literal["file", "dir", "link", "missing", "other", "error"]


@dataclass(frozen=True)
class Entry:
    """What is at a path, without following a link there: `detail` is a link's target or an error."""

    kind: EntryKind
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """Where a symlink leads: a `file`/`dir` at `path` (relative to the root), or a refusal."""

    kind: Literal["file", "dir", "missing", "other", "refused"]
    path: str = ""
    problem: str = ""


Lookup = Callable[[str], Entry]


def follow(relative: str, lookup: Lookup) -> Verdict:
    """Resolve `relative` (POSIX, from the root) inside the repository that `lookup` shows."""
    parts = deque(relative.split("/"))
    resolved: list[str] = []  # real folders only: every link met has been replaced by its target
    hops = 0
    kind: EntryKind = "dir"
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if kind != "dir":
            return Verdict("missing", "/".join(resolved))  # a path through a file
        if part == "..":
            if not resolved:
                return _outside(relative, lookup)
            resolved.pop()
            continue
        entry = lookup("/".join([*resolved, part]))
        if entry.kind == "link":
            hops += 1
            if hops > MAX_HOPS:
                return Verdict(
                    "refused",
                    problem=f"symlink loop (more than {MAX_HOPS} links to follow); "
                    "replace the link with the file itself",
                )
            if entry.detail.startswith("/"):
                return _refused_target(entry.detail)
            parts.extendleft(reversed(entry.detail.split("/")))
            continue
        if entry.kind == "error":
            return Verdict("refused", "/".join([*resolved, part]), f"cannot follow the symlink: {entry.detail}")
        if entry.kind == "missing":
            return Verdict("missing", "/".join([*resolved, part]))
        kind = entry.kind
        resolved.append(part)
    path = "/".join(resolved)
    if kind == "dir":
        return Verdict("dir", path)
    return Verdict("file" if kind == "file" else "other", path)


def _outside(relative: str, lookup: Lookup) -> Verdict:
    entry = lookup(relative)
    target = entry.detail if entry.kind == "link" else relative
    return _refused_target(target)


def _refused_target(target: str) -> Verdict:
    return Verdict(
        "refused",
        problem=f"symlink leads outside the spec repository (to {target}); specs must live inside it. "
        "Replace the link with the file itself, or make it a relative link inside the repository",
    )


def missing_problem(verdict: Verdict) -> str:
    return f"symlink points to {verdict.path or 'the repository root'}, which does not exist; fix or remove the link"


def link_problem(verdict: Verdict, *, spec_file: bool) -> str:
    """What is wrong with a symlink named like a spec file (`spec_file`) or not; empty if nothing.

    A link that leads outside or loops is refused whatever its name; a dangling link or one to
    something that is not a regular file only matters when it would be read as a spec.
    """
    if verdict.kind == "refused":
        return verdict.problem
    if not spec_file:
        return ""
    if verdict.kind == "missing":
        return missing_problem(verdict)
    if verdict.kind in ("dir", "other"):
        return "symlink to something that is not a regular file; specs must be plain files"
    return ""
