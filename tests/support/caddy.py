"""A real Caddy (Debian's 2.6.2) on loopback high ports with a temporary data dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, merge, render_caddy
from hecate_agent.spec.loader import DesiredState
from hecate_agent.targets.caddy_admin import CaddyAdmin, detect_capabilities
from tests.support.servers import free_port, wait_until

CADDY = shutil.which("caddy") or "/usr/bin/caddy"
_CAPABILITIES: CaddyCapabilities | None = None


def caddy_capabilities() -> CaddyCapabilities:
    global _CAPABILITIES  # noqa: PLW0603 - computed once per test session
    if _CAPABILITIES is None:
        _CAPABILITIES = detect_capabilities(CADDY)
    return _CAPABILITIES


class CaddyInstance:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.admin_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.settings = CaddySettings(
            server="hecate",
            http_listen=(f"127.0.0.1:{self.http_port}",),
            https_listen=(f"127.0.0.1:{self.https_port}",),
        )
        self.boot = root / "boot.json"
        self.boot.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{self.admin_port}"}}))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "caddy.log"

    @property
    def root_certificate(self) -> Path:
        return self.root / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def start(self) -> None:
        env = dict(os.environ, XDG_CONFIG_HOME=str(self.root / "config"), XDG_DATA_HOME=str(self.root / "data"),
                   HOME=str(self.root))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([CADDY, "run", "--config", str(self.boot)], stdout=log,
                                            stderr=subprocess.STDOUT, env=env)
        admin = self.admin()
        try:
            if not wait_until(lambda: _answers(admin), timeout=15):
                raise RuntimeError(f"caddy did not start: {self.log.read_text()[-2000:]}")
        finally:
            admin.close()

    def admin(self) -> CaddyAdmin:
        return CaddyAdmin(self.admin_url)

    def apply(self, state: DesiredState, environment: dict[str, str] | None = None,
              capabilities: CaddyCapabilities | None = None) -> dict[str, Any]:
        owned = render_caddy(state, self.settings, capabilities or caddy_capabilities(), environment or {})
        with self.admin() as admin:
            live = admin.get_config()
            merged = merge(live.config, owned, self.settings)
            admin.replace(merged, live.etag)
        return merged

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def with_settings(self, **changes: Any) -> None:
        self.settings = replace(self.settings, **changes)


def _answers(admin: CaddyAdmin) -> bool:
    try:
        admin.get_config()
    except Exception:
        return False
    return True
