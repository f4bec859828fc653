"""The rollout semaphore and halts, through the real py-consul client against the Consul test server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from hecate_agent.runtime.rollout import RolloutCoordinator, RolloutHaltedError, resume
from hecate_agent.store.consul_status import ConsulPublisher
from tests.support.consul_server import FakeConsul

pytestmark = pytest.mark.integration
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def consul_server() -> Iterator[FakeConsul]:
    server = FakeConsul()
    yield server
    server.close()


def coordinator(server: FakeConsul, node: str, limit: int = 1, wait: float = 5.0) -> RolloutCoordinator:
    publisher = ConsulPublisher(f"http://127.0.0.1:{server.port}", node, session_ttl=10)
    return RolloutCoordinator(publisher, max_concurrent=limit, soak=0, wait_timeout=wait, stopping=threading.Event())


def test_the_limit_holds_and_a_released_slot_goes_to_a_waiting_node(consul_server) -> None:
    a, b = coordinator(consul_server, "a"), coordinator(consul_server, "b", wait=0.5)
    assert a.acquire(REV)
    assert not b.acquire(REV)  # timed out: a holds the only slot
    b.wait_timeout = 10
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(b.acquire(REV)))
    waiter.start()
    a.release(REV)
    waiter.join(timeout=10)
    assert taken == [True]


def test_a_crashed_holders_slot_comes_free_when_its_session_goes(consul_server) -> None:
    a, b = coordinator(consul_server, "a"), coordinator(consul_server, "b", wait=10)
    assert a.acquire(REV)
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(b.acquire(REV)))
    waiter.start()
    with consul_server.state.lock:
        consul_server.state.invalidate(a.session or "")  # what a TTL expiry does to a dead node's session
        consul_server.state.tick()
    waiter.join(timeout=10)
    assert taken == [True]  # the blocking query woke up; no polling interval to wait out


def test_a_halt_is_refused_by_name_until_resumed(consul_server) -> None:
    a, b = coordinator(consul_server, "edge-3"), coordinator(consul_server, "edge-4")
    a.halt(REV, "rolled_back: nginx -t failed")
    a.halt(REV, "a second failure does not rename the culprit")
    with pytest.raises(RolloutHaltedError) as caught:
        b.acquire(REV)
    assert str(caught.value).startswith(f"halted by node edge-3: revision {REV} failed there (rolled_back: nginx")
    assert f"hecate-agent rollout resume {REV}" in str(caught.value)
    assert b.acquire("a-newer-revision")  # halts are per revision
    b.release("a-newer-revision")
    assert resume(b.client, "hecate", REV) and not resume(b.client, "hecate", REV)
    assert b.acquire(REV)


def test_many_contenders_never_exceed_the_limit(consul_server) -> None:
    coordinators = [coordinator(consul_server, f"n{i}", limit=2, wait=20) for i in range(6)]
    inside: list[int] = []
    count = 0
    lock = threading.Lock()

    def run(c: RolloutCoordinator) -> None:
        nonlocal count
        assert c.acquire(REV)
        with lock:
            count += 1
            inside.append(count)
        threading.Event().wait(0.2)
        with lock:
            count -= 1
        c.release(REV)

    threads = [threading.Thread(target=run, args=(c,)) for c in coordinators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(inside) == 6 and max(inside) == 2
    # Every slot was given back: nothing is left behind in Consul for the revision.
    assert [k for k in consul_server.state.kv if "/rollout/" in k] == []
    limits = {key: json.loads(body)["limit"] for _, key, body in consul_server.state.writes if "/rollout/" in key}
    assert len(limits) == 6 and set(limits.values()) == {2}  # one contender key per node, naming the limit


def test_the_strictest_queued_limit_binds(consul_server) -> None:
    strict, loose = coordinator(consul_server, "strict", limit=1), coordinator(consul_server, "loose", limit=3, wait=0.5)
    assert strict.acquire(REV)
    assert not loose.acquire(REV)  # its own limit would let it in; the one ahead of it says 1


def test_a_slot_freed_out_of_order_goes_to_the_next_node_at_once(consul_server) -> None:
    """A waiting node watches the front of the queue; when another holder finishes first, it is woken
    by that holder rather than left waiting for the front (or for its blocking read to run out)."""
    front, second = coordinator(consul_server, "edge-1", limit=2), coordinator(consul_server, "edge-2", limit=2)
    waiting = coordinator(consul_server, "edge-3", limit=2, wait=60)
    assert front.acquire(REV) and second.acquire(REV)
    taken: list[bool] = []
    waiter = threading.Thread(target=lambda: taken.append(waiting.acquire(REV)))
    waiter.start()
    assert consul_server.wait_blocked(1)
    second.release(REV)  # out of order: the front still holds its slot
    waiter.join(timeout=20)  # its blocking read would run for 30 s
    assert taken == [True]
    front.release(REV)
    waiting.release(REV)
    assert [k for k in consul_server.state.kv if "/rollout/" in k] == []


def test_a_halt_written_while_a_node_sits_in_a_blocked_query_holds(consul_server) -> None:
    """The race of issue 13: the slot comes free and the halt is written while the waiting node is
    inside its blocking read; when the read answers, the node must not take the revision."""
    a, b = coordinator(consul_server, "edge-1"), coordinator(consul_server, "edge-2", wait=30)
    assert a.acquire(REV)
    outcome: list[object] = []

    def wait_for_slot() -> None:
        try:
            outcome.append(b.acquire(REV))
        except RolloutHaltedError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_slot)
    consul_server.freeze()
    waiter.start()
    assert consul_server.wait_blocked(1)  # b is queued behind a, inside its blocking read
    a.release(REV)  # the slot is free ...
    a.halt(REV, "rolled_back: verification failed")  # ... and the halt is written, both before b hears
    consul_server.thaw()
    waiter.join(timeout=20)
    assert len(outcome) == 1 and isinstance(outcome[0], RolloutHaltedError), outcome
    assert "halted by node edge-1" in str(outcome[0])
    assert [k for k in consul_server.state.kv if "/rollout/" in k] == []  # b left the queue


def test_a_halt_wakes_the_queued_nodes(consul_server) -> None:
    """A node queued behind a holder that halts is woken by the halt, not left waiting for a slot."""
    holder = coordinator(consul_server, "edge-1")
    waiters = [coordinator(consul_server, f"edge-{i}", wait=60) for i in range(2, 8)]
    assert holder.acquire(REV)
    outcome: list[object] = []

    def wait_for_slot(c: RolloutCoordinator) -> None:
        try:
            outcome.append(c.acquire(REV))
        except RolloutHaltedError as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=wait_for_slot, args=(c,)) for c in waiters]
    for t in threads:
        t.start()
    assert consul_server.wait_blocked(6)
    holder.halt(REV, "blocked: nginx -t failed")  # the holder keeps its slot: it has not released yet
    for t in threads:
        t.join(timeout=20)  # their blocking reads would run for 30 s
    assert len(outcome) == 6 and all(isinstance(o, RolloutHaltedError) for o in outcome), outcome


def test_a_halted_node_waits_on_the_halt_key_instead_of_queueing(consul_server) -> None:
    lifted = threading.Event()
    a = coordinator(consul_server, "edge-1")
    b = coordinator(consul_server, "edge-2")
    b.on_resume = lifted.set
    a.halt(REV, "rolled_back: verification failed")
    with pytest.raises(RolloutHaltedError):
        b.acquire(REV)
    assert consul_server.wait_blocked(1)  # the halt watch
    before = consul_server.state.requests
    for _ in range(20):  # twenty syncs of a halted node
        with pytest.raises(RolloutHaltedError):
            b.acquire(REV)
    assert consul_server.state.requests == before  # no request: no slot competition, no halt poll
    assert resume(a.client, "hecate", REV)
    assert lifted.wait(10)  # woken by the halt watch, not by a poll
    assert b.acquire(REV)


def test_a_rollout_costs_a_bounded_number_of_requests_per_node(consul_server) -> None:
    """Waiting nodes watch one key each: the requests per node do not grow with the fleet."""
    nodes, limit = 50, 5  # the fleet of issue 13
    coordinators = [coordinator(consul_server, f"n{i:02}", limit=limit, wait=60) for i in range(nodes)]
    for c in coordinators:
        c.session = c.publisher.ensure_session()  # sessions are the status publisher's cost, not the rollout's
    before = consul_server.state.requests
    inside: list[int] = []
    count = 0
    lock = threading.Lock()

    def run(c: RolloutCoordinator) -> None:
        nonlocal count
        assert c.acquire(REV)
        with lock:
            count += 1
            inside.append(count)
        threading.Event().wait(0.05)
        with lock:
            count -= 1
        c.release(REV)

    threads = [threading.Thread(target=run, args=(c,)) for c in coordinators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(inside) == nodes and max(inside) <= limit
    per_node = (consul_server.state.requests - before) / nodes
    # put + halt read + queue read + (gate wait + queue read) per wake + halt read on winning + delete;
    # out-of-order finishes cost a few extra wakes. The old semaphore cost ~2 per node per change.
    assert per_node <= 12, (per_node, consul_server.state.paths)


def test_rollout_resume_from_the_command_line(consul_server, tmp_path) -> None:
    import subprocess
    import sys

    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"node": {"name": "ops"}, "stateDir": str(tmp_path / "state"),
                                  "consul": {"address": f"http://127.0.0.1:{consul_server.port}"}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hecate_agent", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    coordinator(consul_server, "edge-1").halt(REV, "blocked: verification failed")
    lifted = cli("rollout", "resume", REV)
    assert lifted.returncode == 0 and f"Lifted the halt on {REV}" in lifted.stdout
    again = cli("rollout", "resume", REV)
    assert again.returncode == 0 and "was not halted" in again.stdout
    consul_server.down = True
    down = cli("rollout", "resume", REV)
    assert down.returncode == 1 and "cannot reach Consul (ConnectionError)" in down.stderr


def test_rollout_resume_and_wait_for_take_the_short_revision_the_fleet_table_shows(consul_server, tmp_path) -> None:
    """Issue 13 #4 and #5: `rollout resume <12 chars>` said "was not halted" and exited 0 while the revision
    was halted; `--wait-for` right after the resume failed on the nodes' stale "halted" status."""
    import subprocess
    import sys

    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"node": {"name": "ops"}, "stateDir": str(tmp_path / "state"),
                                  "consul": {"address": f"http://127.0.0.1:{consul_server.port}"}}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hecate_agent", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    edge = coordinator(consul_server, "edge-1")
    edge.halt(REV, "blocked: verification failed")
    edge.publisher.publish({"node": "edge-1", "phase": "Halted", "appliedRevision": "fedcba9876543210",
                            "desiredRevision": REV, "lastAttempt": {"revision": REV, "outcome": "halted"}})
    failed = cli("status", "--fleet", "--wait-for", REV[:12], "--timeout", "5s")
    assert failed.returncode == 1 and f"{REV} failed on: edge-1 (halted)" in failed.stderr
    assert cli("rollout", "resume", "012").returncode == 1  # too short
    coordinator(consul_server, "edge-2").halt("01234567ffff", "rolled_back: nginx -t failed")
    ambiguous = cli("rollout", "resume", "01234567")
    assert ambiguous.returncode == 1 and "ambiguous" in ambiguous.stderr and "01234567ffff" in ambiguous.stderr
    lifted = cli("rollout", "resume", REV[:12])
    assert lifted.returncode == 0 and f"Lifted the halt on {REV}" in lifted.stdout, lifted.stdout + lifted.stderr
    # Right after the resume the node still says "halted": that is waited for, not a failure.
    waiting = cli("status", "--fleet", "--wait-for", REV[:12], "--timeout", "2s")
    assert waiting.returncode == 1 and "not there yet: edge-1" in waiting.stderr, waiting.stderr
    edge.publisher.publish({"node": "edge-1", "phase": "Synced", "appliedRevision": REV, "desiredRevision": REV,
                            "lastAttempt": {"revision": REV, "outcome": "applied"}})
    done = cli("status", "--fleet", "--wait-for", REV[:12], "--timeout", "5s")
    assert done.returncode == 0 and f"applied {REV}" in done.stdout
