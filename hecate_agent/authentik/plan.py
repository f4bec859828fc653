"""Desired Authentik objects against live ones: the change set, field by field (pure).

Only objects whose name/slug carries our prefix are ours to create, update or
delete; everything else the adapter saw is listed as unmanaged and left alone.
Only the fields we own are compared, so what Authentik rewrites on its own (the
default scope mappings it re-adds to a proxy provider, `redirect_uris`) is
never drift. The API token is not an input here, so it cannot reach a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hecate_agent import redaction
from hecate_agent.authentik.desired import KINDS, PREFIX, DesiredObject, Ref, canonical

Action = Literal["create", "update", "delete"]
# Written by Authentik itself (ProxyProviderSerializer -> set_oauth_defaults); never ours, never drift.
SERVER_MANAGED = {"provider": frozenset({"property_mappings", "redirect_uris"})}


@dataclass(frozen=True)
class LiveObject:
    """An object as read from Authentik: pk plus fields with references turned back into `Ref`s."""

    kind: str
    key: str
    pk: str | int
    fields: Mapping[str, Any] = field(hash=False)

    @property
    def ident(self) -> tuple[str, str]:
        return (self.kind, self.key)


@dataclass(frozen=True)
class LiveState:
    """What the adapter read: our objects, the pks of everything a reference may name, the rest."""

    objects: tuple[LiveObject, ...] = ()
    index: Mapping[tuple[str, str], str | int] = field(default_factory=dict, hash=False)  # (kind, key) -> pk
    flow_designations: Mapping[str, str] = field(default_factory=dict, hash=False)  # slug -> designation
    unmanaged: tuple[str, ...] = ()  # "kind:name" of objects that are not ours
    outpost: str = ""  # name of the outpost we attach providers to
    outpost_pk: str = ""
    outpost_providers: tuple[int, ...] = ()  # its full provider list, ours and others

    def get(self, kind: str, key: str) -> LiveObject | None:
        return next((o for o in self.objects if o.kind == kind and o.key == key), None)


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    key: str
    pk: str | int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)  # desired fields (create/update)
    diff: tuple[FieldChange, ...] = ()

    def describe(self) -> list[str]:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        lines = [f"{sign} authentik {self.kind} {self.key}"]
        for change in self.diff:
            lines.append(f"    {change.name}: {_show(change.before)} -> {_show(change.after)}")
        return [redaction.scrub(line) for line in lines]


@dataclass(frozen=True)
class ChangeSet:
    changes: tuple[Change, ...] = ()
    unmanaged: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # references that cannot be resolved: apply refuses
    index: Mapping[tuple[str, str], str | int] = field(default_factory=dict, hash=False)

    @property
    def empty(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for machine-readable plans (references as `{"$ref": "kind:key"}`, secrets scrubbed)."""
        changes = [
            {
                "action": c.action,
                "kind": c.kind,
                "key": c.key,
                "fields": [
                    {"name": d.name, "before": canonical(d.before), "after": canonical(d.after)} for d in c.diff
                ],
            }
            for c in self.changes
        ]
        scrubbed: dict[str, Any] = redaction.scrub_value(
            {"changes": changes, "unmanaged": list(self.unmanaged), "problems": list(self.problems)}
        )
        return scrubbed

    def lines(self) -> list[str]:
        out = [line for change in self.changes for line in change.describe()]
        out += [f"! authentik: {problem}" for problem in self.problems]
        out += [f"  authentik unmanaged (left alone): {name}" for name in self.unmanaged]
        return out


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Ref):
        return str(value)
    text = repr(canonical(value))
    return text if len(text) <= 200 else text[:197] + "..."


def _same(desired: Any, live: Any) -> bool:
    if isinstance(desired, list) and isinstance(live, list | tuple):
        return sorted(map(repr, map(canonical, desired))) == sorted(map(repr, map(canonical, live)))
    return bool(canonical(desired) == canonical(live))


def owned(kind: str, key: str) -> bool:
    """Ours: the object's own name/slug (for bindings: the key's last part) carries the prefix."""
    return key.rsplit("/", 1)[-1].startswith(PREFIX)


def diff_fields(kind: str, desired: Mapping[str, Any], live: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    ignored = SERVER_MANAGED.get(kind, frozenset())
    return tuple(
        FieldChange(name, live.get(name), value)
        for name, value in sorted(desired.items())
        if name not in ignored and not _same(value, live.get(name))
    )


def _references(obj: DesiredObject) -> Iterable[tuple[str, Ref]]:
    for name, value in obj.fields.items():
        if isinstance(value, Ref):
            yield name, value


def _problems(desired: Sequence[DesiredObject], live: LiveState) -> list[str]:
    made = {o.ident for o in desired}
    problems = []
    for obj in desired:
        for name, ref in _references(obj):
            if (ref.kind, ref.key) not in made and (ref.kind, ref.key) not in live.index:
                problems.append(f"{obj.kind} {obj.key}: {name} names {ref}, which Authentik does not have")
            elif name == "authentication_flow" and live.flow_designations.get(ref.key, "authentication") != (
                "authentication"
            ):
                designation = live.flow_designations[ref.key]
                problems.append(
                    f"{obj.kind} {obj.key}: {name} names flow {ref.key!r}, whose designation is {designation!r}; "
                    "an AuthPolicy's flow must be an authentication flow"
                )
    if any(o.kind == "outpost_provider" for o in desired) and not live.outpost_pk:
        problems.append(f"outpost {live.outpost or '(unnamed)'} was not found in Authentik")
    return problems


def plan(desired: Sequence[DesiredObject], live: LiveState) -> ChangeSet:
    """Creates and updates in dependency order, then deletes in reverse order (pure)."""
    wanted = {o.ident: o for o in desired}
    changes: list[Change] = []
    for obj in sorted(desired, key=lambda o: (KINDS.index(o.kind), o.key)):
        current = live.get(obj.kind, obj.key)
        if current is None:
            after = tuple(FieldChange(n, None, v) for n, v in sorted(obj.fields.items()))
            changes.append(Change("create", obj.kind, obj.key, None, obj.fields, after))
            continue
        delta = diff_fields(obj.kind, obj.fields, current.fields)
        if delta:
            changes.append(Change("update", obj.kind, obj.key, current.pk, obj.fields, delta))
    stale = [o for o in live.objects if owned(o.kind, o.key) and o.ident not in wanted]
    for gone in sorted(stale, key=lambda o: (-KINDS.index(o.kind), o.key)):
        before = tuple(FieldChange(n, v, None) for n, v in sorted(gone.fields.items()) if n in _shown(gone.kind))
        changes.append(Change("delete", gone.kind, gone.key, gone.pk, {}, before))
    return ChangeSet(tuple(changes), tuple(sorted(live.unmanaged)), tuple(_problems(desired, live)), live.index)


def _shown(kind: str) -> frozenset[str]:
    return {
        "provider": frozenset({"external_host", "mode"}),
        "application": frozenset({"provider", "meta_publisher"}),
        "flow_binding": frozenset({"order"}),
        "policy_binding": frozenset({"order"}),
    }.get(kind, frozenset())
