"""Leader election through the real py-consul client against the Consul test server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hecate_agent.runtime.leader import LeaderElection
from hecate_agent.store.consul_status import ConsulPublisher
from tests.support.consul_server import FakeConsul

pytestmark = pytest.mark.integration


@pytest.fixture
def consul_server() -> Iterator[FakeConsul]:
    server = FakeConsul()
    yield server
    server.close()


def election(server: FakeConsul, node: str) -> LeaderElection:
    publisher = ConsulPublisher(f"http://127.0.0.1:{server.port}", node, session_ttl=10)
    return LeaderElection(publisher, "dns")


def test_only_one_contender_leads_and_release_hands_over(consul_server) -> None:
    a, b = election(consul_server, "edge-1"), election(consul_server, "edge-2")
    assert a.try_acquire() and not b.try_acquire()
    assert a.is_leader() and not b.is_leader()
    assert a.leader() == b.leader() == "edge-1"
    assert "hecate/leaders/dns" in consul_server.state.kv
    a.release()  # on shutdown
    assert not a.is_leader() and b.leader() is None
    assert b.try_acquire() and b.is_leader() and not a.try_acquire()


@pytest.mark.parametrize("death", ["invalidated", "ttl-expired"])
def test_the_other_takes_over_when_the_holders_session_dies(consul_server, death: str) -> None:
    a, b = election(consul_server, "edge-1"), election(consul_server, "edge-2")
    assert a.try_acquire()
    took: list[bool] = []
    waiter = threading.Thread(target=lambda: took.append(b.wait(timeout=30)))
    waiter.start()
    assert consul_server.wait_blocked(1)  # b waits in a blocking read, not a poll loop
    assert took == [] and not b.is_leader()
    with consul_server.state.lock:
        if death == "invalidated":
            consul_server.state.invalidate(a.session or "")
        else:  # the holder stopped renewing: the server's reaper expires the session
            consul_server.state.sessions[a.session or ""]["expires"] = time.monotonic() - 1
    waiter.join(timeout=20)
    assert took == [True]
    assert b.is_leader() and not a.is_leader() and a.leader() == "edge-2"


def test_wait_gives_up_after_its_time(consul_server) -> None:
    a, b = election(consul_server, "edge-1"), election(consul_server, "edge-2")
    assert a.try_acquire()
    assert not b.wait(timeout=1)
    assert a.is_leader()


def test_without_consul_a_static_setting_decides() -> None:
    assert LeaderElection(None, "dns", static_leader=True).is_leader()
    assert LeaderElection(None, "dns", static_leader=True).wait(timeout=0)
    follower = LeaderElection(None, "dns")
    assert not follower.is_leader() and not follower.try_acquire() and follower.leader() is None
    follower.release()  # nothing to give back


def test_an_unreachable_consul_means_not_the_leader(consul_server) -> None:
    a = election(consul_server, "edge-1")
    assert a.try_acquire()
    consul_server.down = True
    assert not a.is_leader()  # cannot confirm: never act as if leading


def test_a_free_lead_this_node_cannot_take_is_retried_calmly(consul_server) -> None:
    """Its session gone (expired while Consul was away): the lock is free but refused to it. The wait
    retries about once a second instead of spinning on Consul."""
    b = election(consul_server, "edge-2")
    b.session = b.publisher.ensure_session()
    with consul_server.state.lock:
        consul_server.state.invalidate(b.session)
    before = consul_server.state.requests
    assert not b.wait(timeout=2)
    assert consul_server.state.requests - before <= 8
