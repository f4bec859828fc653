"""DesiredState → Nginx `stream` configuration: one file per Stream spec.

Pure and deterministic. The files go into the agent's stream directory, which
the main nginx.conf includes inside its single `stream {}` block (see
`packaging/nginx-stream.conf`). Everything interpolated here was validated by
the spec types (IP addresses, host names, ports, durations), so no spec value
can carry `;`, braces, quotes, `$` or whitespace into a directive; `_token`
re-checks it anyway, because this is the last line before Nginx.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from hecate_agent.spec.base import PRESET_PORTS
from hecate_agent.spec.loader import DesiredState, Located
from hecate_agent.spec.streams import StreamDocument, StreamUpstream

# Names Nginx sees are prefixed so they never collide with the operator's own upstreams/zones.
UPSTREAM_PREFIX = "hecate_"
ZONE_SIZE = "64k"
CONNECT_TIMEOUT = "5s"
TCP_IDLE_TIMEOUT = "10m"  # Nginx's default, stated so the file says what it does
UDP_TIMEOUT = "5s"

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:\[\]-]+\Z")


@dataclass(frozen=True)
class Listener:
    """One socket a stream opens, and what it forwards to."""

    stream: str
    address: str
    port: int
    protocol: str
    upstream_name: str

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.protocol)

    def describe(self) -> str:
        return f"{self.protocol} {format_address(self.address)}:{self.port}"


def format_address(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _token(value: str) -> str:
    if not _SAFE_TOKEN.match(value):
        raise ValueError(f"refusing to write {value!r} into an Nginx directive")
    return value


def listeners_of(stream: Located[StreamDocument]) -> list[Listener]:
    spec = stream.doc.spec
    name = stream.name
    if spec.preset is None:
        assert spec.listen.port is not None  # the model guarantees it without a preset
        return [Listener(name, spec.listen.address, spec.listen.port, spec.protocol, f"{UPSTREAM_PREFIX}{name}")]
    return [
        Listener(name, spec.listen.address, port, spec.protocol, f"{UPSTREAM_PREFIX}{name}_{port}")
        for port in PRESET_PORTS[spec.preset]
    ]


def all_listeners(state: DesiredState) -> list[Listener]:
    return [listener for stream in state.streams for listener in listeners_of(stream)]


def _server_line(upstream: StreamUpstream, port: int | None, down: frozenset[str]) -> str:
    address = upstream.server if port is None else f"{upstream.server}:{port}"
    parts = [
        f"server {_token(address)}",
        f"weight={upstream.weight}",
        f"max_fails={upstream.max_fails}",
        f"fail_timeout={_token(str(upstream.fail_timeout))}",
    ]
    if upstream.backup:
        parts.append("backup")
    if address in down:
        parts.append("down")  # the agent's active health check (stream_health.py); kept listed for `hash`
    return " ".join(parts) + ";"


def render_stream(stream: Located[StreamDocument], down: frozenset[str] = frozenset()) -> str:
    """One stream's file. It does not name the revision on purpose: a revision in the text would
    change every file on every commit and force an Nginx reload each time, and every reload leaves
    old workers behind for as long as their long-lived connections last (proxy-brief fact 36).
    The revision folder the files live in is named after the revision instead."""
    spec = stream.doc.spec
    lines = [
        f"# Managed by hecate-agent: Stream/{stream.name}.",
        "# Do not edit: the agent rewrites this file when the stream's spec changes.",
    ]
    if spec.health_check is not None:
        check = spec.health_check
        lines.append(
            f"# Active health checks ({check.type}, every {check.interval}, timeout {check.timeout}): the agent "
            f"marks a server down after {check.unhealthy_threshold} failed probes and back after "
            f"{check.healthy_threshold} good ones; Nginx applies the passive max_fails/fail_timeout below."
        )
    for listener in listeners_of(stream):
        upstream_port = None if spec.preset is None else listener.port
        lines.append("")
        lines.append(f"upstream {_token(listener.upstream_name)} {{")
        # The balancing method (default round robin) must come before `server ... backup` lines.
        lines.append(f"    zone {_token(listener.upstream_name)} {ZONE_SIZE};")
        marked = down if spec.health_check is not None else frozenset()
        lines.extend(f"    {_server_line(u, upstream_port, marked)}" for u in spec.upstreams)
        lines.append("}")
        lines.append("")
        lines.append("server {")
        udp = " udp" if listener.protocol == "udp" else ""
        lines.append(f"    listen {_token(format_address(listener.address))}:{listener.port}{udp};")
        lines.append(f"    proxy_pass {_token(listener.upstream_name)};")
        lines.append(f"    proxy_connect_timeout {CONNECT_TIMEOUT};")
        if listener.protocol == "udp":
            # Request/response protocols (DNS, syslog acks): end the session after one reply
            # instead of holding a socket per client for proxy_timeout.
            lines.append("    proxy_responses 1;")
            lines.append(f"    proxy_timeout {UDP_TIMEOUT};")
        else:
            lines.append(f"    proxy_timeout {TCP_IDLE_TIMEOUT};")
        lines.append("}")
    return "\n".join(lines) + "\n"


def render_nginx(state: DesiredState, down: Mapping[str, frozenset[str]] | None = None) -> dict[str, str]:
    """File name → content, one `<stream name>.conf` per Stream, sorted by name. `down`: servers the
    agent's health check marks down, by stream name (stream_health.py)."""
    marks = down or {}
    return {f"{s.name}.conf": render_stream(s, marks.get(s.name, frozenset())) for s in state.streams}
