"""Specs from Git: a bare mirror in the state dir, fetched with a timeout, read from the commit's tree.

Specs are read from the object database of one commit, never from a work
tree that could be half-updated. GitPython reads the objects; every repository
handle is closed after use (GitPython keeps `git cat-file` children per open
repository and is known to leak them in daemons: shared/research/python-deps.md),
and every git process runs with hooks disabled, no prompts, and a timeout.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import git

from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.sources.directory import SPEC_SUFFIXES
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
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or git_env(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@contextlib.contextmanager
def opened(path: Path) -> Iterator[git.Repo]:
    repo = git.Repo(path)
    try:
        yield repo
    finally:
        repo.close()


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
    """The spec files under `subpath` in `revision`, straight from the object database."""
    subpath = subpath.strip("/").removeprefix("./").rstrip(".") if subpath not in ("", ".") else ""
    files: list[SourceFile] = []
    problems: list[SpecProblem] = []
    with opened(repo_path) as repo:
        try:
            commit = repo.commit(revision)
        except (git.BadName, ValueError) as exc:
            raise GitError(f"unknown revision {revision!r}: {exc}") from None
        tree = commit.tree
        if subpath:
            try:
                tree = tree / subpath
            except KeyError:
                raise GitError(f"{subpath!r} does not exist in {revision}") from None
        for item in tree.traverse():
            if not isinstance(item, git.Blob):
                continue
            full_path = str(item.path)
            relative = full_path[len(subpath) + 1 :] if subpath else full_path
            if any(part.startswith(".") for part in relative.split("/")) or not relative.endswith(SPEC_SUFFIXES):
                continue
            shown = full_path
            if item.mode == 0o120000:
                problems.append(SpecProblem(shown, 0, 0, "a symlink in the repository; specs must be plain files"))
                continue
            if item.size > limits.max_file_bytes:
                problems.append(size_problem(shown, item.size, limits.max_file_bytes))
                continue
            key = (item.hexsha, relative)
            cached = cache.files.get(key) if cache is not None else None
            if cached is None:
                cached = SourceFile(relative, item.data_stream.read(), full_path)
                if cache is not None:
                    cache.files[key] = cached
            files.append(cached)
    return files, problems


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
        """Fetch the branch; return its tip. Refuses force pushes and unsigned commits when configured."""
        self._ensure_mirror()
        env = self._env()
        previous = self.known_tip or self._current_tip()
        # Full history (no --depth): the force-push check needs ancestry.
        run_git(
            self.mirror,
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "origin",
            f"+refs/heads/{self.branch}:{self.ref}",
            env=env,
            timeout=self.timeout,
        )
        tip = self._current_tip()
        if tip is None:
            raise GitError(f"branch {self.branch!r} does not exist on {self.url}")
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
