"""Checks that need more than one document: uniqueness, references, conflicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.models import (
    AuthPolicyDocument,
    GlobalConfig,
    RouteDocument,
    RouteHealthCheck,
    StreamDocument,
)
from hecate_agent.spec.types import Duration
from hecate_agent.spec.yamlio import format_field

if TYPE_CHECKING:
    from hecate_agent.spec.loader import Located, Locator


def effective_health_check(check: RouteHealthCheck, config: GlobalConfig) -> tuple[Duration, Duration, int]:
    """(interval, timeout, unhealthy threshold) of a route's check, global defaults filled in."""
    defaults = config.health_checks
    return (
        check.interval or defaults.interval,
        check.timeout or defaults.timeout,
        check.unhealthy_threshold or defaults.unhealthy_threshold,
    )


def check_cross_references(
    *,
    routes: Sequence[Located[RouteDocument]],
    policies: Sequence[Located[AuthPolicyDocument]],
    streams: Sequence[Located[StreamDocument]],
    config: GlobalConfig,
    locator: Locator,
) -> list[SpecProblem]:
    problems: list[SpecProblem] = []

    def problem(item: Located[Any], path: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
        line, column = locator.position(item.file, item.index, path, key=key)
        problems.append(
            SpecProblem(
                item.file, line, column, message, kind=item.doc.kind, name=item.name, field=format_field(path)
            )
        )

    def where(item: Located[Any], path: tuple[str | int, ...]) -> str:
        line, column = locator.position(item.file, item.index, path)
        return f"{item.file}:{line}:{column}"

    groups: tuple[Sequence[Located[Any]], ...] = (routes, policies, streams)
    for group in groups:
        first_by_name: dict[str, Located[Any]] = {}
        for item in sorted(group, key=lambda i: (i.file, i.index)):
            earlier = first_by_name.setdefault(item.name, item)
            if earlier is not item:
                problem(
                    item,
                    ("metadata", "name"),
                    f"{item.doc.kind} name {item.name!r} is already used at "
                    f"{where(earlier, ('metadata', 'name'))}; names are unique per kind",
                )

    first_by_domain: dict[str, Located[RouteDocument]] = {}
    policy_names = {p.name for p in policies}
    for route in sorted(routes, key=lambda i: (i.file, i.index)):
        spec = route.doc.spec
        earlier_route = first_by_domain.setdefault(spec.domain, route)
        if earlier_route is not route:
            problem(
                route,
                ("spec", "domain"),
                f"domain {spec.domain!r} is already served by Route/{earlier_route.name} "
                f"({where(earlier_route, ('spec', 'domain'))}); each domain belongs to one route",
            )
        if spec.auth_policy is not None:
            if spec.auth_policy not in policy_names:
                known = ", ".join(sorted(policy_names)) or "none are defined"
                problem(
                    route,
                    ("spec", "authPolicy"),
                    f"AuthPolicy {spec.auth_policy!r} does not exist (known: {known}); "
                    "add it under policies/ or fix the name",
                )
            elif config.authentik is None:
                problem(
                    route,
                    ("spec", "authPolicy"),
                    "this route uses an AuthPolicy, but config.yaml sets no global.authentik.outpostUrl; "
                    "add the Authentik outpost URL there",
                )
        if spec.health_check is not None:
            interval, timeout, _ = effective_health_check(spec.health_check, config)
            if timeout >= interval:
                problem(
                    route,
                    ("spec", "healthCheck"),
                    f"effective timeout ({timeout}) must be shorter than interval ({interval}) "
                    "(values not set here come from global.healthChecks)",
                    key=True,
                )

    taken: dict[tuple[str, int, str], Located[StreamDocument]] = {}
    for stream in sorted(streams, key=lambda i: (i.file, i.index)):
        for listener in stream.doc.spec.listeners():
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
