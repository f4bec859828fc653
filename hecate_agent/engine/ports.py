"""The engine's ports: what it needs from the world, as Protocols. Adapters implement them
(targets/, store/, sources/, secrets.py); tests/fakes.py has in-memory ones.

- `Target`: a managed system (below).
- `Source`: where revisions come from (a Git remote, a folder; runtime/sources.py).
- `StatusSink`: where a status document goes besides the state dir (Consul).
- `Secrets`: resolves the references of a desired state (environment, Vault).
- `StateStorePort`: the state dir (LKG, history, journal, lock); store/state.py.
- `Clock`: time, for what waits or paces.

A *target* is one managed system (Caddy, Nginx; Authentik and DNS next). The engine
knows nothing of any target's layout: it asks each, in `order`, to

1. read its live state                               `read()`
2. say what it must hold for a rendered revision      `desired(rendered, live)`      (pure)
3. say which part of a state is the agent's           `owned(state)`                  (pure)
4. key that part as resources, and list the rest      `resources(state)`              (pure)
5. refuse before anything changes                     `preflight(prepared)`
6. say how to undo it (journaled before any change)   `begin(prepared) -> record`
7. apply under its precondition                       `apply(prepared, record, save)`
8. put the previous state back (rollback, recovery)   `restore(record, live=None)` (None: read it)
9. after a crash: is the new state whole, and finish  `in_place(record, live, snapshot)`, `finish(record)`
10. clean up after a success                          `commit(record)`

and to map its part of a last-known-good snapshot (`of_snapshot`, `to_snapshot`). Resources
are keyed `Kind/name` and compared by value everywhere (plan, drift, ownership), so a
target only says *what* its resources are, never how to diff them.

Additions apply in ascending `order`; removals a target defers (`retire`, see
engine/fleetwide.py) then run in descending order, so a removed route leaves Caddy before
Authentik deletes its provider; a failure undoes every target already changed in reverse
order (DNS 10, Authentik 20, Caddy 30, Nginx 40). Fleet-wide targets (Authentik, DNS) write
only on the node that leads for them (engine/fleetwide.py `FleetRole`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import contextlib
    from pathlib import Path

    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.errors import SpecProblem
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.secrets import Resolution
    from hecate_agent.spec.loader import DesiredState, SourceFile
    from hecate_agent.store.state import Snapshot


@dataclass(frozen=True)
class TargetLive:
    """A target's live state: the value (JSON), the precondition token (Caddy's ETag), and where
    it lives (Nginx's active revision folder)."""

    state: Any
    token: str | None = None
    location: str | None = None


class Target(Protocol):
    name: str
    order: int

    def read(self) -> TargetLive: ...
    def desired(self, rendered: Rendered, live: Any) -> Any: ...
    def owned(self, state: Any) -> Any: ...
    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]: ...
    def of_snapshot(self, snapshot: Snapshot) -> Any: ...
    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]: ...
    def preflight(self, prepared: Prepared) -> list[str]: ...
    def begin(self, prepared: Prepared) -> dict[str, Any]: ...
    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None: ...
    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None: ...
    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool: ...
    def finish(self, record: dict[str, Any]) -> None: ...
    def commit(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class Source(Protocol):
    def fetch(self) -> str: ...
    def snapshot(self, revision: str) -> tuple[list[SourceFile], list[SpecProblem]]: ...
    def accept(self, revision: str) -> None: ...


class StatusSink(Protocol):
    def publish(self, status: dict[str, Any]) -> bool:
        """Send the newest status; False when it could not (kept for a retry by the adapter)."""
        ...


class Secrets(Protocol):
    def resolve(self, state: DesiredState) -> Resolution: ...


class StateStorePort(Protocol):
    root: Path

    def lock(self, *, wait: float = 0.0) -> contextlib.AbstractContextManager[None]: ...
    def last_applied(self) -> Snapshot | None: ...
    def record(self, snapshot: Snapshot) -> Snapshot: ...
    def append_history(self, entry: dict[str, Any]) -> None: ...
    def suspension(self) -> dict[str, Any] | None: ...
    def journal(self) -> dict[str, Any] | None: ...
    def write_journal(self, journal: dict[str, Any]) -> None: ...
    def write_journal_text(self, text: str) -> None: ...
    def clear_journal(self) -> None: ...
    def ensure(self) -> None: ...
    def snapshots(self) -> list[Snapshot]: ...
    def find(self, revision: str | None = None, *, previous: bool = False) -> Snapshot | None: ...
    def suspend(self, reason: str, by: str) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
