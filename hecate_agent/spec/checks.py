"""Checks that need more than one document: uniqueness, references, conflicts.

They work on `Facts`, the few values of each valid document that matter
across files, so the same checks run whether documents were validated in this
process or in worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.config import GlobalConfig
from hecate_agent.spec.models import RouteDocument, RouteHealthCheck
from hecate_agent.spec.streams import StreamDocument
from hecate_agent.spec.types import Duration
from hecate_agent.spec.yamlio import Path, format_field

if TYPE_CHECKING:
    from hecate_agent.spec.loader import Located, Locator


@dataclass(frozen=True)
class Facts:
    """What cross-file checks need from one valid document (small and picklable)."""

    kind: str
    name: str
    file: str
    index: int
    domain: str | None = None
    auth_policy: str | None = None
    health_interval: Duration | None = None
    health_timeout: Duration | None = None
    has_health_check: bool = False
    listeners: tuple[tuple[str, int, str], ...] = ()


def facts_of(located: Located[Any]) -> Facts:
    doc = located.doc
    base = {"kind": doc.kind, "name": doc.metadata.name, "file": located.file, "index": located.index}
    if isinstance(doc, RouteDocument):
        check = doc.spec.health_check
        return Facts(
            **base,
            domain=doc.spec.domain,
            auth_policy=doc.spec.auth_policy,
            health_interval=check.interval if check else None,
            health_timeout=check.timeout if check else None,
            has_health_check=check is not None,
        )
    if isinstance(doc, StreamDocument):
        return Facts(**base, listeners=tuple(doc.spec.listeners()))
    return Facts(**base)


def effective_health_check(check: RouteHealthCheck, config: GlobalConfig) -> tuple[Duration, Duration, int]:
    """(interval, timeout, unhealthy threshold) of a route's check, global defaults filled in."""
    defaults = config.health_checks.effective
    return (
        check.interval or defaults.interval,
        check.timeout or defaults.timeout,
        check.unhealthy_threshold or defaults.unhealthy_threshold,
    )


def check_cross_references(facts: Sequence[Facts], config: GlobalConfig, locator: Locator) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    ordered = sorted(facts, key=lambda f: (f.file, f.index))

    def problem(item: Facts, path: Path, message: str, *, key: bool = False, severity: str = "error") -> None:
        line, column = locator.position(item.file, item.index, path, key=key)
        problems.append(
            SpecProblem(
                item.file,
                line,
                column,
                message,
                kind=item.kind,
                name=item.name,
                field=format_field(path),
                severity=severity,
            )
        )

    def where(item: Facts, path: Path) -> str:
        line, column = locator.position(item.file, item.index, path)
        return f"{item.file}:{line}:{column}"

    first_by_name: dict[tuple[str, str], Facts] = {}
    for item in ordered:
        earlier = first_by_name.setdefault((item.kind, item.name), item)
        if earlier is not item:
            problem(
                item,
                ("metadata", "name"),
                f"{item.kind} name {item.name!r} is already used at {where(earlier, ('metadata', 'name'))}; "
                "names are unique per kind",
            )

    routes = [f for f in ordered if f.kind == "Route"]
    policy_names = {f.name for f in ordered if f.kind == "AuthPolicy"}
    first_by_domain: dict[str, Facts] = {}
    for route in routes:
        assert route.domain is not None
        earlier_route = first_by_domain.setdefault(route.domain, route)
        if earlier_route is not route:
            problem(
                route,
                ("spec", "domain"),
                f"domain {route.domain!r} is already served by Route/{earlier_route.name} "
                f"({where(earlier_route, ('spec', 'domain'))}); each domain belongs to one route",
            )
        if route.auth_policy is not None:
            if route.auth_policy not in policy_names:
                known = ", ".join(sorted(policy_names)) or "none are defined"
                problem(
                    route,
                    ("spec", "authPolicy"),
                    f"AuthPolicy {route.auth_policy!r} does not exist (known: {known}); "
                    "add it under policies/ or fix the name",
                )
            elif config.authentik is None:
                problem(
                    route,
                    ("spec", "authPolicy"),
                    "this route uses an AuthPolicy and config.yaml sets no global.authentik.outpostUrl: every node "
                    "that applies it needs authentik.outpostUrl in its agent.yaml (or set it here for all nodes)",
                    severity="warning",
                )
        if route.has_health_check:
            interval = route.health_interval or config.health_checks.effective.interval
            timeout = route.health_timeout or config.health_checks.effective.timeout
            if timeout >= interval:
                problem(
                    route,
                    ("spec", "healthCheck"),
                    f"effective timeout ({timeout}) must be shorter than interval ({interval}) "
                    "(values not set here come from global.healthChecks)",
                    key=True,
                )

    taken: dict[tuple[str, int, str], Facts] = {}
    for stream in (f for f in ordered if f.kind == "Stream"):
        for listener in stream.listeners:
            owner = taken.setdefault(listener, stream)
            if owner is not stream:
                address, port, protocol = listener
                problem(
                    stream,
                    ("spec", "listen"),
                    f"{protocol} {address}:{port} is already taken by Stream/{owner.name} "
                    f"({owner.file}); give one of them another port or address",
                    key=True,
                )
    return problems
