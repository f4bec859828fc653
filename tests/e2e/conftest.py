"""The daemon end to end: `hecate-agent run` as a real process, a real Git remote, real Caddy and Nginx."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import dump_yaml, route, write_repo
from tests.support.http import Upstream
from tests.support.node import NodeUnderTest
from tests.support.servers import free_port, serving, wait_until

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.email=dev@example.com", "-c", "user.name=dev", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


class Remote:
    """A bare repository as the remote and a clone engineers push from."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str], message: str, remove: tuple[str, ...] = ()) -> str:
        write_repo(self.work, files)
        for path in remove:
            (self.work / path).unlink()
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, *, force: bool = False) -> None:
        git(self.work, "push", "-q", *(["--force"] if force else []), "origin", "main")


class Agent:
    """`hecate-agent run` in a subprocess, with a notify socket standing in for systemd."""

    def __init__(self, node: NodeUnderTest, root: Path, **overrides: Any) -> None:
        self.node = node
        self.root = root
        self.http_port = free_port()
        self.secret = root / "webhook.secret"
        self.secret.write_text("s3cret-webhook\n")
        settings = json.loads(node.config.read_text())
        settings["http"] = {"listen": f"127.0.0.1:{self.http_port}", "webhookSecretFile": str(self.secret)}
        settings["sync"] = {"driftInterval": "2s", "selfHeal": True}
        for key, value in overrides.items():
            settings[key] = value if not isinstance(value, dict) else {**settings.get(key, {}), **value}
        self.config = root / "agent-run.yaml"
        self.config.write_text(json.dumps(settings, indent=2))
        self.notify_path = root / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.1)
        self.process: subprocess.Popen[str] | None = None
        self.log = root / "agent.log"
        self.extra_env: dict[str, str] = {}

    def start(self) -> None:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "NOTIFY_SOCKET": str(self.notify_path),
               "WATCHDOG_USEC": "4000000", "HOME": str(self.root), **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hecate_agent", "--config", str(self.config), "run"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, text=True, env=env,  # noqa: SIM115
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=60)
        finally:
            self.process = None
        return code

    def notifications(self) -> list[str]:
        found = []
        while True:
            try:
                found += self.notify.recv(4096).decode().split("\n")
            except (TimeoutError, BlockingIOError, OSError):
                return found

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.node.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def applied(self) -> str | None:
        return self.status().get("appliedRevision")

    def wait_applied(self, revision: str, timeout: float) -> float:
        started = time.monotonic()
        assert wait_until(lambda: self.applied() == revision, timeout=timeout, interval=0.02), (
            f"{revision} not applied within {timeout} s; status: {self.status()}\n{self.log.read_text()[-3000:]}"
        )
        return time.monotonic() - started

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "git")


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream("a"), Upstream("b")
    with serving(a, b):
        yield a, b


def app_route(dial: str, **spec: Any) -> str:
    return dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}], **spec))


@pytest.fixture
def agent_factory(node: NodeUnderTest, tmp_path: Path) -> Iterator[Any]:
    agents: list[Agent] = []

    def make(**overrides: Any) -> Agent:
        root = tmp_path / f"agent{len(agents)}"
        root.mkdir()
        agent = Agent(node, root, **overrides)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop(signal.SIGKILL)
        agent.notify.close()
        os.unlink(agent.notify_path)
