"""Reading specs from a Git commit's tree (the object database, never a half-updated work tree).

Used by `plan --against REV` and for naming the revision of a directory that
is a Git work tree. Every git call runs with hooks disabled and no prompts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hecate_agent.errors import HecateError
from hecate_agent.sources.directory import SPEC_SUFFIXES
from hecate_agent.spec.loader import SourceFile
from hecate_agent.spec.yamlio import DEFAULT_LIMITS, ReadLimits

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": "/dev/null",
}


class GitError(HecateError):
    pass


def git(repo: Path, *args: str, timeout: float = 60, input_bytes: bytes | None = None) -> bytes:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=timeout,
            input=input_bytes,
            env={**os.environ, **GIT_ENV},
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def repository_of(path: Path) -> tuple[Path, str] | None:
    """(top-level of the work tree containing `path`, path of `path` inside it), or None."""
    directory = path if path.is_dir() else path.parent
    try:
        top = Path(git(directory, "rev-parse", "--show-toplevel").decode().strip())
    except GitError:
        return None
    inside = os.path.relpath(os.path.realpath(path), os.path.realpath(top))
    return top, "" if inside == "." else inside.replace(os.sep, "/")


def read_tree(repo: Path, revision: str, subpath: str = "", limits: ReadLimits = DEFAULT_LIMITS) -> list[SourceFile]:
    """The spec files under `subpath` in `revision`, read from the object database."""
    commit = git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode().strip()
    listing = git(repo, "ls-tree", "-r", "-z", "--long", commit, "--", subpath or ".").split(b"\0")
    entries = []
    for raw in listing:
        if not raw:
            continue
        meta, _, name = raw.partition(b"\t")
        mode, kind, sha, size_field = meta.split()
        relative = name.decode()
        if subpath:
            relative = relative[len(subpath) + 1 :]
        parts = relative.split("/")
        if kind != b"blob" or any(p.startswith(".") for p in parts) or not relative.endswith(SPEC_SUFFIXES):
            continue
        if mode == b"120000":
            continue  # a symlink in the tree: its target is not part of the commit's specs
        if int(size_field) > limits.max_file_bytes:
            continue  # the loader reports sizes for directories; a commit must be validated in CI first
        entries.append((relative, sha.decode()))
    if not entries:
        return []
    batch = git(repo, "cat-file", "--batch", input_bytes="".join(f"{sha}\n" for _, sha in entries).encode())
    files = []
    offset = 0
    for relative, _sha in entries:
        header_end = batch.index(b"\n", offset)
        length = int(batch[offset:header_end].split()[2])
        data = batch[header_end + 1 : header_end + 1 + length]
        offset = header_end + 1 + length + 1
        files.append(SourceFile(relative, data, f"{revision}:{subpath + '/' if subpath else ''}{relative}"))
    return files


def describe(path: Path) -> str | None:
    """The commit a spec folder is at (12 hex digits, `-dirty` if it has local changes), or None."""
    found = repository_of(path)
    if found is None:
        return None
    top, inside = found
    try:
        commit = git(top, "rev-parse", "--short=12", "HEAD").decode().strip()
        dirty = git(top, "status", "--porcelain", "--", inside or ".").strip()
    except GitError:
        return None
    return f"{commit}-dirty" if dirty else commit
