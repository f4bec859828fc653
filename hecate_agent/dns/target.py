"""DNS as a target: read what is live, plan, apply a change set, wait for it, snapshot and restore.

Shaped like the engine's targets and the Authentik one (`read_live`, `plan`,
`apply`, `snapshot`, `restore`). `apply` makes the changes in plan order
(replacements, creates and updates, deletes), waiting for each action, and on
a failure undoes the writes it made, newest first; with `wait_timeout` it then
waits until every authoritative server answers with the new records, and a
timeout undoes the writes too. Conflicts are never applied: they are not
changes. The token lives only inside the provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hecate_agent.dns.desired import DesiredDns, DesiredRRSet, find_zone, owner_selector
from hecate_agent.dns.plan import POLICIES, Change, DnsChangeSet, LiveDns, LiveRRSet
from hecate_agent.dns.plan import plan as plan_changes
from hecate_agent.dns.propagation import Expectation, PropagationTimeoutError, query_name, wait_propagated
from hecate_agent.dns.provider import DnsError, DnsProvider, ZoneInfo


@dataclass(frozen=True)
class DnsSnapshot:
    """The RRSets this fleet owned at one moment (JSON-able, for the journal and the LKG)."""

    rrsets: tuple[DesiredRRSet, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"rrsets": [r.to_dict() for r in self.rrsets]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DnsSnapshot:
        return cls(tuple(DesiredRRSet.from_dict(r) for r in data.get("rrsets", ())))


@dataclass(frozen=True)
class Applied:
    """The changes `apply` made, in order (what `undo` reverses)."""

    changes: tuple[Change, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.changes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Applied:
        return cls(tuple(Change.from_dict(c) for c in data.get("changes", ())))


def _inverse(change: Change) -> Change:
    if change.action == "create":
        assert change.after is not None
        a = change.after
        gone = LiveRRSet(a.zone, a.name, a.type, a.ttl, a.values, dict(a.labels))
        return Change("delete", change.zone, change.name, change.type, before=gone, reason="undo")
    if change.action == "delete":
        assert change.before is not None
        return Change("create", change.zone, change.name, change.type, after=change.before.as_desired(), reason="undo")
    assert change.before is not None and change.after is not None
    a = change.after
    now = LiveRRSet(a.zone, a.name, a.type, a.ttl, a.values, dict(a.labels))
    return Change("update", change.zone, change.name, change.type, now, change.before.as_desired(), "undo")


class DnsTarget:
    name = "dns"

    def __init__(
        self,
        provider: DnsProvider,
        *,
        owner: str,
        policy: str = "upsert-only",
        adopt: bool = False,
        nameservers: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise DnsError(f"global.dns.policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
        self.provider = provider
        self.owner = owner
        self.policy = policy
        self.adopt = adopt
        self._nameservers = {k: tuple(v) for k, v in (nameservers or {}).items()}  # zone -> servers (override)
        self._zones: dict[str, ZoneInfo] = {}

    def __repr__(self) -> str:
        return f"DnsTarget(provider={self.provider!r}, owner={self.owner!r}, policy={self.policy!r})"

    # --- reading ----------------------------------------------------------------------------

    def zones(self) -> list[ZoneInfo]:
        found = self.provider.zones()
        self._zones = {z.name: z for z in found}
        return found

    def read_live(self, domains: Iterable[str] = ()) -> LiveDns:
        """All zones; every RRSet of the zones holding `domains`; our own RRSets in every other zone."""
        zones = self.zones()
        names = [z.name for z in zones]
        scope = {find_zone(d, names) for d in domains} - {None}
        rrsets: list[LiveRRSet] = []
        for zone in sorted(names):
            selector = None if zone in scope else owner_selector(self.owner)
            rrsets.extend(self.provider.rrsets(zone, selector))
        return LiveDns(tuple(sorted(names)), tuple(sorted(rrsets, key=lambda r: r.ident)))

    def plan(self, desired: DesiredDns | Sequence[DesiredRRSet], live: LiveDns) -> DnsChangeSet:
        return plan_changes(desired, live, owner=self.owner, policy=self.policy, adopt=self.adopt)

    # --- writing ----------------------------------------------------------------------------

    def apply(self, changes: DnsChangeSet, *, wait_timeout: float | None = None) -> Applied:
        """Make the changes (and wait for them); on any failure undo what was written and raise DnsError."""
        if changes.problems:
            raise DnsError("dns: nothing applied: " + "; ".join(changes.problems))
        done: list[Change] = []
        try:
            for change in changes.changes:
                if change.action == "update":
                    # An update is several calls (labels, records, TTL): if a later one fails, the earlier ones
                    # stand, so it is undone too. Its inverse only sets the fields back, which is harmless twice.
                    done.append(change)
                    self._one(change)
                else:
                    self._one(change)
                    done.append(change)
            if wait_timeout is not None and done:
                self.wait_propagated(done, wait_timeout)
        except DnsError as error:
            what = "waiting" if isinstance(error, PropagationTimeoutError) else "the changes"
            self._rollback(Applied(tuple(done)), error, what)
        return Applied(tuple(done))

    def _rollback(self, applied: Applied, error: DnsError, what: str) -> None:
        if not applied.changes:
            raise DnsError(f"{error}; nothing had been changed") from None
        try:
            self.undo(applied)
        except DnsError as again:
            raise DnsError(f"{error}; undoing the DNS changes also failed, DNS is half-changed: {again}") from None
        count = len(applied.changes)
        raise DnsError(f"{error}; the {count} DNS change(s) made before {what} failed were undone") from None

    def undo(self, applied: Applied) -> None:
        """Reverse the changes, newest first (after a failure, a timeout, or another target's failure)."""
        for change in reversed(applied.changes):
            self._one(_inverse(change))

    def _one(self, change: Change) -> None:
        provider = self.provider
        if change.action == "create":
            assert change.after is not None
            provider.wait(provider.create(change.after))
        elif change.action == "update":
            assert change.before is not None and change.after is not None
            provider.wait(provider.update(change.before, change.after))
        else:
            assert change.before is not None
            provider.wait(provider.delete(change.before))

    def snapshot(self) -> DnsSnapshot:
        owned: list[LiveRRSet] = []
        for zone in sorted(z.name for z in self.zones()):
            owned.extend(self.provider.rrsets(zone, owner_selector(self.owner)))
        return DnsSnapshot(tuple(r.as_desired() for r in sorted(owned, key=lambda r: r.ident)))

    def restore(self, snapshot: DnsSnapshot) -> None:
        """Bring our RRSets back to the snapshot; records that are not ours are never touched."""
        live = self.read_live(r.fqdn for r in snapshot.rrsets)
        changes = plan_changes(list(snapshot.rrsets), live, owner=self.owner, policy="sync", adopt=False)
        if changes.conflicts or changes.problems:
            raise DnsError("dns: cannot restore: " + "; ".join(changes.conflicts + changes.problems))
        for change in changes.changes:
            self._one(change)

    # --- waiting ----------------------------------------------------------------------------

    def servers(self, zone: str) -> tuple[str, ...]:
        if zone in self._nameservers:
            return self._nameservers[zone]
        if zone not in self._zones:
            self.zones()
        info = self._zones.get(zone)
        return info.nameservers if info is not None else ()

    def wait_propagated(self, changes: Iterable[Change], timeout: float, *, deletions: bool = False) -> None:
        """Until every authoritative server of each zone answers with the new records (and, optionally,
        no longer with deleted ones); PropagationTimeoutError names what is missing where."""
        pending: list[tuple[Expectation, Sequence[str]]] = []
        for change in changes:
            shown = f"{change.type} {change.fqdn}"
            qname = query_name(change.fqdn)
            if change.after is not None:
                after = change.after
                expect = Expectation(shown, qname, change.type, frozenset(after.values), after.ttl)
            elif deletions:
                expect = Expectation(shown, qname, change.type, absent=True)
            else:
                continue
            pending.append((expect, self.servers(change.zone)))
        if pending:
            wait_propagated(pending, timeout)

    def close(self) -> None:
        self.provider.close()
