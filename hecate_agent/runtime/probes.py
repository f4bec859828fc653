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
from hecate_agent.spec.models import PRESET_PORTS
from hecate_agent.spec.types import Duration
from hecate_agent.store.state import Snapshot

Health = dict[str, dict[str, dict[str, Any]]]  # stream -> "host:port" -> {up, failures, checked}


class StreamProbes:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.health: Health = {}
        self.reported: dict[str, Any] | None = None

    def run(self, last: Snapshot | None) -> dict[str, Any] | None:
        """Probe what is due; the `streams` component when it changed since the last report, else None."""
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
                    entry = dict(previous.get(target, {"up": True, "failures": 0, "checked": 0.0}))
                    if now - entry["checked"] >= interval:
                        _probe(target, entry, timeout, check.get("unhealthyThreshold", 3))
                        entry["checked"] = now
                    health.setdefault(name, {})[target] = entry
                    self.metrics.upstream_up.labels(stream=name, upstream=target).set(1 if entry["up"] else 0)
        self.health = health
        streams = {n: {t: {"up": e["up"], "failures": e["failures"]} for t, e in h.items()} for n, h in health.items()}
        if streams == self.reported:
            return None
        self.reported = streams
        return streams


def _probe(target: str, entry: dict[str, Any], timeout: float, threshold: int) -> None:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        entry.update(up=True, failures=0)
    except OSError:
        entry["failures"] += 1
        entry["up"] = entry["failures"] < threshold
