"""The agent's state directory: lock, last-known-good snapshots, history, suspend flag, apply journal.

Everything is written atomically (temporary file, fsync, rename, fsync of the
folder), so a crash leaves the old file or the new one, never half of one.
Snapshots hold rendered configuration with secrets resolved: files are 0600
in 0700 folders.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hecate_agent import fastjson, redaction
from hecate_agent.errors import HecateError

HISTORY_LIMIT = 1000


class StateError(HecateError):
    pass


class LockedError(StateError):
    pass


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: a temporary file of its own (unique per write, so concurrent
    writers in one process or several never share one), fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _dump(value: Any) -> bytes:
    # No indent: with indent, json falls back to its pure-Python encoder, ~10x slower on a
    # 5 MB config (10,000 routes). `python -m json.tool` makes these files readable.
    return fastjson.dumps(value, sort_keys=True) + b"\n"


@dataclass
class Snapshot:
    """A last-known-good record: exactly what one apply put in place."""

    revision: str
    applied_at: str
    fingerprint: str
    # Each target's part (`Target.to_snapshot`): Caddy's full config, Nginx's files and listeners.
    caddy_config: dict[str, Any] = field(default_factory=dict)  # the full config Caddy was given
    nginx_files: dict[str, str] = field(default_factory=dict)
    nginx_listeners: list[dict[str, Any]] = field(default_factory=list)
    specs: dict[str, Any] = field(default_factory=dict)
    plan_summary: dict[str, int] = field(default_factory=dict)
    sequence: int = 0
    # The resolved secret values inside caddy_config, so that they stay redacted after a
    # restart or a rotation (the file is 0600, like the config that holds them anyway).
    sensitive: list[str] = field(default_factory=list)
    # The parts of targets added later (Authentik, DNS), by target name; absent in older snapshots.
    parts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: dataclasses.asdict deep-copies megabytes of config for nothing.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class StateStore:
    def __init__(self, root: Path, *, keep: int = 10) -> None:
        self.root = root
        self.keep = keep
        self.snapshots_dir = root / "snapshots"
        # (inode, mtime, size) of last-applied.json and what it held; files are replaced by
        # rename, so a new last-known-good always has a new inode.
        self._last_applied: tuple[tuple[int, int, int], Snapshot | None] | None = None

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.snapshots_dir.mkdir(exist_ok=True, mode=0o700)
            # Snapshots hold resolved secrets: whoever created the folder first (a Git mirror made
            # with parents=True, an installer), it is the agent's alone.
            for folder in (self.root, self.snapshots_dir):
                if folder.stat().st_mode & 0o077:
                    folder.chmod(0o700)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {self.root}: {exc.strerror}") from None

    # --- lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """Exclusive lock: the CLI and the daemon never apply at once."""
        self.ensure()
        fd = os.open(self.root / "apply.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                        raise LockedError(
                            f"another hecate-agent (pid {holder}) is applying on this node; wait for it to finish"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # --- json files -----------------------------------------------------------------------

    def _read(self, name: str) -> Any:
        try:
            return fastjson.loads((self.root / name).read_bytes())  # UTF-8, whatever the locale
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.root / name} is unreadable ({exc}); move it away and re-apply") from None

    def _write(self, name: str, value: Any) -> None:
        self.ensure()
        try:
            write_atomic(self.root / name, _dump(value))
        except OSError as exc:
            raise StateError(f"cannot write {self.root / name}: {exc.strerror}") from None

    # --- last known good ---------------------------------------------------------------

    def last_applied(self) -> Snapshot | None:
        """The last-known-good; re-read only when the file changed (with 10,000 routes it is 5 MB of
        JSON, and status updates, heartbeats and plans all ask for it)."""
        path = self.root / "last-applied.json"
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{path} is unreadable ({exc}); move it away and re-apply") from None
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._last_applied is not None and self._last_applied[0] == stamp:
            return self._last_applied[1]
        data = self._read("last-applied.json")
        snapshot = Snapshot.from_dict(data) if data else None
        self._last_applied = (stamp, snapshot)
        return snapshot

    def record(self, snapshot: Snapshot) -> Snapshot:
        """Store `snapshot` as the new last-known-good (and in the rolling snapshot list)."""
        self.ensure()
        snapshot.sequence = self._last_sequence() + 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in snapshot.revision)[:40]
        encoded = _dump(snapshot.to_dict())
        try:
            write_atomic(self.snapshots_dir / f"{snapshot.sequence:08d}-{safe}.json", encoded)
            write_atomic(self.root / "last-applied.json", encoded)
            info = (self.root / "last-applied.json").stat()
        except OSError as exc:
            raise StateError(f"cannot write a snapshot under {self.root}: {exc.strerror}") from None
        # What was just written is what a read would return: no 5 MB re-read, and the next plan compares
        # the last-known-good's config with the applied one by identity (targets/caddy_memory.py).
        self._last_applied = ((info.st_ino, info.st_mtime_ns, info.st_size), snapshot)
        for old in sorted(self.snapshots_dir.glob("*.json"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return snapshot

    def _last_sequence(self) -> int:
        """The highest sequence in the snapshot list, from the file names (`<sequence:08d>-<revision>.json`):
        reading every snapshot for it cost ~2.5 s with 10 snapshots of 10,000 routes."""
        if not self.snapshots_dir.exists():
            return 0
        numbers = [path.name.split("-", 1)[0] for path in self.snapshots_dir.glob("*.json")]
        return max((int(n) for n in numbers if n.isascii() and n.isdecimal()), default=0)

    def snapshots(self) -> list[Snapshot]:
        if not self.snapshots_dir.exists():
            return []
        found = []
        for path in sorted(self.snapshots_dir.glob("*.json")):
            try:
                found.append(Snapshot.from_dict(fastjson.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError):
                continue  # a damaged old snapshot must not hide the others
        return found

    def find(self, revision: str | None = None, *, previous: bool = False) -> Snapshot | None:
        snapshots = self.snapshots()
        current = self.last_applied()
        if previous:
            older = [s for s in snapshots if current is None or s.fingerprint != current.fingerprint]
            return older[-1] if older else None
        matches = [s for s in snapshots if s.revision == revision or (revision and s.revision.startswith(revision))]
        return matches[-1] if matches else None

    # --- history ----------------------------------------------------------------------------

    def append_history(self, entry: dict[str, Any]) -> None:
        history = self.history()
        history.append(redaction.scrub_value(entry))
        self._write("history.json", history[-HISTORY_LIMIT:])

    def history(self) -> list[dict[str, Any]]:
        data = self._read("history.json")
        return list(data) if isinstance(data, list) else []

    # --- suspend --------------------------------------------------------------------------

    def suspension(self) -> dict[str, Any] | None:
        data = self._read("suspended.json")
        return dict(data) if isinstance(data, dict) else None

    def suspend(self, reason: str, by: str) -> None:
        self._write("suspended.json", {"reason": reason, "by": by, "at": utc_now()})

    def resume(self) -> bool:
        path = self.root / "suspended.json"
        if not path.exists():
            return False
        path.unlink()
        return True

    # --- journal ----------------------------------------------------------------------------

    def write_journal(self, journal: dict[str, Any]) -> None:
        self._write("journal.json", journal)

    def write_journal_text(self, text: str) -> None:
        """Write an already encoded journal (the transaction encodes its megabytes once)."""
        self.ensure()
        try:
            write_atomic(self.root / "journal.json", text.encode())
        except OSError as exc:
            raise StateError(f"cannot write {self.root / 'journal.json'}: {exc.strerror}") from None

    def journal(self) -> dict[str, Any] | None:
        data = self._read("journal.json")
        return dict(data) if isinstance(data, dict) else None

    def clear_journal(self) -> None:
        (self.root / "journal.json").unlink(missing_ok=True)
