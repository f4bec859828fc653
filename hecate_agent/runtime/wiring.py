"""Build a node from the agent's settings: the adapters behind the engine's ports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import consul

from hecate_agent.engine.node import Node
from hecate_agent.engine.ports import Secrets, Target
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.secrets import SecretResolver, VaultClient
from hecate_agent.settings import AgentSettings
from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import StateStore
from hecate_agent.store.status import read_status
from hecate_agent.stream_health import down_from_status
from hecate_agent.targets.caddy import CaddyTarget
from hecate_agent.targets.caddy_admin import CaddyAdmin, CaddyError, detect_capabilities
from hecate_agent.targets.nginx import NginxTarget
from hecate_agent.targets.nginx_streams import NginxSettings, NginxStreams

if TYPE_CHECKING:
    from hecate_agent.targets.dns import DnsEngineTarget, Leadership


def build_node(
    settings: AgentSettings,
    *,
    environment: Mapping[str, str] | None = None,
    capabilities: CaddyCapabilities | None = None,
) -> Node:
    if capabilities is None:
        try:
            capabilities = detect_capabilities(settings.caddy.binary)
        except CaddyError:
            capabilities = CaddyCapabilities()
    caddy = CaddyAdmin(settings.caddy.admin_url)
    store = StateStore(settings.state_dir, keep=settings.sync.history_limit)
    published = read_status(store) or {}
    node = Node(
        settings=settings,
        store=store,
        stream_down=down_from_status(published.get("components") or {}),
        capabilities=capabilities,
        resolver=SecretResolver(
            dict(os.environ if environment is None else environment),
            VaultClient(settings.vault) if settings.vault is not None else None,
        ),
        targets=[],
        caddy=caddy,
    )
    targets: list[Target] = [CaddyTarget(caddy, node.caddy_settings)]
    n = settings.nginx
    if n.enabled:
        node.nginx = NginxStreams(
            NginxSettings(
                stream_dir=n.stream_dir,
                test_command=tuple(n.test_command),
                reload_command=tuple(n.reload_command),
                dump_command=tuple(n.dump_command),
                pid_file=n.pid_file,
                error_log=n.error_log,
            )
        )
        targets.append(NginxTarget(node.nginx))
    if settings.dns is not None and settings.dns.provisioning == "agent":
        targets.append(dns_target(settings, node.resolver))
    node.targets = sorted(targets, key=lambda t: t.order)
    return node


def dns_target(settings: AgentSettings, resolver: Secrets) -> DnsEngineTarget:
    """The DNS target; with Consul the holder of `<prefix>/leaders/dns` writes, else `dns.manage` decides."""
    from hecate_agent.targets.dns import DnsEngineTarget, StaticLeadership  # dnspython: only where DNS is kept

    assert settings.dns is not None and isinstance(resolver, SecretResolver)
    leadership: Leadership = StaticLeadership(settings.dns.manage)
    if settings.consul is not None:
        from hecate_agent.runtime.fleet import make_publisher

        publisher = make_publisher(settings)
        assert publisher is not None
        leadership = ConsulLeadership(publisher, "dns")
    return DnsEngineTarget(settings.dns, settings.sync, resolver, leadership=leadership)


class ConsulLeadership:
    """The Consul lock `<prefix>/leaders/<name>` under the node's session (runtime/leader.py). The daemon
    hands its own publisher over (`share_publisher`), whose heartbeat renews the session; a one-shot
    command renews it here before it asks."""

    def __init__(self, publisher: ConsulPublisher, name: str) -> None:
        from hecate_agent.runtime.leader import LeaderElection

        self.election = LeaderElection(publisher, name)
        self.not_leading = f"it does not hold the Consul lock {self.election.key}"

    def _renew(self) -> None:
        publisher = self.election.publisher
        assert publisher is not None
        session = publisher.session
        if session is None:
            return
        try:
            publisher.client.session.renew(session)
        except consul.NotFound:
            with publisher.lock:
                publisher.session = None  # expired: the next acquire makes a new one
        except (consul.ConsulException, OSError, ValueError):
            return

    def leads(self) -> bool:
        """Take the lead if it is free; this node leads too when the holder is this node's other process
        (the daemon, while `apply` runs from the command line: they never apply at once)."""
        self._renew()
        self.election.session = None  # the publisher's current session, made if needed
        return self.election.try_acquire() or self.writes()

    def writes(self) -> bool:
        publisher = self.election.publisher
        assert publisher is not None
        return self.election.leader() == publisher.node

    def leader(self) -> str | None:
        return self.election.leader()


def share_publisher(node: Node, publisher: ConsulPublisher | None) -> None:
    """The daemon's Consul publisher (its session renewed by the heartbeat) for the node's leader locks."""
    if publisher is None:
        return
    for target in node.targets:
        leadership = getattr(target, "leadership", None)
        if isinstance(leadership, ConsulLeadership):
            leadership.election.publisher = publisher
