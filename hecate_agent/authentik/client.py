"""Authentik as a target: read what is live, plan, apply a change set, snapshot and restore.

Shaped like the engine's targets (`read_live`, `plan`, `apply`, `snapshot`,
`restore`). Writes go in dependency order (flows and stages, policies, the
provider, the application, bindings, then the outpost's provider list by
read-modify-write touching only our entries); deletes go in reverse. `apply`
takes a snapshot first and restores it when a write fails, so a failure leaves
Authentik as it was (or says plainly that the rollback failed too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hecate_agent import redaction
from hecate_agent.authentik import api
from hecate_agent.authentik.api import AuthentikError
from hecate_agent.authentik.desired import EMBEDDED_OUTPOST, DesiredObject, Ref, canonical, make, uncanonical
from hecate_agent.authentik.plan import Change, ChangeSet, LiveObject, LiveState, owned
from hecate_agent.authentik.plan import plan as plan_changes

_STAGE_KINDS = ("validate_stage", "login_stage")


@dataclass(frozen=True)
class Snapshot:
    """The objects we owned at one moment (as desired objects) and the outpost's provider list then."""

    objects: tuple[DesiredObject, ...]
    outpost_providers: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": [{"kind": o.kind, "key": o.key, "fields": canonical(o.fields)} for o in self.objects],
            "outpost_providers": list(self.outpost_providers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        objects = tuple(make(o["kind"], o["key"], uncanonical(o["fields"])) for o in data["objects"])
        return cls(objects, tuple(int(p) for p in data["outpost_providers"]))


class AuthentikTarget:
    name = "authentik"

    def __init__(self, url: str, token: str, *, outpost: str = EMBEDDED_OUTPOST, timeout: float = 10.0) -> None:
        redaction.register([token])
        self.url = url
        self.outpost = outpost
        self._apis = api.Apis.connect(url, token, timeout)

    def __repr__(self) -> str:  # never the token
        return f"AuthentikTarget(url={self.url!r}, outpost={self.outpost!r})"

    # --- reading ----------------------------------------------------------------------------

    def read_live(self) -> LiveState:
        apis = self._apis
        objects: list[LiveObject] = []
        unmanaged: list[str] = []
        names: dict[tuple[str, str], str] = {}  # (kind, pk) -> key, for every object a reference may name
        listed: dict[str, list[Any]] = {}
        for kind in ("flow", "validate_stage", "login_stage", "policy", "provider", "application"):
            listed[kind] = api.list_kind(apis, kind)
            for item in listed[kind]:
                names[(kind, str(item.pk))] = item.slug if kind in ("flow", "application") else item.name
        designations = {f.slug: api.value(f.designation) for f in listed["flow"]}
        for kind, items in listed.items():
            for item in items:
                key = names[(kind, str(item.pk))]
                if owned(kind, key):
                    objects.append(api.live_object(kind, key, item, names))
                elif kind in ("provider", "application"):
                    unmanaged.append(f"{kind}:{key}")
        for flow in (o for o in objects if o.kind == "flow"):
            for binding in api.flow_bindings(apis, str(flow.pk)):
                stage_kind = next((k for k in _STAGE_KINDS if (k, str(binding.stage)) in names), "stage")
                stage = names.get((stage_kind, str(binding.stage)), binding.stage_obj.name)
                key = f"{flow.key}/{stage}"
                if owned("flow_binding", key):
                    fields = {"target": Ref("flow", flow.key), "stage": Ref(stage_kind, stage), "order": binding.order}
                    objects.append(LiveObject("flow_binding", key, str(binding.pk), fields))
                else:
                    unmanaged.append(f"flow_binding:{key}")
        for app in (o for o in objects if o.kind == "application"):
            for binding in api.policy_bindings(apis, str(app.pk)):
                policy = binding.policy_obj.name if binding.policy_obj is not None else None
                if policy is None or not owned("policy_binding", policy):
                    what = policy or (f"group {binding.group_obj.name}" if binding.group_obj else "user")
                    unmanaged.append(f"policy_binding:{app.key}/{what}")
                    continue
                fields = {
                    "target": Ref("application", app.key),
                    "policy": Ref("policy", policy),
                    "order": binding.order,
                    "enabled": binding.enabled,
                    "negate": binding.negate,
                }
                objects.append(LiveObject("policy_binding", f"{app.key}/{policy}", str(binding.pk), fields))
        index: dict[tuple[str, str], str | int] = {
            (kind, key): (int(pk) if kind == "provider" else pk) for (kind, pk), key in names.items()
        }
        outpost = api.find_outpost(apis, self.outpost)
        providers: tuple[int, ...] = tuple(outpost.providers) if outpost is not None else ()
        for pk in providers:
            name = names.get(("provider", str(pk)))
            if name is not None and owned("provider", name):
                fields = {"outpost": self.outpost, "provider": Ref("provider", name)}
                objects.append(LiveObject("outpost_provider", f"{self.outpost}/{name}", pk, fields))
        return LiveState(
            objects=tuple(objects),
            index=index,
            flow_designations=designations,
            unmanaged=tuple(sorted(unmanaged)),
            outpost=self.outpost,
            outpost_pk=str(outpost.pk) if outpost is not None else "",
            outpost_providers=providers,
        )

    def plan(self, desired: Sequence[DesiredObject], live: LiveState) -> ChangeSet:
        return plan_changes(desired, live)

    # --- writing ----------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> None:
        """Make the changes; on failure put back what was there before and raise AuthentikError."""
        if changes.problems:
            raise AuthentikError("authentik: nothing applied: " + "; ".join(changes.problems))
        if changes.empty:
            return
        before = self.snapshot()
        try:
            self._write(changes)
        except AuthentikError as error:
            try:
                self.restore(before)
            except AuthentikError as again:
                raise AuthentikError(f"{error}; rolling back also failed, Authentik is half-changed: {again}") from None
            raise AuthentikError(f"{error}; the changes made before it were rolled back") from None

    def snapshot(self) -> Snapshot:
        live = self.read_live()
        kept = tuple(make(o.kind, o.key, _owned_fields(o)) for o in live.objects)  # type: ignore[arg-type]
        return Snapshot(kept, live.outpost_providers)

    def restore(self, snapshot: Snapshot) -> None:
        """Bring our objects back to the snapshot (recreated ones get new pks); others are not touched."""
        changes = plan_changes(list(snapshot.objects), self.read_live())
        if changes.problems:
            raise AuthentikError("authentik: cannot restore: " + "; ".join(changes.problems))
        self._write(changes)

    def _write(self, changes: ChangeSet) -> None:
        index: dict[tuple[str, str], str | int] = dict(changes.index)
        outpost_pk = _outpost_pk(self, changes)
        for change in changes.changes:
            if change.kind == "outpost_provider":
                self._outpost_member(change, index, outpost_pk)
            elif change.action == "create":
                pk = api.create(self._apis, change.kind, change.key, _resolve(change.fields, index, change))
                index[(change.kind, change.key)] = pk
            elif change.action == "update":
                wanted = {d.name: change.fields[d.name] for d in change.diff if d.name in change.fields}
                assert change.pk is not None
                api.patch(self._apis, change.kind, change.key, change.pk, _resolve(wanted, index, change))
            else:
                assert change.pk is not None
                api.delete(self._apis, change.kind, change.key, change.pk)

    def _outpost_member(self, change: Change, index: Mapping[tuple[str, str], str | int], outpost_pk: str) -> None:
        """Read-modify-write of the outpost's provider list, adding or removing only this entry."""
        current = api.outpost_providers(self._apis, outpost_pk)
        if change.action == "delete":
            updated = [p for p in current if p != change.pk]
        else:
            ref = change.fields["provider"]
            pk = index.get((ref.kind, ref.key))
            if pk is None:
                raise AuthentikError(f"authentik: outpost entry {change.key}: provider {ref.key} does not exist")
            updated = current if int(pk) in current else [*current, int(pk)]
        if updated != current:
            api.set_outpost_providers(self._apis, outpost_pk, updated)


def _outpost_pk(target: AuthentikTarget, changes: ChangeSet) -> str:
    if not any(c.kind == "outpost_provider" for c in changes.changes):
        return ""
    outpost = api.find_outpost(target._apis, target.outpost)
    if outpost is None:
        raise AuthentikError(f"authentik: outpost {target.outpost!r} not found; check authentik.outpost")
    return str(outpost.pk)


def _owned_fields(obj: LiveObject) -> dict[str, Any]:
    return {k: v for k, v in obj.fields.items() if k != "property_mappings"}


def _resolve(fields: Mapping[str, Any], index: Mapping[tuple[str, str], str | int], change: Change) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, item in fields.items():
        if isinstance(item, Ref):
            pk = index.get((item.kind, item.key))
            if pk is None:
                raise AuthentikError(
                    f"authentik: {change.kind} {change.key}: {name} names {item}, which Authentik does not have"
                )
            resolved[name] = pk
        else:
            resolved[name] = item
    return resolved
