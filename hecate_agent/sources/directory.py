"""Read a spec directory into a snapshot of `SourceFile`s.

Refuses, as problems rather than exceptions: files over the size limit
(checked with `stat`, before reading a byte), symlinks that lead out of the
root (a spec repo must not make the agent read `/etc/passwd`), and anything
that is not a regular file (a FIFO would block the reader forever). Hidden
files and folders (`.git`, `.github`, editor swap files) are skipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.loader import SourceFile
from hecate_agent.spec.yamlio import DEFAULT_LIMITS, ReadLimits, size_problem

SPEC_SUFFIXES = (".yaml", ".yml")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_directory(
    root: Path, limits: ReadLimits = DEFAULT_LIMITS
) -> tuple[list[SourceFile], list[SpecProblem]]:
    """Snapshot every spec file under `root` (or `root` itself if it is one file).

    Problems and `SourceFile.shown` name files the way the caller wrote `root`,
    so `validate sample-repo` reports `sample-repo/routes/app.yaml:3:5`.
    """
    if root.is_file():
        return _read_files(root.parent, [root.name], root.parent, limits)
    real_root = os.path.realpath(root)
    relatives: list[str] = []
    problems: list[SpecProblem] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            link = os.path.join(folder, name)
            if os.path.islink(link) and not _inside(os.path.realpath(link), real_root):
                shown = _shown(root, os.path.relpath(link, root))
                problems.append(_escape_problem(shown, os.path.realpath(link)))
        relatives.extend(
            os.path.relpath(os.path.join(folder, n), root)
            for n in sorted(filenames)
            if not n.startswith(".") and n.endswith(SPEC_SUFFIXES)
        )
    files, more = _read_files(root, relatives, root, limits)
    return files, problems + more


def _shown(root: Path, relative: str) -> str:
    relative = relative.replace(os.sep, "/")
    prefix = str(root).rstrip("/")
    return relative if prefix in ("", ".") else f"{prefix}/{relative}"


def _read_files(
    root: Path, relatives: list[str], display_root: Path, limits: ReadLimits
) -> tuple[list[SourceFile], list[SpecProblem]]:
    real_root = os.path.realpath(root)
    files: list[SourceFile] = []
    problems: list[SpecProblem] = []
    for relative in relatives:
        full = os.path.join(root, relative)
        shown = _shown(display_root, relative)
        if os.path.islink(full) and not _inside(os.path.realpath(full), real_root):
            problems.append(_escape_problem(shown, os.path.realpath(full)))
            continue
        try:
            info = os.stat(full)
            if not stat.S_ISREG(info.st_mode):
                problems.append(SpecProblem(shown, 0, 0, "not a regular file; specs must be plain files"))
                continue
            if info.st_size > limits.max_file_bytes:
                problems.append(size_problem(shown, info.st_size, limits.max_file_bytes))
                continue
            with open(full, "rb") as handle:
                data = handle.read(limits.max_file_bytes + 1)
        except OSError as exc:
            problems.append(SpecProblem(shown, 0, 0, f"cannot read file: {exc.strerror}"))
            continue
        files.append(SourceFile(relative.replace(os.sep, "/"), data, shown))
    return files, problems


def _escape_problem(path: str, target: str) -> SpecProblem:
    return SpecProblem(
        path,
        0,
        0,
        f"symlink leads outside the spec repository (to {target}); specs must live inside it. "
        "Replace the link with the file itself",
    )
