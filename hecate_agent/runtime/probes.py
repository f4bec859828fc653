"""Stream upstream probes: the agent checks each TCP stream upstream that has a healthCheck.

Run every few seconds by the daemon's scheduler; the result goes to the metrics
(`hecate_upstream_up`) and to the status document's `components.streams` — only
when it changed, so an idle node does not rewrite its status every 5 s.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from hecate_agent.metrics import Metrics
from hecate_agent.spec.base import PRESET_PORTS
from hecate_agent.spec.types import Duration
from hecate_agent.store.state import Snapshot
from hecate_agent.stream_health import ProbeState, down_servers, observe

Health = dict[str, dict[str, dict[str, Any]]]  # stream -> "host:port" -> {up, failures, checked}


class StreamProbes:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.health: Health = {}
        self.reported: dict[str, Any] | None = None
        self.down: dict[str, frozenset[str]] = {}

    def run(self, last: Snapshot | None, marked: dict[str, frozenset[str]] | None = None) -> dict[str, Any] | None:
        """Probe what is due; the `streams` component when it changed since the last report, else None.

        `marked`: the servers currently marked down in the stream files (a restart keeps them until the
        probes say otherwise). `self.down` holds what the probes say should be marked now."""
        marked = marked or {}
        if last is None:
            return None
        health: Health = {}
        specs = {k.split("/", 1)[1]: v for k, v in last.specs.items() if k.startswith("Stream/")}
        now = time.monotonic()
        for name, spec in specs.items():
            check = spec["spec"].get("healthCheck")
            if not check or spec["spec"].get("protocol", "tcp") != "tcp":
                continue
            previous = self.health.get(name, {})
            timeout = Duration.parse(check["timeout"]).seconds
            interval = Duration.parse(check["interval"]).seconds
            ports = PRESET_PORTS.get(spec["spec"].get("preset") or "", ())
            for upstream in spec["spec"]["upstreams"]:
                targets = [f"{upstream['server']}:{p}" for p in ports] if ports else [upstream["server"]]
                for target in targets:
                    first = {"up": target not in marked.get(name, ()), "failures": 0, "successes": 0}
                    entry = dict(previous.get(target, {**first, "checked": 0.0}))
                    if now - entry["checked"] >= interval:
                        ok = _reachable(target, timeout)
                        # Thresholds and hysteresis are stream_health.observe (pure); this loop only probes.
                        probed = observe(
                            ProbeState(entry["up"], entry["failures"], entry.get("successes", 0)),
                            ok,
                            unhealthy_threshold=check.get("unhealthyThreshold", 3),
                            healthy_threshold=check.get("healthyThreshold", 2),
                        )
                        entry.update(up=probed.up, failures=probed.failures, successes=probed.successes, checked=now)
                    health.setdefault(name, {})[target] = entry
        self.health = health
        # Servers the probes find unhealthy are marked `down` in the stream files (down_servers never marks
        # a whole block); the daemon re-renders through the normal, paced reconcile when this set changes.
        down = {
            n: down_servers(specs[n]["spec"], {t: ProbeState(e["up"]) for t, e in h.items()}) for n, h in health.items()
        }
        self.down = {n: servers for n, servers in down.items() if servers}
        # Streams and upstreams no longer probed (removed, or their check removed) lose their series.
        self.metrics.set_stream_upstreams({(n, t): e["up"] for n, h in health.items() for t, e in h.items()})
        streams = {
            n: {
                t: {"up": e["up"], "failures": e["failures"], "markedDown": t in self.down.get(n, ())}
                for t, e in h.items()
            }
            for n, h in health.items()
        }
        if streams == self.reported:
            return None
        self.reported = streams
        return streams


def _reachable(target: str, timeout: float) -> bool:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError:
        return False
    return True
