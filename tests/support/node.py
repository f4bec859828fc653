"""A whole node for end-to-end tests: real Caddy + real Nginx + an agent.yaml pointing at them."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hecate_agent.engine.transaction import Node
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.settings import load_settings
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.nginx import NginxInstance


class _Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


P = TypeVar("P", bound=_Startable)


@contextlib.contextmanager
def running(instance: P) -> Iterator[P]:
    """A started Caddy or Nginx, stopped on the way out whatever happens."""
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@contextlib.contextmanager
def running_proxies(root: Path) -> Iterator[tuple[CaddyInstance, NginxInstance]]:
    """A real Caddy and Nginx under `root` (loopback high ports), both stopped afterwards."""
    with running(CaddyInstance(root / "caddy")) as caddy, running(NginxInstance(root / "nginx")) as nginx:
        yield caddy, nginx


class NodeUnderTest:
    def __init__(self, root: Path, caddy: CaddyInstance, nginx: NginxInstance) -> None:
        self.root = root
        self.caddy = caddy
        self.nginx = nginx
        root.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.config = root / "agent.yaml"
        ns = nginx.settings
        settings: dict[str, Any] = {
            "node": {"name": "test-node"},
            "caddy": {
                "adminUrl": caddy.admin_url,
                "server": "hecate",
                "httpListen": list(caddy.settings.http_listen),
                "httpsListen": list(caddy.settings.https_listen),
            },
            "nginx": {
                "streamDir": str(ns.stream_dir),
                "testCommand": list(ns.test_command),
                "reloadCommand": list(ns.reload_command),
                "dumpCommand": list(ns.dump_command),
                "pidFile": str(ns.pid_file),
                "errorLog": str(ns.error_log),
            },
            "stateDir": str(self.state_dir),
        }
        self.config.write_text(json.dumps(settings, indent=2))  # JSON is YAML

    def configure(self, **changes: Any) -> None:
        """Add or replace top-level keys of agent.yaml (e.g. vault=..., consul=...)."""
        settings = json.loads(self.config.read_text())
        settings.update(changes)
        self.config.write_text(json.dumps(settings, indent=2))

    def node(self, capabilities: CaddyCapabilities | None = None, environment: dict[str, str] | None = None) -> Node:
        return Node.from_settings(
            load_settings(self.config, environ={}),
            environment=environment or {},
            capabilities=capabilities or caddy_capabilities(),
        )

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hecate_agent", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", **(env or {})},
            check=False,
        )
