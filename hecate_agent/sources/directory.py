"""Read a spec directory into a snapshot of `SourceFile`s.

Refuses, as problems rather than exceptions: files over the size limit
(checked with `stat`, before reading a byte), symlinks the shared rule of
`sources.links` refuses (a spec repo must not make the agent read
`/etc/passwd`; the Git reader applies the same rule), and anything that is not
a regular file (a FIFO would block the reader forever). Hidden files and
folders (`.git`, `.github`, editor swap files) are skipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hecate_agent.errors import SpecProblem
from hecate_agent.sources.links import Entry, Lookup, follow, link_problem
from hecate_agent.spec.loader import SourceFile
from hecate_agent.spec.yamlio import DEFAULT_LIMITS, ReadLimits, size_problem

SPEC_SUFFIXES = (".yaml", ".yml")


def read_directory(root: Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[list[SourceFile], list[SpecProblem]]:
    """Snapshot every spec file under `root` (or `root` itself if it is one file).

    Problems and `SourceFile.shown` name files the way the caller wrote `root`,
    so `validate sample-repo` reports `sample-repo/routes/app.yaml:3:5`. A folder
    or link that cannot be read (permissions, a loop, a path over PATH_MAX) is a
    problem naming it, never an exception.
    """
    if root.is_file():
        prefix = str(root.parent).rstrip("/")
        shown_prefix = "" if prefix in ("", ".") else prefix
        return _read_files(str(root.parent), [(root.name, root.name)], shown_prefix, limits, follow_link=True)
    prefix = str(root).rstrip("/")
    prefix = "" if prefix in ("", ".") else prefix
    wanted: list[tuple[str, str]] = []  # (name the file is shown under, path it is read from)
    problems: list[SpecProblem] = []
    pending = [""]
    lookup = _filesystem(str(root))
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(os.path.join(root, folder) if folder else root) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            shown = _shown(prefix, folder) if folder else (prefix or ".")
            problems.append(SpecProblem(shown, 0, 0, f"cannot read folder: {exc.strerror}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = f"{folder}/{entry.name}" if folder else entry.name
            try:
                is_link, is_dir = entry.is_symlink(), entry.is_dir(follow_symlinks=False)
            except OSError as exc:  # lstat, where the file system does not say in the listing
                problems.append(SpecProblem(_shown(prefix, relative), 0, 0, f"cannot read: {exc.strerror}"))
                continue
            if is_link:
                verdict = follow(relative, lookup)
                problem = link_problem(verdict, spec_file=entry.name.endswith(SPEC_SUFFIXES))
                if problem:
                    problems.append(SpecProblem(_shown(prefix, relative), 0, 0, problem))
                elif verdict.kind == "file" and entry.name.endswith(SPEC_SUFFIXES):
                    wanted.append((relative, verdict.path))
            elif is_dir:
                subfolders.append(relative)
            elif entry.name.endswith(SPEC_SUFFIXES):
                wanted.append((relative, relative))
        pending.extend(reversed(subfolders))
    files, more = _read_files(str(root), wanted, prefix, limits)
    return files, problems + more


def _filesystem(root: str) -> Lookup:
    """The symlink rule's view of a directory: what is at a relative path, links not followed."""

    def lookup(relative: str) -> Entry:
        full = os.path.join(root, relative) if relative else root
        try:
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                return Entry("link", os.readlink(full))
        except (FileNotFoundError, NotADirectoryError):
            return Entry("missing")
        except OSError as exc:
            return Entry("error", f"{relative}: {exc.strerror}")
        if stat.S_ISDIR(info.st_mode):
            return Entry("dir")
        return Entry("file" if stat.S_ISREG(info.st_mode) else "other")

    return lookup


def _shown(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def _read_files(
    root: str, wanted: list[tuple[str, str]], prefix: str, limits: ReadLimits, *, follow_link: bool = False
) -> tuple[list[SourceFile], list[SpecProblem]]:
    files: list[SourceFile] = []
    problems: list[SpecProblem] = []
    for relative, real in wanted:
        shown = _shown(prefix, relative)
        full = os.path.join(root, real)
        try:
            data = _read_regular_file(full, limits.max_file_bytes, follow_link=follow_link)
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


def _read_regular_file(path: str, max_bytes: int, *, follow_link: bool) -> bytes:
    """Open without blocking (a FIFO would hang a plain open), check it is a small regular file, read it.

    Links were followed by the symlink rule already: a link swapped in since is not followed.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_link else os.O_NOFOLLOW)
    fd = os.open(path, flags)
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
