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
    # Every slot was given back, and the last holder removed the semaphore: nothing left behind.
    assert [k for k in consul_server.state.kv if "/rollout/" in k] == []
    limits = [json.loads(body)["Limit"] for _, key, body in consul_server.state.writes if key.endswith(".lock")]
    assert limits and set(limits) == {2}


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
