"""Build a node from the agent's settings: the adapters behind the engine's ports."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hecate_agent.engine.node import Node
from hecate_agent.engine.ports import Secrets, Target
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.secrets import SecretResolver, VaultClient
from hecate_agent.settings import AgentSettings
from hecate_agent.store.state import StateStore
from hecate_agent.store.status import read_status
from hecate_agent.stream_health import down_from_status
from hecate_agent.targets.caddy import CaddyTarget
from hecate_agent.targets.caddy_admin import CaddyAdmin, CaddyError, detect_capabilities
from hecate_agent.targets.dns import DnsEngineTarget
from hecate_agent.targets.nginx import NginxTarget
from hecate_agent.targets.nginx_streams import NginxSettings, NginxStreams


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
    assert settings.dns is not None and isinstance(resolver, SecretResolver)
    if settings.consul is None:
        manage = settings.dns.manage
        return DnsEngineTarget(settings.dns, settings.sync, resolver, leads=lambda: manage)
    from hecate_agent.runtime.fleet import make_publisher
    from hecate_agent.runtime.leader import LeaderElection

    election = LeaderElection(make_publisher(settings), "dns")

    def leads() -> bool:
        election.session = None  # the publisher's current session (a lost one is replaced)
        return election.try_acquire()

    return DnsEngineTarget(
        settings.dns,
        settings.sync,
        resolver,
        leads=leads,
        writes=election.is_leader,
        leader=election.leader,
        not_leading=f"it does not hold the Consul lock {election.key}",
    )
