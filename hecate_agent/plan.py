"""Plans: what applying a revision would change on this node, resource by resource. Pure.

Three views meet here:
- desired: what the revision renders to (and its specs),
- last applied: the last-known-good record (what the agent last put in place),
- live: what Caddy runs and what Nginx's stream directory holds now.

Desired vs live decides the action (create / update / delete / unchanged).
Desired vs last applied, at the spec level, explains it in the author's terms
(`spec.upstreams[1].dial: a:3000 → b:3000`). Live vs last applied is drift:
someone changed the proxy behind the agent's back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hecate_agent.redaction import MASK, SENSITIVE_CHANGE, contains_secret

PLAN_FORMAT_VERSION = 1
ACTIONS = ("create", "update", "delete", "unchanged")


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ResourceChange:
    kind: str
    name: str
    action: str
    fields: tuple[FieldChange, ...] = ()
    drift: tuple[FieldChange, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "fields": [f.to_dict() for f in self.fields],
            "drift": [f.to_dict() for f in self.drift],
        }


@dataclass(frozen=True)
class Plan:
    revision: str
    last_applied: str | None
    desired_fingerprint: str
    live_fingerprint: str
    changes: tuple[ResourceChange, ...]
    unmanaged: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    offline: bool = False

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    @property
    def drifted(self) -> list[ResourceChange]:
        return [c for c in self.changes if c.drift]

    def summary(self) -> dict[str, int]:
        counts = {action: self.count(action) for action in ACTIONS}
        counts["drift"] = len(self.drifted)
        return counts

    def summary_line(self) -> str:
        if not self.has_changes:
            return "No changes. The proxies match the revision." if not self.offline else "No changes."
        s = self.summary()
        line = (
            f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, "
            f"{s['unchanged']} unchanged"
        )
        if s["drift"]:
            line += f"; {s['drift']} drifted"
        return line + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "formatVersion": PLAN_FORMAT_VERSION,
            "revision": self.revision,
            "lastApplied": self.last_applied,
            "desiredFingerprint": self.desired_fingerprint,
            "liveFingerprint": self.live_fingerprint,
            "offline": self.offline,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "unmanaged": list(self.unmanaged),
            "notes": list(self.notes),
        }


def json_diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Leaf-level differences between two JSON values, with `a.b[1].c` paths."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            child = f"{path}.{key}" if path else str(key)
            out += json_diff(before.get(key, _MISSING), after.get(key, _MISSING), child)
        return [c for c in out if not (c.before is _MISSING and c.after is _MISSING)]
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for index in range(max(len(before), len(after))):
            out += json_diff(
                before[index] if index < len(before) else _MISSING,
                after[index] if index < len(after) else _MISSING,
                f"{path}[{index}]",
            )
        return out
    if before == after:
        return []
    return [FieldChange(path, None if before is _MISSING else before, None if after is _MISSING else after)]


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


_MISSING: Any = _Missing()


# --- the plan ------------------------------------------------------------------------------


def _sort_key(key: str) -> tuple[int, str]:
    order = {"Route": 0, "AuthPolicy": 1, "Stream": 2, "TLS": 3, "Server": 4, "Config": 5}
    return (order.get(key.split("/", 1)[0], 9), key)


def _redacted(changes: Iterable[FieldChange], secrets: frozenset[str]) -> tuple[FieldChange, ...]:
    """Changes of fields that hold a secret say only *that* they changed: neither value is shown."""
    if not secrets:
        return tuple(changes)
    return tuple(
        FieldChange(c.path, MASK, SENSITIVE_CHANGE)
        if contains_secret(c.before, secrets) or contains_secret(c.after, secrets)
        else c
        for c in changes
    )


def make_plan(
    *,
    revision: str,
    desired: Mapping[str, Any],
    desired_specs: Mapping[str, Any],
    live: Mapping[str, Any],
    last: Mapping[str, Any] | None,
    last_specs: Mapping[str, Any] | None,
    last_revision: str | None,
    desired_fingerprint: str,
    live_fingerprint: str,
    unmanaged: Iterable[str] = (),
    secrets: frozenset[str] = frozenset(),
    notes: Iterable[str] = (),
    whole: frozenset[str] = frozenset(),
    explain: bool = True,
) -> Plan:
    """Compare rendered resources (desired vs live), explain with specs (desired vs last), flag drift.

    Resources in `whole` (small ones: Authentik's objects, DNS records) show every field on create and
    delete too. Without `explain`, other updates carry no field-level changes (the daemon's plans: only
    their actions, drift and summary are used, and explaining 10,000 changed routes costs ~1 s)."""
    keys = set(desired) | set(live) | {k for k in desired_specs if not k.startswith("Config/")}
    changes = []
    for key in sorted(keys, key=_sort_key):
        kind, name = key.split("/", 1)
        want, have = desired.get(key), live.get(key)
        if want is have and want is not None and (last is None or last.get(key) is have):
            changes.append(ResourceChange(kind, name, "unchanged"))  # the same object: equal, no drift
            continue
        if want == have:
            action = "unchanged"
        elif have is None or have == {}:
            action = "create" if want not in (None, {}) else "unchanged"
        elif want is None or want == {}:
            action = "delete"
        else:
            action = "update"
        fields: list[FieldChange] = []
        if key in whole and action in ("create", "delete"):
            fields = json_diff(have or {}, want or {})
        if action == "update" and (explain or key in whole):
            if last_specs is not None and key in last_specs and key in desired_specs:
                fields = json_diff(last_specs[key], desired_specs[key])
            if not fields:
                fields = json_diff(have, want)
            elif secrets:
                # The spec diff explains the change, but a secret may have changed with it (a rotation
                # alongside an edit): say so, without either value.
                fields += [
                    c
                    for c in json_diff(have, want)
                    if contains_secret(c.before, secrets) or contains_secret(c.after, secrets)
                ]
        drift: list[FieldChange] = []
        if last is not None and _drifted(last.get(key), have):
            drift = json_diff(last.get(key), have)
        changes.append(ResourceChange(kind, name, action, _redacted(fields, secrets), _redacted(drift, secrets)))
    config_fields: list[FieldChange] = []
    if last_specs is not None and "Config/global" in last_specs and "Config/global" in desired_specs:
        config_fields = json_diff(last_specs["Config/global"], desired_specs["Config/global"])
    notes = list(notes)
    if config_fields:
        notes.append("config.yaml changed: " + ", ".join(f.path for f in config_fields))
    return Plan(
        revision=revision,
        last_applied=last_revision,
        desired_fingerprint=desired_fingerprint,
        live_fingerprint=live_fingerprint,
        changes=tuple(changes),
        unmanaged=tuple(unmanaged),
        notes=tuple(notes),
    )


def _drifted(last: Any, live: Any) -> bool:
    """Live differs from what the agent last put in place (absent and empty are the same)."""
    return bool(last != live and not (last in (None, {}) and live in (None, {})))


def drifted_resources(last: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """The keys whose live resource drifted from the last applied one: the one definition of drift."""
    return sorted(k for k in set(last) | set(live) if _drifted(last.get(k), live.get(k)))


def offline_plan(
    revision: str, base_revision: str, desired_specs: Mapping[str, Any], base_specs: Mapping[str, Any]
) -> Plan:
    """Spec-level diff of two revisions, no proxies involved (what a pull request's CI shows)."""
    changes = []
    for key in sorted(set(desired_specs) | set(base_specs), key=_sort_key):
        kind, name = key.split("/", 1)
        want, have = desired_specs.get(key), base_specs.get(key)
        fields: list[FieldChange]
        if want == have:
            action, fields = "unchanged", []
        elif have is None:
            action, fields = "create", []
        elif want is None:
            action, fields = "delete", []
        else:
            action, fields = "update", json_diff(have, want)
        changes.append(ResourceChange(kind, name, action, tuple(fields)))
    return Plan(revision, base_revision, "", "", tuple(changes), offline=True)
