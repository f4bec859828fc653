"""Optional parts a target may take in an apply, beyond the `Target` Protocol (engine/ports.py).

- Binding: a target whose connection comes from the revision itself (the DNS
  provider and its API token are in config.yaml, not agent.yaml) implements
  `bind(rendered)`; the engine calls it with the revision before it reads the
  live state, for plan, apply and rollback to a last-known-good alike. A target
  without `bind` is not asked.
- Plan lines: the generic plan diffs resources field by field for updates; a
  target whose creations and deletions need their values shown (a DNS record's
  type, values and TTL) implements `plan_lines(desired)`, added to the plan's
  notes.
- Status: a target with something to report in the status document's
  `components` (the DNS target: its provider, policy, whether this node writes,
  how many records the fleet owns) implements `component()`.
- Removals after the proxies: additions apply in ascending `order` (DNS 10
  before Caddy 30: a new route's record exists, and is answered by every
  authoritative server, before the route serves and asks for a certificate).
  Removals go the other way: a target that must remove things only once the
  proxies stopped using them (the DNS records of removed routes) leaves them out
  of `apply` and removes them in `commit`, which runs after every target applied,
  the probes passed and the last-known-good was recorded. A failure there changes
  nothing that was applied: the removal shows again in the next plan and is
  retried then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hecate_agent.render.bundle import Rendered


@runtime_checkable
class Binding(Protocol):
    def bind(self, rendered: Rendered) -> None: ...


@runtime_checkable
class Describing(Protocol):
    def plan_lines(self, desired: Any) -> list[str]: ...


def plan_lines(targets: Iterable[object], desired: Mapping[str, Any]) -> list[str]:
    """What the targets that describe their own changes say about the desired states (by target name)."""
    lines: list[str] = []
    for target in targets:
        if isinstance(target, Describing):
            lines += target.plan_lines(desired.get(str(getattr(target, "name", ""))))
    return lines


@runtime_checkable
class Reporting(Protocol):
    name: str

    def component(self) -> dict[str, Any] | None: ...


def components(targets: Iterable[object]) -> dict[str, Any]:
    """The status components of the targets that report one (by target name)."""
    found: dict[str, Any] = {}
    for target in targets:
        if isinstance(target, Reporting):
            value = target.component()
            if value is not None:
                found[target.name] = value
    return found


def bind_targets(targets: Iterable[object], rendered: Rendered) -> None:
    """Give every target that wants it the revision, before its live state is read."""
    for target in targets:
        if isinstance(target, Binding):
            target.bind(rendered)
