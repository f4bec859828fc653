"""Nginx adapter: the agent's stream directory, `nginx -t`, reload, and proof that the reload took.

Facts this relies on (shared/research/proxy-brief.md, facts 30-44):
- Nginx reads our files only through an `include` inside its single `stream {}` block.
- `nginx -t` does not bind ports; `nginx -s reload` exits 0 as soon as it has sent SIGHUP,
  and a master that then fails to bind keeps its old workers and old config. The only
  evidence is the error log and unchanged worker PIDs, so every reload is verified:
  a new worker generation must appear and every expected listener must be held by the master.
- `nginx -T` shows the files on disk, not what runs: the last-known-good record, not
  Nginx, is the truth about what was applied.

The stream directory is a symlink to a revision folder; switching revisions is
an atomic rename of a new link over the old one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hecate_agent.errors import HecateError
from hecate_agent.render.nginx import Listener
from hecate_agent.targets import sockets

INCLUDE_SNIPPET = """\
# In the main nginx.conf (Debian: /etc/nginx/nginx.conf), at top level, next to http {{}}:
# the stream module is loaded by /etc/nginx/modules-enabled/50-mod-stream.conf
# (package libnginx-mod-stream).
stream {{
    include {stream_dir}/*.conf;
}}
"""


class NginxError(HecateError):
    """An Nginx operation failed; the message says what Nginx said and what to do."""


class NginxSetupError(NginxError):
    pass


class NginxTestError(NginxError):
    pass


class NginxReloadError(NginxError):
    pass


class PortConflictError(NginxError):
    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__("; ".join(conflicts))


@dataclass(frozen=True)
class NginxSettings:
    stream_dir: Path = Path("/etc/nginx/hecate-streams.d")
    test_command: tuple[str, ...] = ("nginx", "-t")
    reload_command: tuple[str, ...] = ("nginx", "-s", "reload")
    dump_command: tuple[str, ...] = ("nginx", "-T")
    pid_file: Path = Path("/run/nginx.pid")
    error_log: Path | None = Path("/var/log/nginx/error.log")
    reload_timeout: float = 6.0  # Nginx retries a busy bind() for ~2.5 s before giving up
    command_timeout: float = 30.0


@dataclass
class ReloadResult:
    old_workers: set[int]
    new_workers: set[int]
    seconds: float
    log_lines: list[str] = field(default_factory=list)


def _run(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise NginxSetupError(f"cannot run {command[0]!r}: {exc.strerror}; is Nginx installed?") from None
    except subprocess.TimeoutExpired:
        raise NginxError(f"{' '.join(command)} did not finish within {timeout:.0f} s") from None


def _emerg_lines(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "[emerg]" in line or "[alert]" in line]
    return "; ".join(lines) if lines else text.strip()


class NginxStreams:
    """The agent's side of Nginx: stage, activate, test, reload and verify."""

    def __init__(self, settings: NginxSettings) -> None:
        self.settings = settings
        self.revisions_dir = settings.stream_dir.parent / f".{settings.stream_dir.name}.revisions"

    # --- setup -------------------------------------------------------------------------

    def check_include(self) -> None:
        """Fail clearly unless the live main config includes our directory inside `stream {}`."""
        result = _run(self.settings.dump_command, self.settings.command_timeout)
        if result.returncode != 0:
            raise NginxTestError(f"nginx -T failed: {_emerg_lines(result.stderr)}")
        if not includes_stream_dir(result.stdout, self.settings.stream_dir):
            raise NginxSetupError(
                f"Nginx does not include {self.settings.stream_dir}/*.conf inside its stream {{}} block, so "
                "the agent's streams would never be served. Add these lines to the main config:\n"
                + INCLUDE_SNIPPET.format(stream_dir=self.settings.stream_dir)
            )

    # --- files ---------------------------------------------------------------------------

    def active_folder(self) -> Path | None:
        link = self.settings.stream_dir
        return Path(os.path.realpath(link)) if link.is_symlink() else None

    def read_active(self) -> dict[str, str]:
        """The files Nginx would load on its next reload (not necessarily what runs)."""
        folder = self.settings.stream_dir
        if not folder.exists():
            return {}
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.conf"))}

    def stage(self, files: dict[str, str], revision: str) -> Path:
        """Write a complete new revision folder (fsynced) without touching the active one."""
        self.revisions_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        safe_revision = re.sub(r"[^A-Za-z0-9._-]", "_", revision)[:40] or "rev"
        folder = Path(tempfile.mkdtemp(prefix=f"{safe_revision}-", dir=self.revisions_dir))
        folder.chmod(0o755)
        for name, content in files.items():
            if "/" in name or name.startswith("."):
                raise NginxError(f"refusing to write stream file {name!r}")
            path = folder / name
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            path.chmod(0o644)
        _fsync_dir(folder)
        return folder

    def activate(self, folder: Path) -> Path | None:
        """Point the stream directory at `folder` atomically; returns the folder it pointed at before."""
        link = self.settings.stream_dir
        previous = self.active_folder()
        if link.exists() and not link.is_symlink():
            if any(link.iterdir()):
                raise NginxSetupError(
                    f"{link} is a real directory with files in it; the agent manages it as a symlink to "
                    "revision folders. Move its files away (they are not the agent's) and retry"
                )
            link.rmdir()
        temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        temporary.symlink_to(folder)
        os.replace(temporary, link)
        _fsync_dir(link.parent)
        return previous

    def prune(self, keep: Sequence[Path]) -> None:
        """Remove revision folders other than `keep` (and the active one)."""
        if not self.revisions_dir.exists():
            return
        keep_real = {os.path.realpath(p) for p in keep}
        active = self.active_folder()
        if active is not None:
            keep_real.add(str(active))
        for folder in self.revisions_dir.iterdir():
            if os.path.realpath(folder) not in keep_real:
                shutil.rmtree(folder, ignore_errors=True)

    def deactivate(self, previous: Path | None) -> None:
        """Point the stream directory back at `previous` (or remove it when there was none)."""
        if previous is not None:
            self.activate(previous)
        elif self.settings.stream_dir.is_symlink():
            self.settings.stream_dir.unlink()
            _fsync_dir(self.settings.stream_dir.parent)

    # --- test, reload, verify ---------------------------------------------------------------

    def test(self) -> None:
        result = _run(self.settings.test_command, self.settings.command_timeout)
        if result.returncode != 0:
            raise NginxTestError(f"nginx -t rejected the configuration: {_emerg_lines(result.stderr)}")

    def master_pid(self) -> int:
        try:
            pid = int(self.settings.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            raise NginxError(
                f"Nginx is not running (no live master PID in {self.settings.pid_file}); start it first"
            ) from None
        return pid

    def workers(self, master: int) -> set[int]:
        return _children(master)

    def preflight(self, listeners: Sequence[Listener]) -> None:
        """Refuse listeners whose port another process holds (Nginx's own -t cannot see that)."""
        held = self._held_keys()
        existing = sockets.listening_sockets()
        conflicts = []
        for listener in listeners:
            if listener.key in held:
                continue  # already ours: the reload hands the socket over
            if sockets.can_bind(listener.protocol, listener.address, listener.port):
                continue
            owners = []
            for entry in sockets.holders(listener.protocol, listener.address, listener.port, existing):
                holder = sockets.process_holding(entry.inode)
                if holder is not None:
                    owners.append(f"{holder[1]} (pid {holder[0]})")
            by = f" by {', '.join(sorted(set(owners)))}" if owners else ""
            conflicts.append(
                f"Stream/{listener.stream}: {listener.describe()} is already in use{by}; "
                "free the port or change the stream's listen port"
            )
        if conflicts:
            raise PortConflictError(conflicts)

    def _held_keys(self) -> set[tuple[str, int, str]]:
        try:
            master = self.master_pid()
        except NginxError:
            return set()
        inodes = sockets.socket_inodes(master)
        return {(s.address, s.port, s.protocol) for s in sockets.listening_sockets() if s.inode in inodes}

    def reload_and_verify(self, listeners: Sequence[Listener]) -> ReloadResult:
        """Reload and prove it: a new worker generation, and every listener held by the master."""
        master = self.master_pid()
        old_workers = self.workers(master)
        log_offset = self._log_size()
        started = time.monotonic()
        result = _run(self.settings.reload_command, self.settings.command_timeout)
        if result.returncode != 0:
            raise NginxReloadError(f"nginx -s reload refused the configuration: {_emerg_lines(result.stderr)}")
        deadline = started + self.settings.reload_timeout
        while True:
            new_workers = self.workers(master)
            log_lines = self._log_since(log_offset)
            # A busy port makes the master retry bind() five times, 500 ms apart, before it gives up
            # with "still could not bind()"; only that, or any other [emerg], is its final word.
            final = [
                line
                for line in log_lines
                if "still could not bind" in line or ("[emerg]" in line and "bind() to" not in line)
            ]
            if final:
                failed = [line for line in log_lines if "[emerg]" in line][-3:]
                raise NginxReloadError(
                    "Nginx could not apply the new configuration and kept the old one: " + "; ".join(failed)
                )
            # Old workers may linger while they drain long connections; a new generation is what counts.
            if new_workers - old_workers:
                missing = self._missing_listeners(master, listeners)
                if not missing:
                    return ReloadResult(old_workers, new_workers - old_workers, time.monotonic() - started, log_lines)
            if time.monotonic() > deadline:
                missing = self._missing_listeners(master, listeners)
                detail = f"listeners not open: {', '.join(missing)}" if missing else "no new worker generation started"
                raise NginxReloadError(
                    f"Nginx did not take the new configuration within {self.settings.reload_timeout:.0f} s "
                    f"({detail}); it keeps serving the previous one"
                )
            time.sleep(0.05)

    def _missing_listeners(self, master: int, listeners: Sequence[Listener]) -> list[str]:
        inodes = sockets.socket_inodes(master)
        open_keys = {(s.address, s.port, s.protocol) for s in sockets.listening_sockets() if s.inode in inodes}
        return [
            f"Stream/{item.stream} {item.describe()}"
            for item in listeners
            if (item.address, item.port, item.protocol) not in open_keys
        ]

    def _log_size(self) -> int:
        log = self.settings.error_log
        try:
            return log.stat().st_size if log is not None else 0
        except OSError:
            return 0

    def _log_since(self, offset: int) -> list[str]:
        log = self.settings.error_log
        if log is None:
            return []
        try:
            with open(log, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []


def includes_stream_dir(dump: str, stream_dir: Path) -> bool:
    """Does `nginx -T` output include `<stream_dir>/*.conf` from inside a `stream {}` block?

    Relative include paths resolve against Nginx's prefix, which we cannot know
    from the dump; they are accepted when their tail matches.
    """
    wanted = f"{stream_dir}/*.conf".replace("//", "/")
    depth_in_stream: int | None = None
    depth = 0
    for raw in dump.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if re.match(r"stream\s*\{", line) and depth_in_stream is None:
            depth_in_stream = depth
        depth += line.count("{") - line.count("}")
        include = re.match(r"include\s+([^;]+);", line)
        if include and depth_in_stream is not None and depth > depth_in_stream:
            target = include.group(1).strip().strip("'\"")
            if target == wanted or wanted.endswith("/" + target.lstrip("./")):
                return True
        if depth_in_stream is not None and depth <= depth_in_stream:
            depth_in_stream = None
    return False


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may contain spaces or ')': the fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(entry))
    return found


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "INCLUDE_SNIPPET",
    "NginxError",
    "NginxReloadError",
    "NginxSettings",
    "NginxSetupError",
    "NginxStreams",
    "NginxTestError",
    "PortConflictError",
    "includes_stream_dir",
]
