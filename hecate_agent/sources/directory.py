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


def read_directory(root: Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[list[SourceFile], list[SpecProblem]]:
    """Snapshot every spec file under `root` (or `root` itself if it is one file).

    Problems and `SourceFile.shown` name files the way the caller wrote `root`,
    so `validate sample-repo` reports `sample-repo/routes/app.yaml:3:5`.
    """
    if root.is_file():
        prefix = str(root.parent).rstrip("/")
        return _read_files(str(root.parent), [root.name], "" if prefix in ("", ".") else prefix, limits)
    prefix = str(root).rstrip("/")
    prefix = "" if prefix in ("", ".") else prefix
    real_root = os.path.realpath(root)
    relatives: list[str] = []
    problems: list[SpecProblem] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(root, folder) if folder else root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _inside(target, real_root):
                    problems.append(_escape_problem(_shown(prefix, relative), target))
                    continue
                if entry.is_dir():
                    continue  # its files are reached through the real folder
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(relative)
            elif entry.name.endswith(SPEC_SUFFIXES):
                relatives.append(relative)
        pending.extend(reversed(subfolders))
    files, more = _read_files(str(root), relatives, prefix, limits)
    return files, problems + more


def _shown(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def _read_files(
    root: str, relatives: list[str], prefix: str, limits: ReadLimits
) -> tuple[list[SourceFile], list[SpecProblem]]:
    files: list[SourceFile] = []
    problems: list[SpecProblem] = []
    for relative in relatives:
        shown = _shown(prefix, relative)
        full = os.path.join(root, relative)
        try:
            data = _read_regular_file(full, limits.max_file_bytes)
        except _NotRegularError:
            problems.append(SpecProblem(shown, 0, 0, "not a regular file; specs must be plain files"))
            continue
        except _TooLargeError as exc:
            problems.append(size_problem(shown, exc.size, limits.max_file_bytes))
            continue
        except OSError as exc:
            problems.append(SpecProblem(shown, 0, 0, f"cannot read file: {exc.strerror}"))
            continue
        files.append(SourceFile(relative, data, shown))
    return files, problems


class _NotRegularError(Exception):
    pass


class _TooLargeError(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _read_regular_file(path: str, max_bytes: int) -> bytes:
    """Open without blocking (a FIFO would hang a plain open), check it is a small regular file, read it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegularError
        if info.st_size > max_bytes:
            raise _TooLargeError(info.st_size)
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # grew after fstat
            raise _TooLargeError(len(data))
        return data
    finally:
        os.close(fd)


def _escape_problem(path: str, target: str) -> SpecProblem:
    return SpecProblem(
        path,
        0,
        0,
        f"symlink leads outside the spec repository (to {target}); specs must live inside it. "
        "Replace the link with the file itself",
    )
