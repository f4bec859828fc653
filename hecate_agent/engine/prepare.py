"""Render and plan: a revision against every target's live state and the last-known-good.

Nothing here changes anything. Plan, drift and ownership are computed the same way
for every target: each target keys the part of a state it owns as `Kind/name`
resources, and the pure `plan.make_plan` compares those.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hecate_agent import redaction
from hecate_agent.enforcement import Verdict, node_verdict, tracing_verdict
from hecate_agent.engine.fleetwide import bind_targets, plan_notes
from hecate_agent.engine.node import Node
from hecate_agent.engine.ports import TargetLive
from hecate_agent.engine.verify import Probe, probes_for
from hecate_agent.plan import Plan, make_plan
from hecate_agent.render.bundle import Rendered, render_all
from hecate_agent.render.caddy import TRACING_MODULE, CaddySettings, RenderError
from hecate_agent.spec.loader import DesiredState
from hecate_agent.store.state import Snapshot
from hecate_agent.stream_health import health_notes


@dataclass(frozen=True)
class LiveState:
    """Every target's live state, by target name."""

    targets: dict[str, TargetLive]
    recalled: frozenset[str] = frozenset()  # targets whose state is what they remember applying

    def state(self, name: str) -> Any:
        live = self.targets.get(name)
        return live.state if live is not None else {}

    @property
    def fingerprint(self) -> str:
        """Everything live (not only ours): a saved plan is stale when this changes. A target's
        precondition token (Caddy's ETag: a hash of its whole config) stands for its state."""
        digest = hashlib.sha256()
        for name in sorted(self.targets):
            live = self.targets[name]
            value = f"token {live.token}" if live.token else json.dumps(live.state, sort_keys=True)
            digest.update(name.encode() + b"\0" + value.encode())
        return digest.hexdigest()[:16]


def read_live(node: Node, *, recall: bool = False) -> LiveState:
    """Every target's live state. With `recall` (the daemon planning an apply), a target that remembers
    what it last applied (Caddy: targets/caddy_memory.py) answers from memory; its apply's precondition
    refuses the plan if the live state changed since (engine/reconcile.py then plans from a fresh read)."""
    targets: dict[str, TargetLive] = {}
    recalled: set[str] = set()
    for target in node.targets:
        remembered = getattr(target, "recall", None) if recall else None
        live = remembered() if remembered is not None else None
        if live is not None:
            recalled.add(target.name)
        targets[target.name] = live if live is not None else target.read()
    return LiveState(targets, frozenset(recalled))


@dataclass
class Prepared:
    rendered: Rendered
    live: LiveState
    desired: dict[str, Any]  # by target: the whole state it must hold
    needed: dict[str, bool]  # by target: does its owned part change?
    plan: Plan
    last: Snapshot | None
    secrets: frozenset[str] = frozenset()
    probes: list[Probe] = field(default_factory=list)  # what verification checks after the apply

    @property
    def changes_anything(self) -> bool:
        return any(self.needed.values())


def resources_of(node: Node, states: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every target's resources in `states` (by target name), and what no target owns."""
    resources: dict[str, Any] = {}
    unmanaged: list[str] = []
    for target in node.targets:
        if target.name in states:
            found, foreign = target.resources(states[target.name])
            resources.update(found)
            unmanaged += foreign
    return resources, unmanaged


def snapshot_states(node: Node, snapshot: Snapshot) -> dict[str, Any]:
    return {target.name: target.of_snapshot(snapshot) for target in node.targets}


@contextlib.contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Configs are trees of plain values with no reference cycles. With 10,000 routes the
    cycle collector would rescan the whole growing heap again and again (most of an
    apply's time, measured); reference counting alone frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def node_checks(node: Node, state: DesiredState) -> Verdict:
    """Fail closed on what this node cannot enforce (enforcement.py); notes for the plan."""
    verdict = node_verdict(state, node.settings.authentik, node.settings.dns)
    if state.config.monitoring.tracing.enabled and node.capabilities.has(TRACING_MODULE):
        from hecate_agent.targets.process_env import admin_process_environment

        environment, source = admin_process_environment(node.settings.caddy.admin_url)
        tracing = tracing_verdict(state, environment, source)
        verdict = Verdict(verdict.errors + tracing.errors, verdict.notes + tracing.notes)
    return verdict


def prepare(node: Node, state: DesiredState, revision: str, *, fresh: bool = False) -> Prepared:
    """Render the revision and plan it against the live targets and the last-known-good (with
    `node.plan_from_memory` and not `fresh`: what the targets remember applying, see `read_live`)."""
    with cycle_collector_paused():
        verdict = node_checks(node, state)
        resolution = node.resolver.resolve(state)  # SecretError before anything is rendered or touched
        try:
            rendered = render_all(
                state,
                revision,
                caddy=node.caddy_settings,
                capabilities=node.capabilities,
                environment=resolution.values,
                nginx_enabled=node.nginx_enabled,
                cache=node.render_cache,
                stream_down=node.stream_down,
            )
        except RenderError as exc:
            raise RenderError(verdict.errors + exc.problems) from None
        if verdict.errors:
            raise RenderError(verdict.errors)
        notes = tuple(verdict.notes) + tuple(health_notes(node.stream_down))
        recall = node.plan_from_memory and not fresh
        prepared = _prepare_rendered(node, rendered, resolution.sensitive, notes, recall=recall)
        prepared.probes = probes_for(prepared.plan.changes, state, node.caddy_settings)
        return prepared


def prepare_rendered(node: Node, rendered: Rendered, secrets: frozenset[str] = frozenset()) -> Prepared:
    """Plan an already rendered revision (a new one, or a stored snapshot being rolled back to)."""
    with cycle_collector_paused():
        return _prepare_rendered(node, rendered, secrets)


def _prepare_rendered(
    node: Node, rendered: Rendered, secrets: frozenset[str], notes: tuple[str, ...] = (), *, recall: bool = False
) -> Prepared:
    bind_targets(node.targets, rendered)
    live = read_live(node, recall=recall)
    last = node.store.last_applied()
    if last is not None:
        # The live config may still hold the values of before a rotation: hide those too.
        redaction.register(last.sensitive)
        secrets |= frozenset(last.sensitive)
    secrets |= redaction.known()
    desired_states = {t.name: t.desired(rendered, live.state(t.name)) for t in node.targets}
    needed = {t.name: t.owned(live.state(t.name)) != t.owned(desired_states[t.name]) for t in node.targets}
    desired, _ = resources_of(node, desired_states)
    have, unmanaged = resources_of(node, {name: t.state for name, t in live.targets.items()})
    last_resources = resources_of(node, snapshot_states(node, last))[0] if last else None
    # Targets whose resources are small (`plan_whole = True`) show them field by field on create/delete.
    whole = frozenset(
        key
        for t in node.targets
        if getattr(t, "plan_whole", False)
        for states in (desired_states, {t.name: live.state(t.name)})
        for key in t.resources(states[t.name])[0]
    )
    plan = make_plan(
        revision=rendered.revision,
        desired=desired,
        desired_specs=rendered.specs,
        live=have,
        last=last_resources,
        last_specs=last.specs if last else None,
        last_revision=last.revision if last else None,
        desired_fingerprint=rendered.fingerprint,
        live_fingerprint=live.fingerprint,
        unmanaged=unmanaged,
        secrets=secrets,
        notes=notes + tuple(plan_notes(node.targets, desired_states)),
        whole=whole,
        explain=node.explain_plans,
    )
    return Prepared(rendered, live, desired_states, needed, plan, last, secrets)


def snapshot_rendered(snapshot: Snapshot, settings: CaddySettings) -> Rendered:
    """A stored last-known-good as a Rendered revision, to re-apply it exactly."""
    from hecate_agent.targets.caddy import owned_part
    from hecate_agent.targets.nginx import listener_from

    redaction.register(snapshot.sensitive)
    return Rendered(
        snapshot.revision,
        owned_part(snapshot.caddy_config, settings),
        snapshot.nginx_files,
        tuple(listener_from(x) for x in snapshot.nginx_listeners),
        snapshot.specs,
    )
