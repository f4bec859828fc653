"""A fleet: five agents, each with its own Caddy and Nginx, one Consul, `rollout.maxConcurrent: 2`."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PLAIN, Agent, Remote
from tests.helpers import dump_yaml, route
from tests.support.caddy import CaddyInstance
from tests.support.consul_server import FakeConsul
from tests.support.fleet import halt_written_at, max_holders, published, taken_after
from tests.support.http import Upstream, http_get
from tests.support.nginx import NginxInstance
from tests.support.node import NodeUnderTest
from tests.support.servers import serving, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODES = 5


def app(dial: str, *, verify: bool = False) -> str:
    doc = route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}])
    if verify:
        doc["metadata"]["labels"] = {"hecate.io/verify": "true"}
    return dump_yaml(doc)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[list[Agent], FakeConsul, Remote]]:
    consul_server = FakeConsul()
    remote = Remote(tmp_path / "git")
    started: list[Any] = []
    agents: list[Agent] = []
    try:
        for i in range(NODES):
            caddy, nginx = CaddyInstance(tmp_path / f"caddy{i}"), NginxInstance(tmp_path / f"nginx{i}")
            caddy.start()
            started.append(caddy)
            nginx.start()
            started.append(nginx)
            node = NodeUnderTest(tmp_path / f"node{i}", caddy, nginx)
            node.configure(node={"name": f"edge-{i}"})
            root = tmp_path / f"agent{i}"
            root.mkdir()
            agents.append(Agent(
                node, root,
                source={"git": {"url": str(remote.bare), "branch": "main", "path": "specs", "interval": "1s"}},
                consul={"address": f"http://127.0.0.1:{consul_server.port}", "sessionTtl": "10s"},
                rollout={"maxConcurrent": 2, "soak": "1s"},
            ))
        yield agents, consul_server, remote
    finally:
        for agent in agents:
            agent.stop(signal.SIGKILL)
            agent.notify.close()
        for instance in reversed(started):
            instance.stop()
        consul_server.close()


def logs(agents: list[Agent]) -> dict[str, Path]:
    return {f"edge-{i}": agent.log for i, agent in enumerate(agents)}


def fleet_cli(agent: Agent, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hecate_agent", "--config", str(agent.config), *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"})


def test_a_fleet_rolls_out_two_at_a_time_halts_a_bad_revision_and_takes_the_fix(fleet) -> None:
    agents, consul_server, remote = fleet
    good, other = Upstream("good"), Upstream("other")
    with serving(good, other):
        first = remote.commit({"specs/routes/app.yaml": app(good.dial)}, "first")
        remote.push()
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.wait_applied(first, timeout=90)
        # Never more than two between "slot taken" and "slot released" (apply, verification, soak).
        assert max_holders(logs(agents), first) == 2
        assert all(http_get(a.node.caddy.http_port, "app.example.com").json()["upstream"] == "good" for a in agents)

        waited = fleet_cli(agents[0], "status", "--fleet", "--wait-for", first, "--timeout", "30s")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert f"All {NODES} node(s) applied {first}." in waited.stdout

        # Idle (polls every second, drift checks every two): the status is not rewritten to Consul after
        # every poll, only on the last real changes (the first stream probe's result, applied -> noop).
        assert wait_until(lambda: all(s.get("phase") == "Synced" for s in published(consul_server).values()),
                          timeout=20)
        with consul_server.state.lock:
            writes = len(consul_server.state.writes)
        threading.Event().wait(6)
        with consul_server.state.lock:
            keys = [key for _, key, _ in consul_server.state.writes[writes:]]
        assert all(keys.count(k) <= 2 for k in keys), keys  # was: one per poll, 6 or more

        # A revision whose verification fails (its labelled route answers 502 everywhere): the first
        # nodes to try it roll back and halt it; the others refuse it by name.
        bad = remote.commit({"specs/routes/app.yaml": app("127.0.0.1:1", verify=True)}, "bad")
        remote.push()

        def settled() -> bool:
            attempts = [a.status().get("lastAttempt") or {} for a in agents]
            return all(x.get("revision") == bad and x.get("outcome") in ("halted", "blocked", "rolled_back")
                       for x in attempts)

        assert wait_until(settled, timeout=90, interval=0.2), [a.status().get("lastAttempt") for a in agents]
        statuses = {a.status()["node"]: a.status() for a in agents}
        failed = {n for n, s in statuses.items() if s["lastAttempt"]["outcome"] != "halted"}
        halted = {n: s for n, s in statuses.items() if s["lastAttempt"]["outcome"] == "halted"}
        assert 1 <= len(failed) <= 2 and len(halted) >= NODES - 2, statuses
        for status in halted.values():
            assert status["phase"] == "Halted" and status["lastAttempt"]["haltedBy"] in failed
            assert any(status["lastAttempt"]["error"].startswith(f"halted by node {n}:") for n in failed)
        assert all(s["appliedRevision"] == first for s in statuses.values())  # every node still serves `first`
        assert max_holders(logs(agents), bad) <= 2
        halted_at = halt_written_at(consul_server, bad)
        assert halted_at is not None and taken_after(logs(agents), bad, halted_at) == []  # halts hold
        assert all(http_get(a.node.caddy.http_port, "app.example.com").json()["upstream"] == "good" for a in agents)
        assert wait_until(lambda: all(published(consul_server).get(n, {}).get("phase") == "Halted" for n in halted),
                          timeout=10), published(consul_server)

        table = fleet_cli(agents[0], "status", "--fleet")
        assert any(f"Halted by {n}" in table.stdout for n in failed), table.stdout
        refused = fleet_cli(agents[0], "status", "--fleet", "--wait-for", bad, "--timeout", "5s")
        assert refused.returncode != 0
        assert f"{bad} failed on: " in refused.stderr and all(f"edge-{i}" in refused.stderr for i in range(NODES))

        # The fix goes through everywhere, two at a time again.
        fixed = remote.commit({"specs/routes/app.yaml": app(other.dial, verify=True)}, "fixed")
        remote.push()
        for agent in agents:
            agent.wait_applied(fixed, timeout=90)
        assert max_holders(logs(agents), fixed) <= 2
        assert all(http_get(a.node.caddy.http_port, "app.example.com").json()["upstream"] == "other" for a in agents)
        # applied is recorded before the reconcile's one status write: wait for that write.
        assert wait_until(lambda: all(a.status()["phase"] == "Synced" for a in agents), timeout=15), [
            (a.status()["node"], a.status()["phase"], a.status().get("lastAttempt")) for a in agents
        ]


def test_resume_then_wait_for_with_the_short_revision_takes_the_halted_revision_everywhere(fleet) -> None:
    """Issue 13 #4/#5 end to end: the nodes refuse a halted revision and wait on the halt key (not on
    every poll); `rollout resume <12 chars>` wakes them, and `--wait-for <12 chars>` right after it waits
    for them instead of failing on their stale "halted" status."""
    from hecate_agent.runtime.rollout import RolloutCoordinator
    from hecate_agent.store.consul_status import ConsulPublisher

    agents, consul_server, remote = fleet
    good, other = Upstream("good"), Upstream("other")
    with serving(good, other):
        first = remote.commit({"specs/routes/app.yaml": app(good.dial)}, "first")
        remote.push()
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.wait_applied(first, timeout=90)
        second = remote.commit({"specs/routes/app.yaml": app(other.dial)}, "second")
        operator = ConsulPublisher(f"http://127.0.0.1:{consul_server.port}", "ops")
        RolloutCoordinator(operator, max_concurrent=2, soak=0, wait_timeout=1,
                           stopping=threading.Event()).halt(second, "blocked: held by an operator")
        remote.push()
        assert wait_until(lambda: all(published(consul_server).get(f"edge-{i}", {}).get("phase") == "Halted"
                                      for i in range(NODES)), timeout=60), published(consul_server)
        short = second[:12]
        failed = fleet_cli(agents[0], "status", "--fleet", "--wait-for", short, "--timeout", "5s")
        assert failed.returncode == 1 and f"{second} failed on: " in failed.stderr
        lifted = fleet_cli(agents[0], "rollout", "resume", short)
        assert lifted.returncode == 0 and f"Lifted the halt on {second}" in lifted.stdout, lifted.stderr
        waited = fleet_cli(agents[0], "status", "--fleet", "--wait-for", short, "--timeout", "60s")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert f"All {NODES} node(s) applied {second}." in waited.stdout
        assert all(http_get(a.node.caddy.http_port, "app.example.com").json()["upstream"] == "other" for a in agents)
