"""SIGKILL of `hecate-agent run` after both proxies changed and before verification (issue 12).

The agent is stopped exactly there with the test-only hook `HECATE_TEST_PAUSE_AT=applied`
(engine/transaction.py: the apply writes the journal step, then sleeps). At the next start the
revision is verified again and recorded, or rolled back; the last-known-good never names a
revision that was not verified.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import PLAIN, Remote, app_route
from tests.e2e.test_daemon import git_source, upstream_of
from tests.helpers import dump_yaml, route, stream
from tests.support.servers import TcpEcho, free_port, serving, tcp_exchange, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def echo_stream(port: int, echo: TcpEcho) -> str:
    return dump_yaml(stream("echo", port=None, listen={"address": "127.0.0.1", "port": port},
                            upstreams=[{"server": f"127.0.0.1:{echo.port}"}]))


def lkg_revision(state_dir: Path) -> str:
    return str(json.loads((state_dir / "last-applied.json").read_text())["revision"])


def history(state_dir: Path) -> list[dict]:
    return list(json.loads((state_dir / "history.json").read_text()))


def kill_after_apply_before_verify(node, remote: Remote, agent_factory, echo: TcpEcho, a_dial: str,
                                   second_route: str, new_port: int):  # type: ignore[no-untyped-def]
    """Sync a first revision, then push a second that changes Caddy and Nginx and SIGKILL the agent
    right after both changed and before verification. Returns (agent, first, second)."""
    old_port = free_port()
    first = remote.commit({"specs/routes/app.yaml": app_route(a_dial),
                           "specs/streams/echo.yaml": echo_stream(old_port, echo)}, "first")
    remote.push()
    agent = agent_factory(source=git_source(remote))
    agent.start()
    agent.wait_applied(first, timeout=20)
    assert agent.stop(signal.SIGTERM) == 0
    agent.extra_env = {"HECATE_TEST_PAUSE_AT": "applied"}
    agent.start()  # the same revision again: a no-op, no transaction, no pause
    second = remote.commit({"specs/routes/app.yaml": second_route,
                            "specs/streams/echo.yaml": echo_stream(new_port, echo)}, "second")
    remote.push()
    marker = node.state_dir / "test-paused-at"
    assert wait_until(marker.exists, timeout=30), (agent.log.read_text()[-3000:])
    agent.stop(signal.SIGKILL)
    journal = json.loads((node.state_dir / "journal.json").read_text())
    assert journal["step"] == "applied" and journal["revision"] == second
    assert lkg_revision(node.state_dir) == first  # not recorded before verification
    assert tcp_exchange(new_port) == b"echo:ping"  # Nginx runs the new revision already
    marker.unlink()
    agent.extra_env = {}
    return agent, first, second, old_port


def test_sigkill_before_verification_then_the_next_start_verifies_and_records(node, remote, upstreams,
                                                                               agent_factory) -> None:
    a, b = upstreams
    echo = TcpEcho("echo")
    with serving(echo):
        new_port = free_port()
        agent, _first, second, _ = kill_after_apply_before_verify(
            node, remote, agent_factory, echo, a.dial, app_route(b.dial), new_port)
        assert upstream_of(node) == "b"  # Caddy too
        agent.start()
        agent.wait_applied(second, timeout=30)
        assert lkg_revision(node.state_dir) == second
        assert not (node.state_dir / "journal.json").exists()
        recovered = [e for e in history(node.state_dir) if e["source"] == "recovery"]
        assert recovered and recovered[-1]["outcome"] == "recovered" and "(verified)" in recovered[-1]["detail"]
        assert upstream_of(node) == "b" and tcp_exchange(new_port) == b"echo:ping"


def test_sigkill_before_verification_of_a_failing_revision_rolls_back_at_the_next_start(
        node, remote, upstreams, agent_factory) -> None:
    a, _ = upstreams
    dead = route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": "127.0.0.1:9"}])
    dead["metadata"]["labels"] = {"hecate.io/verify": "true"}
    echo = TcpEcho("echo")
    with serving(echo):
        agent, first, second, old_port = kill_after_apply_before_verify(
            node, remote, agent_factory, echo, a.dial, dump_yaml(dead), free_port())
        assert upstream_of(node) is None  # Caddy runs the broken revision: 502
        agent.start()
        assert wait_until(lambda: any(e["source"] == "recovery" for e in history(node.state_dir)), timeout=30)
        recovery = [e for e in history(node.state_dir) if e["source"] == "recovery"][-1]
        assert recovery["outcome"] == "rolled_back" and recovery["revision"] == second
        assert "verification failed: Route/app:" in recovery["error"] and "answered 502" in recovery["error"]
        # The agent then tries the revision once more, fails its verification again, and blocks it.
        assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("outcome") == "rolled_back",
                          timeout=40), agent.status()
        assert lkg_revision(node.state_dir) == first
        assert not any(second[:40] in p.name for p in (node.state_dir / "snapshots").iterdir())
        assert upstream_of(node) == "a" and tcp_exchange(old_port) == b"echo:ping"
        assert agent.status()["appliedRevision"] == first and agent.status()["phase"] == "Degraded"
