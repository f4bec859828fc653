"""The daemon's periodic upkeep beside reconciling: drift checks (and self-heal), stream
upstream probes, and the heartbeat (Vault token, Consul session and TTL check)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hecate_agent.engine.node import Node
from hecate_agent.logs import get_logger
from hecate_agent.metrics import Metrics
from hecate_agent.runtime import drift
from hecate_agent.runtime.probes import StreamProbes
from hecate_agent.secrets import SecretError, SecretResolver
from hecate_agent.settings import AgentSettings
from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import utc_now
from hecate_agent.store.status import read_status, update_status


class Upkeep:
    def __init__(self, metrics: Metrics, publish: Callable[[dict[str, Any] | None], None]) -> None:
        self.metrics = metrics
        self.publish = publish
        self.probes = StreamProbes(metrics)
        self.log = get_logger("hecate-agent.upkeep")

    def check_drift(self, node: Node, settings: AgentSettings) -> list[str]:
        last = node.store.last_applied()
        if last is None:
            return []
        drifted = drift.detect(node, last)
        self.metrics.drift.set(len(drifted))
        if drifted:
            self.log.warning(
                "drift: live config differs from the applied revision",
                resources=drifted,
                self_heal=settings.sync.self_heal,
            )
            if settings.sync.self_heal and not node.store.suspension():
                drift.heal(node, last)
                self.log.info("drift healed", revision=last.revision)
                self.metrics.drift.set(0)
                drifted = []
        current = (read_status(node.store) or {}).get("drift") or {}
        if drifted or current.get("detected"):  # the status changes: write it (once)
            report = {"detected": bool(drifted), "at": utc_now() if drifted else None, "resources": drifted}
            self.publish(update_status(node.store, settings.node.name, drift=report))
        return drifted

    def probe_streams(self, node: Node, settings: AgentSettings, trigger: Callable[[str], None]) -> None:
        streams = self.probes.run(node.store.last_applied(), node.stream_down)
        if streams is not None:
            update_status(node.store, settings.node.name, components={"streams": streams})
        if self.probes.down != node.stream_down:  # marks change the stream files: a (paced) reconcile
            node.stream_down = self.probes.down
            trigger("stream-health")

    def heartbeat(self, node: Node, settings: AgentSettings, consul: ConsulPublisher | None) -> None:
        vault = node.resolver.vault if isinstance(node.resolver, SecretResolver) else None
        if vault is not None:
            try:
                vault.ensure_token()  # renew at 2/3 of the TTL even when nothing needs reading
            except SecretError as exc:
                self.log.warning("vault token upkeep failed; retrying on the next heartbeat", error=str(exc))
        status = update_status(node.store, settings.node.name)
        if consul is not None and not consul.heartbeat(status):
            self.metrics.consul_failures.inc()
