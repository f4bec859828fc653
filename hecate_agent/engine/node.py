"""A node as the engine sees it: its targets in order, its state store, its secrets, its settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hecate_agent.engine.ports import Secrets, StateStorePort, Target
from hecate_agent.engine.verify import Probe, run_probes
from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, RenderCache
from hecate_agent.settings import AgentSettings

if TYPE_CHECKING:
    from hecate_agent.targets.caddy_admin import CaddyAdmin
    from hecate_agent.targets.nginx_streams import NginxStreams


@dataclass
class Node:
    """This node's targets and state. `caddy` and `nginx` are the adapters of the two built-in
    targets, kept for the commands and tests that talk to a proxy directly."""

    settings: AgentSettings
    store: StateStorePort
    capabilities: CaddyCapabilities
    resolver: Secrets
    targets: list[Target]
    caddy: CaddyAdmin | None = None
    nginx: NginxStreams | None = None
    render_cache: RenderCache = field(default_factory=RenderCache)
    verifier: Callable[[Sequence[Probe]], list[str]] = run_probes  # failed probes as `Kind/name: why`
    # Stream servers the agent's active health check marks down (stream_health.py): set by the daemon's
    # probes; one-shot commands start from what the daemon last published, so their plans agree with it.
    stream_down: dict[str, frozenset[str]] = field(default_factory=dict)
    # The daemon plans its applies against what the targets remember applying (engine/prepare.read_live);
    # one-shot commands and drift checks always read the live targets.
    plan_from_memory: bool = False
    explain_plans: bool = True  # field-level changes in plans (the daemon shows none: plan.make_plan)

    def __post_init__(self) -> None:
        self.targets = sorted(self.targets, key=lambda t: t.order)

    @classmethod
    def from_settings(
        cls,
        settings: AgentSettings,
        *,
        environment: Mapping[str, str] | None = None,
        capabilities: CaddyCapabilities | None = None,
    ) -> Node:
        from hecate_agent.runtime.wiring import build_node

        return build_node(settings, environment=environment, capabilities=capabilities)

    @property
    def caddy_settings(self) -> CaddySettings:
        c = self.settings.caddy
        authentik = self.settings.authentik
        return CaddySettings(
            server=c.server,
            http_listen=tuple(c.http_listen),
            https_listen=tuple(c.https_listen),
            outpost_url=authentik.outpost_url if authentik is not None else None,
        )

    @property
    def nginx_enabled(self) -> bool:
        return any(t.name == "nginx" for t in self.targets)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def close(self) -> None:
        for target in self.targets:
            target.close()
