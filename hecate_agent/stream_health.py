"""Active health for Nginx streams, decided by the agent. Pure.

Open-source Nginx has no active stream health checks (`health_check` is
commercial; shared/research/dns-certs-caddy-modules.md §9). The agent probes
each upstream of a stream with a `healthCheck` (a TCP connect); after
`unhealthyThreshold` failures in a row it marks the server `down` in the
rendered stream file, and after `healthyThreshold` successes in a row it puts
it back. `down` keeps the server in the list, so `hash` mappings stay stable.
It never marks every server of an upstream block down: with all of them
failing there is nothing better to send traffic to, and Nginx's passive
`max_fails` still applies.

The probe results live in the daemon; what is marked down reaches the
renderer as a `DownSet` (stream name -> server addresses as the file writes
them) and is reported as health (status, metrics, plan notes), not as drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hecate_agent.spec.base import PRESET_PORTS

DownSet = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class ProbeState:
    """One upstream's probe history: whether it counts as up, and the current run of results."""

    up: bool = True
    failures: int = 0  # failed probes in a row
    successes: int = 0  # successful probes in a row


def observe(state: ProbeState, ok: bool, *, unhealthy_threshold: int, healthy_threshold: int) -> ProbeState:
    """The state after one more probe result (hysteresis both ways)."""
    if ok:
        successes = state.successes + 1
        return ProbeState(up=state.up or successes >= healthy_threshold, failures=0, successes=successes)
    failures = state.failures + 1
    return ProbeState(up=state.up and failures < unhealthy_threshold, failures=failures, successes=0)


def upstream_blocks(spec: Mapping[str, Any]) -> list[list[str]]:
    """The probe targets of a stream (its spec as JSON), grouped by Nginx upstream block (one per port)."""
    servers = [str(u["server"]) for u in spec.get("upstreams", [])]
    ports = PRESET_PORTS.get(spec.get("preset") or "", ())
    if not ports:
        return [servers]
    return [[f"{server}:{port}" for server in servers] for port in ports]


def down_servers(spec: Mapping[str, Any], health: Mapping[str, ProbeState]) -> frozenset[str]:
    """Targets to mark down: unhealthy ones, unless that would be every server of their block."""
    down: set[str] = set()
    for block in upstream_blocks(spec):
        unhealthy = [t for t in block if not health.get(t, ProbeState()).up]
        if len(unhealthy) < len(block):
            down.update(unhealthy)
    return frozenset(down)


def health_notes(down: DownSet) -> list[str]:
    """How a plan shows the marks: health, not a change of the spec."""
    return [
        f"Stream/{name}: {', '.join(sorted(targets))} marked down by the agent's health check "
        "(failing probes; put back after healthyThreshold good ones)"
        for name, targets in sorted(down.items())
        if targets
    ]


def down_from_status(components: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """The marks the daemon last published in status.json (`components.streams`), for one-shot commands."""
    streams = components.get("streams") or {}
    found: dict[str, frozenset[str]] = {}
    for name, targets in streams.items():
        if isinstance(targets, Mapping):
            marked = frozenset(t for t, e in targets.items() if isinstance(e, Mapping) and e.get("markedDown"))
            if marked:
                found[str(name)] = marked
    return found
