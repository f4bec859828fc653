"""Specs from Git: a bare mirror in the state dir, fetched with a timeout, read from the commit's tree.

Specs are read from the object database of one commit, never from a work
tree that could be half-updated, with git's plumbing commands (`ls-tree`,
`cat-file --batch`), each a short-lived process with hooks disabled, no
prompts and a timeout. GitPython, which the design first named, is not used:
it builds a Python object per tree entry (1.2 s to list 10,000 files against
0.03 s for `ls-tree`) and keeps `git cat-file` children per open repository,
which leak in daemons (shared/research/python-deps.md).
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
from pathlib import Path

from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.sources.directory import SPEC_SUFFIXES
from hecate_agent.sources.links import Entry, follow, link_problem
from hecate_agent.spec.loader import SourceFile
from hecate_agent.spec.yamlio import DEFAULT_LIMITS, ReadLimits, size_problem

BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
}
FETCH_TIMEOUT = 60.0


class GitError(HecateError):
    pass


class ForcePushRefusedError(GitError):
    pass


class UnsignedCommitError(GitError):
    pass


def _config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Git settings passed as command-scope configuration (never written to a file, never on a command line)."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def git_env(extra_config: list[tuple[str, str]] | None = None, ssh_key: Path | None = None) -> dict[str, str]:
    pairs = [("core.hooksPath", "/dev/null"), ("protocol.ext.allow", "never")] + (extra_config or [])
    env = {**os.environ, **BASE_ENV, **_config_env(pairs)}
    if ssh_key is not None:
        env["GIT_SSH_COMMAND"] = (
            f"ssh -i {shlex.quote(str(ssh_key))} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
            "-o ConnectTimeout=15 -o ServerAliveInterval=15"
        )
    return env


def run_git(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = FETCH_TIMEOUT) -> str:
    return _run_bytes(repo, *args, env=env, timeout=timeout).decode("utf-8", "replace")


def _run_bytes(
    repo: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = FETCH_TIMEOUT,
) -> bytes:
    """Run git in `repo` (hooks off, no prompts, a timeout); its stdout, or GitError with its stderr."""
    try:
        command = ["git", "-C", str(repo), *args]
        result = subprocess.run(
            command, input=stdin, capture_output=True, timeout=timeout, env=env or git_env(), check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise GitError(f"git {args[0]} failed: {detail}")
    return result.stdout


class BlobCache:
    """Spec files by blob SHA: an unchanged file is never read twice (the loader's cache
    then spares parsing it again)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], SourceFile] = {}


def read_tree(
    repo_path: Path,
    revision: str,
    subpath: str = "",
    limits: ReadLimits = DEFAULT_LIMITS,
    cache: BlobCache | None = None,
) -> tuple[list[SourceFile], list[SpecProblem]]:
    """The spec files under `subpath` in `revision`, straight from the object database.

    One `git ls-tree` lists the tree (GitPython builds an object per entry: 1.2 s for
    10,000 files), and one `git cat-file --batch` reads the blobs the cache lacks, so a
    push that changes one file reads one blob.
    """
    subpath = subpath.strip("/").removeprefix("./").rstrip(".") if subpath not in ("", ".") else ""
    try:
        listing = _run_bytes(repo_path, "ls-tree", "-r", "-l", "-z", "--full-tree", revision, "--", subpath or ".")
    except GitError as exc:
        raise GitError(f"unknown revision {revision!r}: {exc}") from None
    if subpath and not listing:
        raise GitError(f"{subpath!r} does not exist in {revision}")
    files: list[SourceFile | None] = []
    problems: list[SpecProblem] = []
    wanted: dict[str, list[tuple[int, str, str]]] = {}  # sha -> [(slot, relative, full path)]
    tree = _Tree(repo_path, subpath, listing)
    for relative, (mode, listed_id, listed_size) in tree.entries.items():
        object_id, size = listed_id, listed_size
        full_path = f"{subpath}/{relative}" if subpath else relative
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        spec_file = relative.endswith(SPEC_SUFFIXES)
        if mode == "120000":
            verdict = follow(relative, tree.lookup)
            problem = link_problem(verdict, spec_file=spec_file)
            if problem:
                problems.append(SpecProblem(full_path, 0, 0, problem))
                continue
            if verdict.kind != "file" or not spec_file:
                continue
            _, object_id, size = tree.entries[verdict.path]
        elif mode == "160000" or not spec_file:
            continue  # submodules, and files that are not specs
        if size > limits.max_file_bytes:
            problems.append(size_problem(full_path, size, limits.max_file_bytes))
            continue
        key = (object_id, relative)
        cached = cache.files.get(key) if cache is not None else None
        if cached is None:
            wanted.setdefault(key[0], []).append((len(files), relative, full_path))
        files.append(cached)
    if wanted:
        for blob_id, data in _read_blobs(repo_path, list(wanted)).items():
            for slot, relative, full_path in wanted[blob_id]:
                read = SourceFile(relative, data, full_path)
                files[slot] = read
                if cache is not None:
                    cache.files[(blob_id, relative)] = read
    return [f for f in files if f is not None], problems


class _Tree:
    """The entries of one commit's tree under `subpath` (paths relative to it), as the symlink rule sees them."""

    def __init__(self, repo: Path, subpath: str, listing: bytes) -> None:
        self.entries: dict[str, tuple[str, str, int]] = {}  # relative path -> (mode, object id, size)
        self.folders: set[str] = {""}
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, _kind, object_id, size = meta.split(None, 3)
            full_path = raw_path.decode("utf-8", "surrogateescape")
            relative = full_path[len(subpath) + 1 :] if subpath else full_path
            digits = size.strip()
            self.entries[relative] = (
                mode.decode(),
                object_id.decode(),
                int(digits) if digits.isascii() and digits.isdigit() else 0,
            )
            parts = relative.split("/")
            self.folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        links = [entry[1] for entry in self.entries.values() if entry[0] == "120000"]
        blobs = _read_blobs(repo, sorted(set(links))) if links else {}
        self.targets = {sha: data.decode("utf-8", "surrogateescape") for sha, data in blobs.items()}

    def lookup(self, relative: str) -> Entry:
        found = self.entries.get(relative)
        if found is None:
            return Entry("dir") if relative in self.folders else Entry("missing")
        mode, object_id, _ = found
        if mode == "120000":
            return Entry("link", self.targets[object_id])
        return Entry("other" if mode == "160000" else "file")


def _read_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    """Blob contents by SHA, all through one `git cat-file --batch`."""
    out = _run_bytes(repo, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha in shas).encode())
    blobs: dict[str, bytes] = {}
    position = 0
    for sha in shas:
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split()
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"git cat-file could not read blob {sha}")
        size = int(header[2])
        blobs[sha] = out[header_end + 1 : header_end + 1 + size]
        position = header_end + 1 + size + 1  # content, then a newline
    return blobs


def repository_of(path: Path) -> tuple[Path, str] | None:
    """(top-level of the work tree containing `path`, path of `path` inside it), or None."""
    directory = path if path.is_dir() else path.parent
    try:
        top = Path(run_git(directory, "rev-parse", "--show-toplevel", timeout=10).strip())
    except GitError:
        return None
    inside = os.path.relpath(os.path.realpath(path), os.path.realpath(top))
    return top, "" if inside == "." else inside.replace(os.sep, "/")


def describe(path: Path) -> str | None:
    """The commit a spec folder is at (12 hex digits, `-dirty` if it has local changes), or None."""
    found = repository_of(path)
    if found is None:
        return None
    top, inside = found
    try:
        commit = run_git(top, "rev-parse", "--short=12", "HEAD", timeout=10).strip()
        dirty = run_git(top, "status", "--porcelain", "--", inside or ".", timeout=30).strip()
    except GitError:
        return None
    return f"{commit}-dirty" if dirty else commit


def _read_ref(repo: Path, ref: str) -> str | None:
    """A ref's object id from a loose ref file or packed-refs (None if neither has it)."""
    try:
        value = (repo / ref).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        value = ""
    if not value:
        try:
            packed = (repo / "packed-refs").read_text()
        except FileNotFoundError:
            return None
        value = next((line.split(" ", 1)[0] for line in packed.splitlines() if line.endswith(f" {ref}")), "")
    return value if len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value) else None


class GitSource:
    """Follows one branch of a remote through a bare mirror under the state directory."""

    def __init__(
        self,
        url: str,
        branch: str,
        mirror: Path,
        *,
        path: str = ".",
        ssh_key_file: Path | None = None,
        token_file: Path | None = None,
        allow_force_push: bool = False,
        allowed_signers_file: Path | None = None,
        limits: ReadLimits = DEFAULT_LIMITS,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.url = url
        self.branch = branch
        self.mirror = mirror
        self.path = path
        self.ssh_key_file = ssh_key_file
        self.token_file = token_file
        self.allow_force_push = allow_force_push
        self.allowed_signers_file = allowed_signers_file
        self.limits = limits
        self.timeout = timeout
        self.cache = BlobCache()
        self.known_tip: str | None = None

    @property
    def ref(self) -> str:
        return f"refs/remotes/origin/{self.branch}"

    def _env(self) -> dict[str, str]:
        extra: list[tuple[str, str]] = []
        if self.token_file is not None:
            token = self.token_file.read_text().strip()
            credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            # Sent as a header from command-scope config: never in the URL, argv or logs.
            extra.append(("http.extraHeader", f"Authorization: Basic {credentials}"))
        if self.allowed_signers_file is not None:
            extra += [("gpg.format", "ssh"), ("gpg.ssh.allowedSignersFile", str(self.allowed_signers_file))]
        return git_env(extra, self.ssh_key_file)

    def _ensure_mirror(self) -> None:
        if (self.mirror / "HEAD").exists():
            return
        self.mirror.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_git(self.mirror, "init", "--bare", "--quiet", env=self._env())
        run_git(self.mirror, "remote", "add", "origin", self.url, env=self._env())

    def fetch(self) -> str:
        """Fetch the branch; return its tip. Refuses force pushes and unsigned commits when configured.

        An idle poll is one `git ls-remote` (~6 ms of CPU); the fetch (~9 ms, and the
        object transfer) only runs when the remote's tip differs from the mirror's.
        """
        self._ensure_mirror()
        env = self._env()
        previous = self.known_tip or self._current_tip()
        listed = run_git(self.mirror, "ls-remote", "origin", f"refs/heads/{self.branch}", env=env, timeout=self.timeout)
        remote_tip = listed.split("\t", 1)[0].strip() if listed.strip() else None
        if remote_tip is None:
            raise GitError(f"branch {self.branch!r} does not exist on {self.url}")
        if remote_tip != self._current_tip():
            # Full history (no --depth): the force-push check needs ancestry. No maintenance or
            # FETCH_HEAD either: the mirror is ours, and they cost CPU on every change.
            run_git(
                self.mirror,
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
                "fetch",
                "--quiet",
                "--no-tags",
                "--prune",
                "--no-write-fetch-head",
                "origin",
                f"+refs/heads/{self.branch}:{self.ref}",
                env=env,
                timeout=self.timeout,
            )
        tip = self._current_tip()
        if tip is None:
            raise GitError(f"branch {self.branch!r} does not exist on {self.url}")
        if tip == self.known_tip:
            return tip  # checked when it was first seen
        if previous and tip != previous and not self.allow_force_push and not self._is_ancestor(previous, tip):
            raise ForcePushRefusedError(
                f"branch {self.branch} was force-pushed: {tip[:12]} does not descend from {previous[:12]}. "
                "Refused (source.git.allowForcePush is false); push a commit on top instead"
            )
        if self.allowed_signers_file is not None:
            try:
                run_git(self.mirror, "verify-commit", tip, env=env, timeout=30)
            except GitError as exc:
                raise UnsignedCommitError(
                    f"commit {tip[:12]} is not signed by a key in {self.allowed_signers_file}; refused ({exc})"
                ) from None
        self.known_tip = tip
        return tip

    def accept(self, tip: str) -> None:
        """Remember `tip` as the base for the next force-push check (e.g. the applied revision)."""
        self.known_tip = tip

    def _current_tip(self) -> str | None:
        """The mirror's ref, read from its files: a `git rev-parse` per poll is ~4 ms of CPU for nothing."""
        found = _read_ref(self.mirror, self.ref)
        if found is not None:
            return found
        try:
            return run_git(self.mirror, "rev-parse", "--verify", "--quiet", self.ref, timeout=10).strip() or None
        except GitError:
            return None

    def _is_ancestor(self, old: str, new: str) -> bool:
        try:
            run_git(self.mirror, "merge-base", "--is-ancestor", old, new, timeout=30)
        except GitError:
            return False
        return True

    def snapshot(self, commit: str) -> tuple[list[SourceFile], list[SpecProblem]]:
        return read_tree(self.mirror, commit, self.path, self.limits, self.cache)
