"""Where revisions come from: the two adapters of the Source port (a Git remote, a local folder)."""

from __future__ import annotations

from pathlib import Path

from hecate_agent.engine.ports import Source
from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.settings import AgentSettings
from hecate_agent.sources.directory import read_directory
from hecate_agent.sources.git import GitSource
from hecate_agent.spec.loader import SourceFile, snapshot_digest

__all__ = ["DirectorySource", "Source", "make_source", "source_label"]


class DirectorySource:
    """A spec folder on this node; its revision is the content hash of what it holds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._last: tuple[str, list[SourceFile], list[SpecProblem]] | None = None

    def fetch(self) -> str:
        if not self.directory.exists():
            raise HecateError(f"source.directory {self.directory} does not exist")
        files, problems = read_directory(self.directory)
        # Files the reader refused (too big, a symlink, a FIFO) are not in `files`: they must still
        # make a new revision, or adding one would look like "nothing changed" and go unreported.
        refused = [SourceFile(f"\0refused/{p.file}", p.message.encode()) for p in problems]
        revision = f"sha256:{snapshot_digest(files + refused)}"
        self._last = (revision, files, problems)
        return revision

    def snapshot(self, revision: str) -> tuple[list[SourceFile], list[SpecProblem]]:
        if self._last is None or self._last[0] != revision:
            self.fetch()
        assert self._last is not None
        return self._last[1], self._last[2]

    def accept(self, revision: str) -> None:
        del revision


def make_source(settings: AgentSettings) -> Source:
    git_settings = settings.source.git
    if git_settings is not None:
        return GitSource(
            git_settings.url,
            git_settings.branch,
            settings.state_dir / "git-mirror",
            path=git_settings.path,
            ssh_key_file=git_settings.ssh_key_file,
            token_file=git_settings.token_file,
            allow_force_push=git_settings.allow_force_push,
            allowed_signers_file=git_settings.verify.allowed_signers_file,
        )
    if settings.source.directory is not None:
        return DirectorySource(settings.source.directory)
    raise HecateError("no source configured: set source.git or source.directory in agent.yaml")


def source_label(settings: AgentSettings) -> str:
    git_settings = settings.source.git
    if git_settings is not None:
        return f"git {git_settings.branch}"
    return f"directory {settings.source.directory}"
