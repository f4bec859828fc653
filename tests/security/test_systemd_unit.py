"""The shipped unit file: valid for systemd, notify-type with a watchdog, and well sandboxed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "hecate-agent.service"


def test_unit_declares_notify_watchdog_and_restart() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=60s", "Restart=on-failure",
                 "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                 "SystemCallFilter=@system-service"):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_and_security() -> None:
    verify = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, check=False)
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]  # the binary is not installed here
    assert complaints == []
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                              capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for hecate-agent.service: ([0-9.]+)", security.stdout)
    assert match is not None, security.stdout[-500:]
    assert float(match.group(1)) <= 3.5
