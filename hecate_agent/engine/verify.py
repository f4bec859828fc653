"""Verification: after an apply, probe what changed before the revision may become last-known-good.

Which probes an apply needs is decided up front, purely, from the plan and the specs
(`probes_for`), and written into the journal with the apply: a crash between apply and
verification is resolved at the next start by running the same probes again.

- A Route labelled `hecate.io/verify: "true"` that the plan creates or updates must
  answer through Caddy (its health-check path, or `/`) with a status below 500.
- Every listener of a created or updated TCP Stream must accept a connection.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hecate_agent.plan import ResourceChange
from hecate_agent.render.caddy import CaddySettings, parse_listen
from hecate_agent.render.nginx import listeners_of
from hecate_agent.spec.loader import DesiredState

VERIFY_LABEL = "hecate.io/verify"
ROUTE_SECONDS = 5.0  # a new backend may need a moment
CONNECT_TIMEOUT = 3.0
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class Probe:
    """One check: an HTTP request through Caddy (`route`) or a TCP connect (`stream`)."""

    kind: str  # "route" | "stream"
    resource: str  # "Route/app", "Stream/echo"
    address: str  # where to connect
    port: int
    host: str = ""  # Host header / SNI of a route probe
    path: str = "/"
    tls: bool = False
    label: str = ""  # what a stream probe checks, for the message ("tcp 127.0.0.1:7000")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def probes_for(changes: Iterable[ResourceChange], state: DesiredState, caddy: CaddySettings) -> list[Probe]:
    """The probes an apply of these changes needs. Pure."""
    changed = {(c.kind, c.name) for c in changes if c.action in ("create", "update")}
    probes = []
    for located in state.routes:
        route = located.doc
        if ("Route", located.name) not in changed or route.metadata.labels.get(VERIFY_LABEL) != "true":
            continue
        spec = route.spec
        listen = caddy.https_listen if spec.tls.auto_https else caddy.http_listen
        if not listen:
            continue
        address, port = parse_listen(listen[0])
        if port is None:
            continue
        probes.append(
            Probe(
                "route",
                f"Route/{located.name}",
                LOOPBACK.get(address, address),
                port,
                host=spec.domain.replace("*", "verify"),
                path=spec.health_check.path if spec.health_check else "/",
                tls=spec.tls.auto_https,
            )
        )
    for stream in state.streams:
        if ("Stream", stream.name) not in changed:
            continue
        for listener in listeners_of(stream):
            if listener.protocol == "tcp":
                address = LOOPBACK.get(listener.address, listener.address)
                probes.append(
                    Probe("stream", f"Stream/{stream.name}", address, listener.port, label=listener.describe())
                )
    return probes


def run_probes(probes: Sequence[Probe], *, route_seconds: float = ROUTE_SECONDS) -> list[str]:
    """Every failed probe as `Kind/name: why`; empty when all pass."""
    failures = []
    for probe in probes:
        problem = _probe_route(probe, route_seconds) if probe.kind == "route" else _probe_stream(probe)
        if problem:
            failures.append(f"{probe.resource}: {problem}")
    return failures


def _probe_stream(probe: Probe) -> str | None:
    try:
        socket.create_connection((probe.address, probe.port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        return f"{probe.label} does not accept ({exc})"
    return None


def _probe_route(probe: Probe, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            sock = socket.create_connection((probe.address, probe.port), timeout=CONNECT_TIMEOUT)
            if probe.tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # probing the route, not the certificate
                sock = context.wrap_socket(sock, server_hostname=probe.host)
            with sock:
                request = f"GET {probe.path} HTTP/1.1\r\nHost: {probe.host}\r\nConnection: close\r\n\r\n"
                sock.sendall(request.encode())
                head = sock.recv(64).decode(errors="replace")
            status = int(head.split(" ")[1]) if head.startswith("HTTP/") else 0
            if 0 < status < 500:
                return None
            last = f"answered {status}" if status else "answered no HTTP"
        except (OSError, ValueError, IndexError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            return f"GET {probe.path} (Host {probe.host}) {last}"
        time.sleep(0.5)
