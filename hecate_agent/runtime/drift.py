"""Drift: the live proxies differ from the last-known-good. Reported, and healed where allowed.

The comparison is the plan's own (`plan.drifted_resources` over the same keyed
resources), after a cheap fingerprint check that settles the common case.
"""

from __future__ import annotations

from hecate_agent.engine.transaction import (
    Node,
    apply_prepared,
    owned_part,
    prepare_rendered,
    read_live,
    resources_of,
    snapshot_rendered,
)
from hecate_agent.plan import drifted_resources
from hecate_agent.render.bundle import fingerprint
from hecate_agent.store.state import Snapshot


def detect(node: Node, last: Snapshot) -> list[str]:
    """The resources ("Kind/name") whose live form differs from what `last` put in place."""
    live = read_live(node)
    settings = node.caddy_settings
    if fingerprint(owned_part(live.caddy.config, settings), live.nginx_files) == fingerprint(
        owned_part(last.caddy_config, settings), last.nginx_files
    ):
        return []
    have, _ = resources_of(live.caddy.config, live.nginx_files, settings.server)
    want, _ = resources_of(last.caddy_config, last.nginx_files, settings.server)
    return drifted_resources(want, have)


def heal(node: Node, last: Snapshot) -> None:
    """Put the last-known-good back exactly (under the node's lock)."""
    with node.store.lock(wait=60):
        prepared = prepare_rendered(node, snapshot_rendered(last, node.caddy_settings))
        apply_prepared(node, prepared, allow_mass_delete=True, source="self-heal")
