"""Daemon building blocks without a daemon: sd_notify, log redaction, webhook signatures."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

from hecate_agent.logs import configure, get_logger
from hecate_agent.runtime.sdnotify import Notifier


def test_sd_notify_path_and_abstract_sockets(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "8000000"})
    assert notifier.watchdog_seconds == 8.0
    assert notifier.ready("applied abc")
    assert receiver.recv(1024) == b"READY=1\nSTATUS=applied abc"
    assert notifier.watchdog() and receiver.recv(1024) == b"WATCHDOG=1"
    receiver.close()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0hecate-test-{id(abstract)}")
    assert Notifier({"NOTIFY_SOCKET": f"@hecate-test-{id(abstract)}"}).stopping()
    assert abstract.recv(1024) == b"STOPPING=1"
    abstract.close()
    assert not Notifier({}).ready("x")  # not under systemd: a no-op


def test_watchdog_for_another_pid_is_ignored() -> None:
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None


def test_logs_are_json_with_priority_and_secrets_redacted() -> None:
    stream = io.StringIO()
    configure("info", stream, console=False)
    log = get_logger("test")
    log.error("fetch failed", vault_token="hvs.AAAAAAAAAAAAAAAAAAAAAAAAAAAA", detail="token hvs.BBBBBBBBBBBBBBBBBBBBBBBBBB used",
              nested={"password": "p", "ok": 1})
    try:
        raise ValueError("boom")
    except ValueError:
        secret_local = "hvs.CCCCCCCCCCCCCCCCCCCCCCCCCC"  # noqa: F841 - must not appear in the traceback
        log.exception("crashed")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("<3>{")
    first = json.loads(lines[0][3:])
    assert first["vault_token"] == "<redacted>" and "hvs." not in first["detail"]
    assert first["nested"] == {"password": "<redacted>", "ok": 1}
    assert "CCCC" not in stream.getvalue()
    assert json.loads(lines[1][3:])["exception"][0]["exc_type"] == "ValueError"


def test_a_full_notify_socket_never_blocks(tmp_path: Path) -> None:
    import time

    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))  # never read: its queue fills up
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    started = time.monotonic()
    results = [notifier.watchdog() for _ in range(5000)]
    assert time.monotonic() - started < 5
    assert results[0] and not results[-1]  # dropped once full, instead of hanging
    receiver.close()
