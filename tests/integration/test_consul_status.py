"""Status in Consul through the real py-consul client, against the protocol-level test server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from hecate_agent.store.consul_status import ConsulPublisher
from tests.support.consul_server import FakeConsul

pytestmark = pytest.mark.integration


@pytest.fixture
def consul_server() -> Iterator[FakeConsul]:
    server = FakeConsul()
    yield server
    server.close()


def status(node: str, revision: str = "abc", phase: str = "Synced") -> dict:
    return {"node": node, "phase": phase, "appliedRevision": revision, "desiredRevision": revision}


def test_status_is_published_under_a_session_and_disappears_with_it(consul_server: FakeConsul) -> None:
    publisher = ConsulPublisher(f"http://127.0.0.1:{consul_server.port}", "edge-1", session_ttl=10)
    assert publisher.publish(status("edge-1"))
    entry = consul_server.state.kv["hecate/nodes/edge-1/status"]
    assert json.loads(__import__("base64").b64decode(entry["Value"]))["phase"] == "Synced"
    assert entry["Session"] == publisher.session
    assert publisher.heartbeat()
    assert consul_server.state.checks["service:hecate-agent-edge-1"]["Status"] == "passing"
    assert [s["node"] for s in publisher.fleet()] == ["edge-1"]
    # The agent dies: no more renewals; the session expires and takes the entry with it.
    consul_server.state.sessions[publisher.session]["expires"] = time.monotonic() - 1
    assert publisher.fleet() == []


def test_consul_down_keeps_only_the_latest_status_and_catches_up(consul_server: FakeConsul) -> None:
    publisher = ConsulPublisher(f"http://127.0.0.1:{consul_server.port}", "edge-2", timeout=1)
    consul_server.down = True
    assert not publisher.publish(status("edge-2", "r1"))
    assert not publisher.publish(status("edge-2", "r2"))
    assert not publisher.heartbeat()
    assert publisher.failures == 3 and publisher.pending["appliedRevision"] == "r2"
    consul_server.down = False
    assert publisher.heartbeat()
    assert publisher.pending is None
    assert [s["appliedRevision"] for s in publisher.fleet()] == ["r2"]


def test_env_token_does_not_override_the_token_file(consul_server: FakeConsul, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    token = tmp_path / "token"
    token.write_text("from-file\n")
    publisher = ConsulPublisher(f"http://127.0.0.1:{consul_server.port}", "edge-3", token_file=token)
    assert publisher.client.token == "from-file"


def _fleet_cli(consul_server: FakeConsul, tmp_path, *args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"node": {"name": "ci"}, "consul": {"address": f"http://127.0.0.1:{consul_server.port}"},
                                  "stateDir": str(tmp_path / "state")}))
    return subprocess.run([sys.executable, "-m", "hecate_agent", "--config", str(config), "status", "--fleet", *args],
                          capture_output=True, text=True, check=False, timeout=60)


def test_fleet_table_and_wait_for(consul_server: FakeConsul, tmp_path) -> None:
    address = f"http://127.0.0.1:{consul_server.port}"
    a = ConsulPublisher(address, "edge-a")
    b = ConsulPublisher(address, "edge-b")
    a.publish({**status("edge-a", "new123"), "updatedAt": "2026-01-01T00:00:00Z",
               "lastAttempt": {"revision": "new123", "outcome": "applied", "at": "2026-01-01T00:00:00Z"}})
    b.publish({**status("edge-b", "old456"), "desiredRevision": "new123"})
    table = _fleet_cli(consul_server, tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "PHASE", "APPLIED", "DESIRED", "LAST", "APPLY", "AGE", "ERROR"]
    assert lines[1].startswith("edge-a") and "new123" in lines[1] and lines[2].startswith("edge-b")
    waiting = _fleet_cli(consul_server, tmp_path, "--wait-for", "new123", "--timeout", "2s")
    assert waiting.returncode == 1 and "not there yet: edge-b" in waiting.stderr
    b.publish({**status("edge-b", "new123")})
    assert _fleet_cli(consul_server, tmp_path, "--wait-for", "new123", "--timeout", "5s").returncode == 0
    b.publish({**status("edge-b", "new123"), "lastAttempt": {"revision": "bad789", "outcome": "rolled_back"}})
    failed = _fleet_cli(consul_server, tmp_path, "--wait-for", "bad789", "--timeout", "5s")
    assert failed.returncode == 1 and "bad789 failed on: edge-b (rolled_back)" in failed.stderr


def test_an_idle_node_writes_its_status_on_change_only(consul_server: FakeConsul) -> None:
    """Issue 13: every no-change poll rewrote the status (a Raft write each in real Consul)."""
    publisher = ConsulPublisher(f"http://127.0.0.1:{consul_server.port}", "edge-9", session_ttl=30)
    attempt = {"revision": "abc", "outcome": "halted", "error": "halted by node edge-1"}
    for second in range(10):  # ten polls and heartbeats that change nothing but timestamps
        current = {**status("edge-9"), "updatedAt": f"2026-01-01T00:00:{second:02}Z",
                   "lastAttempt": {**attempt, "at": f"2026-01-01T00:00:{second:02}Z"}}
        assert publisher.publish(current)
        assert publisher.heartbeat(current)
    paths = consul_server.state.paths
    assert paths.get("kv PUT") == 1  # one write, at the start
    assert paths.get("session/renew") == 10  # liveness: the session ...
    assert paths.get("agent/check") == 1  # ... and the TTL check, passed once per session TTL
    assert publisher.publish({**status("edge-9", "def"), "updatedAt": "2026-01-01T00:01:00Z"})
    assert paths.get("kv PUT") == 2  # a real change is written at once
    # The session expires behind the node's back: the status went with it and is written again.
    consul_server.state.sessions[publisher.session or ""]["expires"] = time.monotonic() - 1
    assert publisher.heartbeat()
    assert [s["appliedRevision"] for s in publisher.fleet()] == ["def"]
