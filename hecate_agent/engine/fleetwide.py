"""Optional target capabilities for fleet-wide targets (Authentik, DNS): generic, no target named here.

A fleet-wide target manages one system that every node of the fleet shares. Three
things follow, each optional for a target and used by the engine only through the
Protocols below:

- **Who writes** (`FleetRole`): exactly one node acts for the fleet. With Consul, the
  holder of `<prefix>/leaders/<name>` (runtime/leader.py, under the node's session);
  without Consul the static setting (`manage: true` on exactly one node). Every other
  node is a *follower*: it plans the target read-only and, instead of writing, waits
  (bounded, `wait_until`) until the live system has what its own change needs; if it
  does not in time, the reconcile ends with that reason (outcome error, nothing
  changed) and the caller retries it.
- **Removals in reverse order** (`Retiring`): the transaction applies every target in
  ascending `order` (creates and updates), then calls `retire` on the targets that
  have it in *descending* order, before verification. So a removed route leaves Caddy
  (30) first, and only then does Authentik (20) or DNS (10) delete what served it.
  A failure in either phase rolls back every touched target, newest first.
- **Status** (`Reporting`): `component()` is the target's entry under the status
  document's `components` (healthy + detail).
- **Plan notes** (`Noting`): `plan_notes(desired)` adds lines to the plan's notes (DNS:
  that this node does not write and waits for the writer). The records themselves are
  shown by the generic plan (`plan_whole`).
- **Settings from the revision** (`Binding`): a target whose connection comes from the
  revision itself (DNS: the provider and its API token are in config.yaml, not agent.yaml)
  implements `bind(rendered)`; the engine calls it with the revision before it reads the
  live state, for plan, apply, drift checks and rollback to a last-known-good alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.store.consul_status import ConsulPublisher


@runtime_checkable
class Retiring(Protocol):
    """A target whose deletions wait until the targets after it have let go (see the docstring)."""

    def retire(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None: ...


@runtime_checkable
class Reporting(Protocol):
    """A target that reports its health in the status document's `components`."""

    name: str

    def component(self) -> dict[str, Any] | None: ...


def components(targets: Iterable[object]) -> dict[str, Any]:
    """`components` entries of the targets that report one."""
    found: dict[str, Any] = {}
    for target in targets:
        if isinstance(target, Reporting):
            entry = target.component()
            if entry is not None:
                found[target.name] = entry
    return found


@runtime_checkable
class Noting(Protocol):
    """A target with something to say in the plan beyond its resources (see the docstring)."""

    name: str

    def plan_notes(self, desired: Any) -> list[str]: ...


def plan_notes(targets: Iterable[object], desired: Mapping[str, Any]) -> list[str]:
    """The notes of the targets that have some, given each one's desired state (by target name)."""
    lines: list[str] = []
    for target in targets:
        if isinstance(target, Noting):
            lines += target.plan_notes(desired.get(target.name))
    return lines


@runtime_checkable
class Binding(Protocol):
    """A target that takes its settings from the revision (see the docstring)."""

    def bind(self, rendered: Rendered) -> None: ...


def bind_targets(targets: Iterable[object], rendered: Rendered) -> None:
    """Give every target that wants it the revision, before its live state is read."""
    for target in targets:
        if isinstance(target, Binding):
            target.bind(rendered)


class FleetRole:
    """Whether this node acts for the fleet on one fleet-wide target (`name`: `authentik`, `dns`).

    `acts()` asks every time (a session can expire behind the node's back, another node can
    take over); a Consul error means "does not act", so two nodes never both write.
    """

    def __init__(
        self,
        name: str,
        *,
        publisher: ConsulPublisher | None = None,
        static: bool = False,
        owns_publisher: bool = False,
    ) -> None:
        self.name = name
        self.publisher = publisher
        self.static = static
        self.owns_publisher = owns_publisher  # built for this role (CLI): closed with it
        self.acting: bool | None = None  # the last answer, for status

    @property
    def key(self) -> str:
        prefix = self.publisher.prefix if self.publisher is not None else "hecate"
        return f"{prefix}/leaders/{self.name}"

    def use_publisher(self, publisher: ConsulPublisher) -> None:
        """Share the daemon's publisher (its session is renewed by the heartbeat)."""
        if self.owns_publisher and self.publisher is not None and self.publisher is not publisher:
            self.publisher.close()
        self.publisher, self.owns_publisher = publisher, False

    def _election(self) -> Any:
        from hecate_agent.runtime.leader import LeaderElection

        return LeaderElection(self.publisher, self.name, static_leader=self.static)

    def acts(self) -> bool:
        """Take the lead if it is free (or keep it); True if this node writes now. The lead held under
        another session *of this node* (its daemon, a previous run) counts too: applies on one node are
        serialized by its state lock, so that is still one writer."""
        if self.publisher is not None:
            self.publisher.renew_session()  # expired behind the node's back: lead under a new one
        election = self._election()
        self.acting = bool(election.try_acquire()) or (
            self.publisher is not None and election.leader() == self.publisher.node
        )
        return self.acting

    def would_act(self) -> bool:
        """For planning, without taking anything: this node leads, or nobody does (it would take the lead)."""
        if self.publisher is None:
            return self.static
        holder = self.leader()
        return holder is None or holder == self.publisher.node

    def leader(self) -> str | None:
        return self._election().leader() if self.publisher is not None else None

    def describe(self) -> str:
        if self.publisher is None:
            return "provisions (manage: true)" if self.static else "read-only (manage: false)"
        if self.acting:
            return f"provisions (holds {self.key})"
        return f"read-only ({self.leader() or 'no node'} holds {self.key})"

    def release(self) -> None:
        if self.publisher is None:
            return
        self._election_with_session().release()
        if self.owns_publisher:
            self.publisher.close()

    def _election_with_session(self) -> Any:
        election = self._election()
        election.session = self.publisher.session if self.publisher is not None else None
        return election


def use_publisher(targets: Iterable[object], publisher: ConsulPublisher | None) -> None:
    """Give every fleet-wide target's role the daemon's Consul publisher."""
    if publisher is None:
        return
    for target in targets:
        role = getattr(target, "role", None)
        if isinstance(role, FleetRole):
            role.use_publisher(publisher)


def wait_until(
    check: Callable[[], str | None],
    timeout: float,
    *,
    step: float = 1.0,
    stopping: threading.Event | None = None,
) -> str | None:
    """Call `check` until it returns None (ready) or `timeout` seconds pass; returns the last reason."""
    deadline = time.monotonic() + timeout
    stopping = stopping or threading.Event()
    while True:
        reason = check()
        remaining = deadline - time.monotonic()
        if reason is None or remaining <= 0 or stopping.is_set():
            return reason
        stopping.wait(min(step, remaining))
