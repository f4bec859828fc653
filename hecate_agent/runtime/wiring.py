"""Build a node from the agent's settings: the adapters behind the engine's ports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hecate_agent.engine.fleetwide import FleetRole
from hecate_agent.engine.node import Node
from hecate_agent.engine.ports import Secrets, Target
from hecate_agent.errors import HecateError
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.secrets import Reference, SecretResolver, VaultClient
from hecate_agent.settings import AgentSettings
from hecate_agent.store.state import StateStore
from hecate_agent.store.status import read_status
from hecate_agent.stream_health import down_from_status
from hecate_agent.targets.caddy import CaddyTarget
from hecate_agent.targets.caddy_admin import CaddyAdmin, CaddyError, detect_capabilities
from hecate_agent.targets.nginx import NginxTarget
from hecate_agent.targets.nginx_streams import NginxSettings, NginxStreams

if TYPE_CHECKING:
    from hecate_agent.targets.dns import DnsEngineTarget


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
    if settings.authentik is not None and settings.authentik.provisioning == "agent":
        targets.append(authentik_target(settings))
    if settings.dns is not None and settings.dns.provisioning == "agent":
        targets.append(dns_target(settings, node.resolver))
    node.targets = sorted(targets, key=lambda t: t.order)
    return node


def authentik_target(settings: AgentSettings) -> Target:
    """The Authentik target (imports authentik-client, slow: only when provisioning is `agent`). The token
    is read when Authentik is first used, so a missing file or an unreachable Vault is a reconcile error
    (retried), not a start failure."""
    from hecate_agent.authentik.client import AuthentikTarget
    from hecate_agent.authentik.desired import EMBEDDED_OUTPOST
    from hecate_agent.runtime.fleet import make_publisher
    from hecate_agent.targets.authentik import AuthentikEngineTarget

    a = settings.authentik
    assert a is not None and a.url is not None  # the settings' validator
    url, outpost = a.url, a.outpost or EMBEDDED_OUTPOST

    def connect() -> AuthentikTarget:
        return AuthentikTarget(url, authentik_token(settings), outpost=outpost, timeout=a.timeout.seconds)

    publisher = make_publisher(settings)
    role = FleetRole("authentik", publisher=publisher, static=a.manage, owns_publisher=publisher is not None)
    return AuthentikEngineTarget(connect, role, url=url, outpost=outpost, follower_wait=a.follower_wait.seconds)


def authentik_token(settings: AgentSettings) -> str:
    """The Authentik API token, from its file or its Vault reference (registered as a secret on use)."""
    a = settings.authentik
    assert a is not None
    if a.token is not None:
        reference = Reference(a.token[2:-1], "authentik.token")
        assert settings.vault is not None  # the settings' validator
        value = VaultClient(settings.vault).read(reference.vault_path).get(reference.vault_key)
        if not isinstance(value, str) or not value:
            raise HecateError(f"authentik.token: Vault has no value for {a.token}; check the path and key")
        return value
    assert a.token_file is not None
    try:
        token = a.token_file.read_text().strip()
    except OSError as exc:
        raise HecateError(
            f"authentik.tokenFile {a.token_file}: cannot be read ({exc.strerror}); check the path and permissions"
        ) from None
    if not token:
        raise HecateError(f"authentik.tokenFile {a.token_file}: is empty; put an Authentik API token in it")
    return token


def dns_target(settings: AgentSettings, resolver: Secrets) -> DnsEngineTarget:
    """The DNS target; with Consul the holder of `<prefix>/leaders/dns` writes, else `dns.manage` decides."""
    from hecate_agent.runtime.fleet import make_publisher
    from hecate_agent.targets.dns import DnsEngineTarget  # dnspython: only where DNS is kept

    assert settings.dns is not None and isinstance(resolver, SecretResolver)
    publisher = make_publisher(settings)
    role = FleetRole("dns", publisher=publisher, static=settings.dns.manage, owns_publisher=publisher is not None)
    return DnsEngineTarget(settings.dns, settings.sync, resolver, role=role)
