"""Drift: the live proxies differ from the last-known-good. Reported, and healed where allowed.

The comparison is the plan's own (`plan.drifted_resources` over the targets' keyed
resources), after a cheap equality check of each target's owned part that settles
the common case.
"""

from __future__ import annotations

from hecate_agent.engine.fleetwide import Binding, bind_targets
from hecate_agent.engine.node import Node
from hecate_agent.engine.prepare import prepare_rendered, read_live, resources_of, snapshot_rendered, snapshot_states
from hecate_agent.engine.transaction import apply_prepared
from hecate_agent.plan import drifted_resources
from hecate_agent.store.state import Snapshot


def detect(node: Node, last: Snapshot) -> list[str]:
    """The resources ("Kind/name") whose live form differs from what `last` put in place."""
    if any(isinstance(t, Binding) for t in node.targets):  # compare against what the LKG asked of them
        bind_targets(node.targets, snapshot_rendered(last, node.caddy_settings))
    live = read_live(node)
    now = {t.name: t.owned(live.state(t.name)) for t in node.targets}
    then = {t.name: t.owned(state) for t, state in zip(node.targets, snapshot_states(node, last).values(), strict=True)}
    if now == then:
        return []
    have, _ = resources_of(node, now)
    want, _ = resources_of(node, then)
    return drifted_resources(want, have)


def heal(node: Node, last: Snapshot) -> None:
    """Put the last-known-good back exactly (under the node's lock)."""
    with node.store.lock(wait=60):
        prepared = prepare_rendered(node, snapshot_rendered(last, node.caddy_settings))
        apply_prepared(node, prepared, allow_mass_delete=True, source="self-heal")
