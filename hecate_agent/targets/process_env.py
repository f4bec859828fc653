"""The environment of the local process listening on Caddy's admin address, from /proc.

Caddy's admin API does not expose its environment, and the OpenTelemetry
exporter reads its endpoint from there only. On Linux the listening socket's
inode (/proc/net/tcp, tcp6 or unix) leads to the process holding it, and
/proc/<pid>/environ holds what it was started with. Reading another user's
environ needs the same user or root: then the answer is None with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "")
_LISTEN = "0A"


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Inodes of TCP sockets listening on `port` (any address)."""
    found = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def unix_inodes(path: str, proc: Path = Path("/proc")) -> set[str]:
    try:
        lines = (proc / "net/unix").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {f[6] for f in (line.split() for line in lines) if len(f) > 7 and f[7] == path}


def pid_holding(inodes: set[str], proc: Path = Path("/proc")) -> int | None:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in sorted(proc.iterdir(), key=lambda p: p.name):
        if not (entry.name.isascii() and entry.name.isdigit()):
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:
            continue  # another user's process, or it just exited
    return None


def read_environ(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    data = (proc / str(pid) / "environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in data.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def admin_process_environment(admin_url: str, proc: Path = Path("/proc")) -> tuple[dict[str, str] | None, str]:
    """(environment, how it was found) of the process serving `admin_url`; None when it cannot be read."""
    if admin_url.startswith("unix://"):
        inodes = unix_inodes(admin_url[len("unix://") :], proc)
    else:
        parts = urlsplit(admin_url)
        if (parts.hostname or "") not in LOCAL_HOSTS:
            return None, f"its admin endpoint {parts.hostname} is not on this host"
        inodes = listening_inodes(parts.port or 80, proc)
    if not inodes:
        return None, f"no local process listens on {admin_url}"
    pid = pid_holding(inodes, proc)
    if pid is None:
        return None, f"the process listening on {admin_url} is not visible to the agent (run it as root or as caddy)"
    try:
        return read_environ(pid, proc), f"pid {pid}"
    except OSError as exc:
        return None, f"pid {pid}: /proc/{pid}/environ: {exc.strerror or exc}"
