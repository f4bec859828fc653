"""The fleet side of a node: its Consul publisher (built here, once, for the daemon and the CLI)
and the rollout gate the engine passes a new revision through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.reconcile import Result
from hecate_agent.logs import get_logger
from hecate_agent.runtime.rollout import RolloutCoordinator, RolloutError, RolloutHaltedError
from hecate_agent.settings import AgentSettings
from hecate_agent.store.consul_status import ConsulPublisher

HALTING = frozenset({Outcome.BLOCKED, Outcome.ROLLED_BACK, Outcome.FAILED})


def make_publisher(settings: AgentSettings) -> ConsulPublisher | None:
    """The node's Consul client from agent.yaml's `consul` section (None without one)."""
    if settings.consul is None:
        return None
    return ConsulPublisher(
        settings.consul.address,
        settings.node.name,
        prefix=settings.consul.prefix,
        token_file=settings.consul.token_file,
        session_ttl=settings.consul.session_ttl.seconds,
    )


def make_coordinator(
    settings: AgentSettings,
    publisher: ConsulPublisher | None,
    stopping: threading.Event,
    on_resume: Callable[[], None] | None = None,
) -> RolloutCoordinator | None:
    rollout = settings.rollout
    if rollout is None or publisher is None:
        return None
    return RolloutCoordinator(
        publisher,
        max_concurrent=rollout.max_concurrent,
        soak=rollout.soak.seconds,
        wait_timeout=rollout.wait_timeout.seconds,
        stopping=stopping,
        on_resume=on_resume,
    )


class ConsulSink:
    """The engine's StatusSink for Consul: publish, and count what did not get through."""

    def __init__(self, publisher: ConsulPublisher, failures: Counter) -> None:
        self.publisher = publisher
        self.failures = failures

    def publish(self, status: dict[str, Any]) -> bool:
        if self.publisher.publish(status):
            return True
        self.failures.inc()
        return False


class RolloutGate:
    """The engine's Admission for a coordinated fleet: a slot per new revision, a halt when it fails
    here, a soak before the slot goes back."""

    def __init__(
        self,
        coordinator: RolloutCoordinator,
        *,
        stopping: threading.Event,
        retry: Callable[[], None],
    ) -> None:
        self.coordinator = coordinator
        self.stopping = stopping
        self.retry = retry  # ask for another reconcile soon
        self.log = get_logger("hecate-agent.rollout")

    def enter(self, revision: str) -> Result | None:
        try:
            if self.coordinator.acquire(revision):
                self.log.info("rollout slot taken", revision=revision)
                return None
        except RolloutHaltedError as exc:
            self.log.warning("revision halted by the fleet; not applied", revision=revision, detail=str(exc))
            return Result(Outcome.HALTED, revision, str(exc), halted_by=exc.halt.get("node"))
        except RolloutError as exc:
            self.log.warning("rollout coordination unavailable; not applying yet", revision=revision, error=str(exc))
            return Result(Outcome.ROLLOUT_ERROR, revision, str(exc))
        if not self.stopping.is_set():
            self.log.info("no rollout slot yet; trying again", revision=revision)
            self.retry()
        return Result(Outcome.WAITING, revision, "waiting for a rollout slot")

    def leave(self, revision: str, result: Result) -> None:
        try:
            if result.outcome in HALTING:
                self.coordinator.halt(revision, f"{result.outcome}: {result.error or result.outcome}")
                self.log.error("revision failed here; halting it for the fleet", revision=revision)
            elif result.outcome is Outcome.APPLIED and self.coordinator.soak > 0:
                # The engine published "applied" before calling here: the fleet sees it during the soak.
                self.coordinator.soak_wait()  # a bad revision shows itself here before others take it
        finally:
            self.coordinator.release(revision)
            self.log.info("rollout slot released", revision=revision)
