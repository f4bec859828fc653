"""Desired RRSets against live ones: the change set (pure).

Ownership follows external-dns: only RRSets carrying our labels
(`managed-by=hecate` and this fleet's `hecate-owner`) are ever updated or
deleted. An RRSet at a desired name and type that is not ours — or a CNAME
where we want A/AAAA, or the other way round — is a conflict: it is reported
and nothing is changed for that name (unless `adopt` is set, which takes over
an unowned RRSet of the same type by putting our labels on it). Policies:
`upsert-only` (the default) never deletes a record whose route is gone, it
lists it as kept; `sync` deletes it. Our own record at a name whose type
changes (addresses to CNAME) is replaced under either policy, since the route
still exists. The API token is not an input here, so it cannot reach a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hecate_agent import redaction
from hecate_agent.dns.desired import (
    MANAGED_BY,
    MANAGER,
    OWNER_LABEL,
    DesiredDns,
    DesiredRRSet,
    fqdn,
    is_owned,
    normalize_value,
)

Action = Literal["create", "update", "delete"]
POLICIES = ("upsert-only", "sync")


@dataclass(frozen=True)
class LiveRRSet:
    zone: str
    name: str
    type: str
    ttl: int | None
    values: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.zone, self.name, self.type)

    @property
    def fqdn(self) -> str:
        return fqdn(self.name, self.zone)

    @property
    def key(self) -> str:
        return f"RRSet/{self.fqdn}/{self.type}"

    def normalized(self) -> tuple[str, ...]:
        return tuple(sorted({normalize_value(self.type, v) for v in self.values}))

    def as_desired(self) -> DesiredRRSet:
        """This RRSet as something to put back (snapshots, rollback)."""
        return DesiredRRSet(self.zone, self.name, self.type, self.ttl, self.normalized(), dict(self.labels))


@dataclass(frozen=True)
class LiveDns:
    """What the provider returned: the zones of the account and the RRSets read from them."""

    zones: tuple[str, ...] = ()
    rrsets: tuple[LiveRRSet, ...] = ()


@dataclass(frozen=True)
class Change:
    action: Action
    zone: str
    name: str
    type: str
    before: LiveRRSet | None = None
    after: DesiredRRSet | None = None
    reason: str = ""

    @property
    def fqdn(self) -> str:
        return fqdn(self.name, self.zone)

    @property
    def key(self) -> str:
        return f"RRSet/{self.fqdn}/{self.type}"

    def describe(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        head = f"{sign} dns {self.type} {self.fqdn}"
        if self.action == "create" and self.after is not None:
            text = f"{head} {_values(self.after.values)} ttl {self.after.ttl}"
        elif self.action == "delete" and self.before is not None:
            text = f"{head} {_values(self.before.normalized())} ttl {self.before.ttl}"
        else:
            text = f"{head}: " + "; ".join(self.differences())
        return redaction.scrub(f"{text} ({self.reason})" if self.reason else text)

    def differences(self) -> list[str]:
        if self.before is None or self.after is None:
            return []
        out = []
        if self.before.normalized() != self.after.values:
            out.append(f"values {_values(self.before.normalized())} -> {_values(self.after.values)}")
        if self.before.ttl != self.after.ttl:
            out.append(f"ttl {self.before.ttl} -> {self.after.ttl}")
        if dict(self.before.labels) != dict(self.after.labels):
            out.append(f"labels {_labels(self.before.labels)} -> {_labels(self.after.labels)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "key": self.key,
            "zone": self.zone,
            "name": self.name,
            "type": self.type,
            "before": None if self.before is None else self.before.as_desired().to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        before = data.get("before")
        after = data.get("after")
        live = None
        if before is not None:
            b = DesiredRRSet.from_dict(before)
            live = LiveRRSet(b.zone, b.name, b.type, b.ttl, b.values, dict(b.labels))
        return cls(
            data["action"],
            str(data["zone"]),
            str(data["name"]),
            str(data["type"]),
            live,
            None if after is None else DesiredRRSet.from_dict(after),
            str(data.get("reason", "")),
        )


@dataclass(frozen=True)
class DnsChangeSet:
    changes: tuple[Change, ...] = ()
    conflicts: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    unmanaged: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # ours, no longer desired, kept by upsert-only
    policy: str = "upsert-only"

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        out = [change.describe() for change in self.changes]
        out += [f"! dns conflict: {c}" for c in self.conflicts]
        out += [f"! dns: {p}" for p in self.problems]
        out += [f"  dns kept ({self.policy}; policy sync would delete it): {k}" for k in self.kept]
        out += [f"  dns unmanaged (left alone): {u}" for u in self.unmanaged]
        return [redaction.scrub(line) for line in out]

    def to_dict(self) -> dict[str, Any]:
        scrubbed: dict[str, Any] = redaction.scrub_value(
            {
                "policy": self.policy,
                "changes": [c.to_dict() for c in self.changes],
                "conflicts": list(self.conflicts),
                "problems": list(self.problems),
                "unmanaged": list(self.unmanaged),
                "kept": list(self.kept),
            }
        )
        return scrubbed


def _values(values: Iterable[str]) -> str:
    return ",".join(values) or "(none)"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


def _whose(rrset: LiveRRSet) -> str:
    labels = rrset.labels or {}
    if labels.get(MANAGED_BY) == MANAGER:
        return f"it belongs to hecate owner {labels.get(OWNER_LABEL, '(none)')!r}, not this fleet"
    return "it has no hecate ownership labels"


def _show(rrset: LiveRRSet) -> str:
    return f"{rrset.type} {rrset.fqdn} {_values(rrset.normalized())} ttl {rrset.ttl} labels {_labels(rrset.labels)}"


def resources(rrsets: Iterable[DesiredRRSet | LiveRRSet]) -> dict[str, dict[str, Any]]:
    """Keyed resources (`RRSet/<fqdn>/<type>` -> value) for plan, drift and status."""
    out: dict[str, dict[str, Any]] = {}
    for rrset in rrsets:
        value = rrset.as_desired() if isinstance(rrset, LiveRRSet) else rrset
        out[value.key] = {"ttl": value.ttl, "values": list(value.values), "labels": dict(sorted(value.labels.items()))}
    return dict(sorted(out.items()))


def plan(
    desired: DesiredDns | Sequence[DesiredRRSet],
    live: LiveDns,
    *,
    owner: str,
    policy: str = "upsert-only",
    adopt: bool = False,
) -> DnsChangeSet:
    """Replacements first, then creates and updates, then deletes of records whose route is gone (pure)."""
    wanted = list(desired.rrsets) if isinstance(desired, DesiredDns) else list(desired)
    problems = list(desired.problems) if isinstance(desired, DesiredDns) else []
    if policy not in POLICIES:
        problems.append(f"global.dns.policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
        policy = "upsert-only"
    by_ident = {r.ident: r for r in live.rrsets}
    by_name: dict[tuple[str, str], list[LiveRRSet]] = {}
    for rrset in live.rrsets:
        by_name.setdefault((rrset.zone, rrset.name), []).append(rrset)
    replaced: list[Change] = []
    main: list[Change] = []
    conflicts: list[str] = []
    handled: set[tuple[str, str, str]] = set()
    for want in sorted(wanted, key=lambda d: d.ident):
        here = by_name.get((want.zone, want.name), [])
        clash = [r for r in here if r.type != want.type and "CNAME" in (r.type, want.type)]
        foreign = [r for r in clash if not is_owned(r.labels, owner)]
        if foreign:
            other = foreign[0]
            conflicts.append(
                f"{want.type} {want.fqdn} (route {want.route}): {_show(other)} exists and {_whose(other)}; "
                f"a CNAME cannot share its name with other records, so nothing is changed for {want.fqdn}. "
                "Remove that record at the DNS provider"
            )
            continue
        current = by_ident.get(want.ident)
        reason = ""
        if current is not None and not is_owned(current.labels, owner):
            if not adopt:
                conflicts.append(
                    f"{want.type} {want.fqdn} (route {want.route}): {_show(current)} exists and {_whose(current)}; "
                    "nothing is changed for it. Remove it at the DNS provider, or set global.dns.adopt: true to "
                    "take it over"
                )
                continue
            reason = "adopted: global.dns.adopt is set"
        for old in clash:
            why = f"replaced by {want.type}"
            replaced.append(Change("delete", old.zone, old.name, old.type, before=old, reason=why))
            handled.add(old.ident)
        if current is None:
            main.append(Change("create", want.zone, want.name, want.type, after=want, reason=f"route {want.route}"))
            continue
        handled.add(current.ident)
        change = Change("update", want.zone, want.name, want.type, before=current, after=want, reason=reason)
        if change.differences():
            main.append(change)
    wanted_idents = {w.ident for w in wanted}
    stale: list[Change] = []
    kept: list[str] = []
    for rrset in sorted(live.rrsets, key=lambda r: r.ident):
        if rrset.ident in wanted_idents or rrset.ident in handled or not is_owned(rrset.labels, owner):
            continue
        route = (rrset.labels or {}).get("hecate-route", "")
        if policy == "sync":
            why = f"route {route} removed"
            stale.append(Change("delete", rrset.zone, rrset.name, rrset.type, before=rrset, reason=why))
        else:
            kept.append(f"{_show(rrset)} (route {route} removed)")
    wanted_names = {(w.zone, w.name) for w in wanted}
    unmanaged = sorted(
        _show(r)
        for r in live.rrsets
        if (r.zone, r.name) in wanted_names and not is_owned(r.labels, owner) and r.ident not in handled
    )
    return DnsChangeSet(
        tuple(replaced + main + stale), tuple(conflicts), tuple(problems), tuple(unmanaged), tuple(kept), policy
    )
