"""The DNS target (order 10): each route's domain points at the fleet, through the provider's API.

Over `hecate_agent.dns.target.DnsTarget` (provider, ownership labels, plan,
apply with undo, propagation wait). The provider and its API token come from
the revision (`global.dns` in config.yaml), so the engine binds the target to
each revision before reading (`bind`, engine/fleetwide.py); the token is resolved by the
node's secrets (environment, Vault) and lives only inside the provider.

- State: `{"zones", "rrsets"}`: every RRSet this fleet owns, and the ones that
  are not ours at the names the routes need (shown as unmanaged, never touched).
  Resources are keyed `DnsRecord/<fqdn>/<type>` (type, values, TTL).
- A record at a needed name that is not ours is a conflict: the plan stops with
  the record and how to resolve it (`global.dns.adopt`, or remove it).
- Apply: replacements, creates and updates, then (with `sync.waitForDNS`) the
  wait until every authoritative server answers; a timeout undoes them and the
  engine rolls back. Records of removed routes (policy `sync`) are deleted in
  `retire`, after Caddy stopped serving the route and before verification; a
  failure there rolls every target back (engine/fleetwide.py).
- One node writes for the fleet (`FleetRole("dns")`): the holder of
  `<prefix>/leaders/dns` with Consul, else the node with `dns.manage: true`. Any
  other node only waits, bounded by `sync.dnsTimeout`, until the records its
  routes need exist.
- Plans show each record (`DnsRecord/<fqdn>/<type>`) with its type, values and
  TTL on create and delete too (`plan_whole`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hecate_agent.dns.desired import DesiredRRSet, DnsRoute, RecordTarget, desired_rrsets, is_owned
from hecate_agent.dns.plan import Change, DnsChangeSet, LiveDns, LiveRRSet
from hecate_agent.dns.provider import DnsError, DnsProvider
from hecate_agent.dns.target import DnsSnapshot, DnsTarget
from hecate_agent.engine.errors import ApplyError
from hecate_agent.engine.fleetwide import FleetRole
from hecate_agent.engine.ports import TargetLive
from hecate_agent.errors import HecateError
from hecate_agent.secrets import Reference, SecretError, SecretResolver
from hecate_agent.spec.templates import template_references

if TYPE_CHECKING:
    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.settings import DnsNodeSettings, SyncSettings
    from hecate_agent.store.state import Snapshot

ORDER = 10
TOKEN_FIELD = "global.dns.apiToken"
ProviderFactory = Callable[[str, str], DnsProvider]  # (endpoint, token) -> provider


class DnsTargetError(HecateError):
    """The provider cannot be read or refuses (like an unreachable Caddy: nothing applied, retried)."""


@dataclass(frozen=True)
class DnsConfig:
    """What one revision asks of DNS (`global.dns` and the route domains); the token as its reference."""

    token: str
    ttl: int
    target: RecordTarget
    policy: str
    adopt: bool
    wait: bool
    routes: tuple[DnsRoute, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "ttl": self.ttl,
            "target": {"addresses": list(self.target.addresses), "cname": self.target.cname},
            "policy": self.policy,
            "adopt": self.adopt,
            "wait": self.wait,
            "routes": [[r.route, r.domain] for r in self.routes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DnsConfig:
        target = data["target"]
        return cls(
            str(data["token"]),
            int(data["ttl"]),
            RecordTarget(tuple(target["addresses"]), target["cname"]),
            str(data["policy"]),
            bool(data["adopt"]),
            bool(data["wait"]),
            tuple(DnsRoute(r, d) for r, d in data["routes"]),
        )


def dns_config(specs: Mapping[str, Any], node: DnsNodeSettings, sync: SyncSettings) -> DnsConfig | None:
    """The revision's DNS settings (None: it manages no records)."""
    config = specs.get("Config/global") or {}
    dns = config.get("dns") or {}
    if not dns.get("provider") or not dns.get("apiToken"):
        return None
    wanted = dns.get("target") or {}
    if node.public_addresses:
        target = RecordTarget(tuple(node.public_addresses))
    else:
        target = RecordTarget(tuple(wanted.get("addresses") or ()), wanted.get("cname"))
    issuer = (config.get("certificates") or {}).get("provider", "letsencrypt")
    routes = tuple(
        DnsRoute(key.split("/", 1)[1], str(doc["spec"]["domain"]))
        for key, doc in sorted(specs.items())
        if key.startswith("Route/")
    )
    return DnsConfig(
        token=str(dns["apiToken"]),
        ttl=int(dns.get("defaultTTL", 300)),
        target=target,
        policy=str(dns.get("policy", "upsert-only")),
        adopt=bool(dns.get("adopt", False)),
        wait=sync.wait_for_dns if sync.wait_for_dns is not None else issuer == "letsencrypt",
        routes=routes,
    )


def rrset_of(data: Mapping[str, Any]) -> LiveRRSet:
    d = DesiredRRSet.from_dict(data)
    return LiveRRSet(d.zone, d.name, d.type, d.ttl, d.values, dict(d.labels))


def dns_resources(state: Mapping[str, Any] | None, owner: str) -> tuple[dict[str, Any], list[str]]:
    """Our RRSets keyed `DnsRecord/<fqdn>/<type>`, and the others at the routes' names (left alone)."""
    resources: dict[str, Any] = {}
    unmanaged: list[str] = []
    for data in (state or {}).get("rrsets", ()):
        rrset = rrset_of(data)
        value = {"type": rrset.type, "values": list(rrset.normalized()), "ttl": rrset.ttl}
        if is_owned(rrset.labels, owner):
            resources[f"DnsRecord/{rrset.fqdn}/{rrset.type}"] = value
        else:
            shown = ",".join(rrset.normalized())
            unmanaged.append(f"DNS record {rrset.type} {rrset.fqdn} {shown} (not created by this fleet)")
    return dict(sorted(resources.items())), unmanaged


def after_removals(changes: Iterable[Change]) -> tuple[list[Change], list[Change]]:
    """(what applies before the proxies, the deletions that follow them): a delete at a name that also
    gets a new record is a replacement and goes first; any other delete is a removed route's."""
    changes = list(changes)
    written = {(c.zone, c.name) for c in changes if c.action != "delete"}
    now = [c for c in changes if c.action != "delete" or (c.zone, c.name) in written]
    return now, [c for c in changes if c not in now]


def resolve_token(resolver: SecretResolver, reference: str) -> str:
    """The API token behind its reference (environment or Vault); registered for redaction by the resolver."""
    names = template_references(reference)
    if len(names) != 1:
        raise DnsTargetError(f"{TOKEN_FIELD}: expected one ${{ENV_VAR}} or ${{vault:path#key}} reference")
    try:
        values = resolver.resolve_references([Reference(names[0], TOKEN_FIELD)]).values
    except SecretError as exc:
        raise DnsTargetError(str(exc)) from None
    if names[0] not in values:
        raise DnsTargetError(
            f"{TOKEN_FIELD} references ${{{names[0]}}}, which is not set in the agent's environment; set it "
            "(e.g. in the systemd unit's EnvironmentFile) or use a ${vault:path#key} reference"
        )
    return values[names[0]]


class DnsEngineTarget:
    """DNS records through a provider's API (Hetzner's by default)."""

    name = "dns"
    order = ORDER
    plan_whole = True  # small records: plans show type, values and TTL on create and delete

    def __init__(
        self,
        settings: DnsNodeSettings,
        sync: SyncSettings,
        resolver: SecretResolver,
        *,
        role: FleetRole,
        provider_factory: ProviderFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.sync = sync
        self.resolver = resolver
        self.role = role
        self.provider_factory = provider_factory or _hetzner
        self.sleep = sleep
        self.config: DnsConfig | None = None
        self._core: DnsTarget | None = None
        self._core_key: tuple[str, str, str, bool] | None = None
        self._owned_seen: int | None = None
        self._health: dict[str, Any] = {"healthy": True, "detail": "not read yet"}

    # --- binding and reading -------------------------------------------------------------------

    def bind(self, rendered: Rendered) -> None:
        self.config = dns_config(rendered.specs, self.settings, self.sync)

    def core(self) -> DnsTarget:
        config = self.config
        assert config is not None
        token = resolve_token(self.resolver, config.token)
        key = (self.settings.api_endpoint, token, config.policy, config.adopt)
        if self._core is None or self._core_key != key:
            if self._core is not None:
                self._core.close()
            provider = self.provider_factory(self.settings.api_endpoint, token)
            self._core = DnsTarget(
                provider,
                owner=self.settings.owner,
                policy=config.policy,
                adopt=config.adopt,
                nameservers=self.settings.nameservers,
            )
            self._core_key = key
        return self._core

    def read(self) -> TargetLive:
        if self.config is None:
            return TargetLive({})
        domains = {r.domain.lower().rstrip(".") for r in self.config.routes}
        try:
            live = self.core().read_live(domains)
        except (DnsError, DnsTargetError) as exc:
            message = str(exc) if isinstance(exc, DnsTargetError) else f"cannot read the records at the provider: {exc}"
            self._health = {"healthy": False, "detail": message.removeprefix("dns: ")}
            raise DnsTargetError(f"dns: {self._health['detail']}") from None
        kept = [r for r in live.rrsets if is_owned(r.labels, self.settings.owner) or r.fqdn in domains]
        self._owned_seen = sum(1 for r in kept if is_owned(r.labels, self.settings.owner))
        self._health = {"healthy": True, "detail": f"the provider answers (owner id {self.settings.owner})"}
        return TargetLive({"zones": list(live.zones), "rrsets": [r.as_desired().to_dict() for r in kept]})

    # --- planning (pure) -------------------------------------------------------------------------

    def changes(self, live: Mapping[str, Any]) -> DnsChangeSet:
        config = self.config
        assert config is not None
        zones = tuple(live.get("zones", ()))
        desired = desired_rrsets(config.routes, config.target, zones, ttl=config.ttl, owner=self.settings.owner)
        rrsets = tuple(rrset_of(r) for r in live.get("rrsets", ()))
        return self.core().plan(desired, LiveDns(zones, rrsets))

    def desired(self, rendered: Rendered, live: Any) -> Any:
        del rendered  # bound before the read
        if self.config is None or not live:
            return {}
        changes = self.changes(live)
        if changes.conflicts or changes.problems:
            raise DnsTargetError("dns: nothing is changed: " + "; ".join(changes.conflicts + changes.problems))
        rrsets = {rrset_of(r).ident: r for r in live.get("rrsets", ())}
        for change in changes.changes:
            if change.after is not None:
                rrsets[change.after.ident] = change.after.to_dict()
            else:
                rrsets.pop((change.zone, change.name, change.type), None)
        return {
            "zones": list(live.get("zones", ())),
            "rrsets": [rrsets[k] for k in sorted(rrsets)],
            "changes": [c.to_dict() for c in changes.changes],
        }

    def plan_notes(self, desired: Any) -> list[str]:
        """On a node that would not write (another node leads): that it waits for the writer's records."""
        if not (desired or {}).get("changes") or self.role.would_act():
            return []
        return [f"dns: this node does not write DNS records ({self.role.describe()}); it waits for the writer"]

    def owned(self, state: Any) -> Any:
        """The fleet's own records, in the shape of a state (so `resources` reads it too)."""
        return {"rrsets": sorted(self._owned_rrsets(state), key=lambda r: (r["zone"], r["name"], r["type"]))}

    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]:
        return dns_resources(state, self.settings.owner)

    def _owned_rrsets(self, state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        return [r for r in (state or {}).get("rrsets", ()) if is_owned(r.get("labels"), self.settings.owner)]

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return snapshot.parts.get(self.name) or {}

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        return {"parts": {self.name: {"rrsets": self._owned_rrsets(prepared.desired.get(self.name))}}}

    def preflight(self, prepared: Prepared) -> list[str]:
        del prepared
        return []

    # --- applying --------------------------------------------------------------------------------

    def begin(self, prepared: Prepared) -> dict[str, Any]:
        assert self.config is not None
        changes = [Change.from_dict(c) for c in prepared.desired[self.name].get("changes", ())]
        now, later = after_removals(changes)
        return {
            "config": self.config.to_dict(),
            "readonly": not self.role.acts(),
            "changed": False,
            "before": self._owned_rrsets(prepared.live.state(self.name)),
            "now": [c.to_dict() for c in now],
            "later": [c.to_dict() for c in later],
        }

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        assert self.config is not None
        self._apply(record, save)
        self._owned_seen = len(self._owned_rrsets(prepared.desired.get(self.name)))  # removals follow in retire

    def _apply(self, record: dict[str, Any], save: Callable[[], None]) -> None:
        assert self.config is not None
        now = [Change.from_dict(c) for c in record["now"]]
        timeout = self.sync.dns_timeout.seconds
        if record["readonly"]:
            await_writer(self, now, timeout)
            return
        if not now:
            return  # only removals: they follow the proxies, in retire
        record["changed"] = True
        save()
        try:
            self.core().apply(DnsChangeSet(tuple(now)), wait_timeout=timeout if self.config.wait else None)
        except DnsError as exc:
            raise ApplyError("dns", str(exc)) from None

    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None:
        del live
        if record.get("readonly") or not record.get("changed"):
            return
        if self.config is None:
            self.config = DnsConfig.from_dict(record["config"])  # after a crash: bound from the journal
        before = DnsSnapshot(tuple(DesiredRRSet.from_dict(r) for r in record.get("before", ())))
        try:
            self.core().restore(before)
        except (DnsError, DnsTargetError) as exc:
            raise ApplyError(
                "dns rollback",
                f"{exc}. The records this fleet owned before are in the journal (targets.dns.before); put them "
                "back at the DNS provider",
            ) from None

    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool:
        del snapshot
        if record.get("readonly"):
            return True
        state = live.state
        if not state:
            if self.config is None:
                self.config = DnsConfig.from_dict(record["config"])
            state = self.read().state
        have = {rrset_of(r).ident: rrset_of(r) for r in state.get("rrsets", ())}
        return all(_holds(have, Change.from_dict(c)) for c in record.get("now", ()))

    def finish(self, record: dict[str, Any]) -> None:
        """After a crash with the new records in place: the removals that had not run yet."""
        if self.config is None and not record.get("readonly"):
            self.config = DnsConfig.from_dict(record["config"])
        self._remove(record, lambda: None)

    def retire(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        """The records of removed routes, once the proxies stopped serving them (engine/fleetwide.py);
        a failure rolls every target back, these records included."""
        del prepared
        self._remove(record, save)

    def _remove(self, record: dict[str, Any], save: Callable[[], None]) -> None:
        later = [Change.from_dict(c) for c in record.get("later", ())]
        if record.get("readonly") or not later:
            return
        record["changed"] = True
        save()
        try:
            self.core().apply(DnsChangeSet(tuple(later)))
        except (DnsError, DnsTargetError) as exc:
            raise ApplyError("dns", f"cannot delete the records of removed routes: {exc}") from None

    def commit(self, record: dict[str, Any]) -> None:
        del record  # removals happen in retire

    def component(self) -> dict[str, Any] | None:
        """For the status document: what this node does about DNS, and what it last saw."""
        if self.config is None:
            return None
        return {
            **self._health,  # `hecate-agent status` shows healthy/detail (and the role)
            "provider": "hetzner",
            "policy": self.config.policy,
            "writer": self.role.would_act(),
            "role": self.role.describe(),
            "ownedRecords": self._owned_seen,
            "waitForDNS": self.config.wait,
        }

    def close(self) -> None:
        self.role.release()  # a command's own session and lock end with it; a daemon's lock goes at shutdown
        if self._core is not None:
            self._core.close()
            self._core = None


def await_writer(target: DnsEngineTarget, now: list[Change], timeout: float) -> None:
    """A node that does not write DNS waits (bounded) until the writer made what its routes need."""
    deadline = time.monotonic() + timeout
    missing: list[str] = [c.describe() for c in now]
    delay = 0.5
    while missing:
        try:
            live = target.read().state
        except DnsTargetError as exc:
            raise ApplyError("dns", str(exc)) from None
        have = {rrset_of(r).ident: rrset_of(r) for r in live.get("rrsets", ())}
        missing = [c.describe() for c in now if not _holds(have, c)]
        remaining = deadline - time.monotonic()
        if not missing or remaining <= 0:
            break
        target.sleep(min(delay, remaining))
        delay = min(delay * 2, 10.0)
    if missing:
        raise ApplyError(
            "dns",
            f"this node does not write DNS records ({target.role.describe()}) and after "
            f"{timeout:g}s (sync.dnsTimeout) the records its routes need are still missing: "
            + "; ".join(missing)
            + ". Nothing was applied; retried. Check the writing node's status, or set dns.manage: true on "
            "exactly one node of a fleet without Consul",
        )
    if target.config is not None and target.config.wait and now:
        try:
            target.core().wait_propagated(now, max(1.0, deadline - time.monotonic()))
        except DnsError as exc:
            raise ApplyError("dns", str(exc)) from None


def _holds(have: Mapping[tuple[str, str, str], LiveRRSet], change: Change) -> bool:
    current = have.get((change.zone, change.name, change.type))
    if change.after is None:
        return current is None
    return current is not None and current.normalized() == change.after.values and current.ttl == change.after.ttl


def _hetzner(endpoint: str, token: str) -> DnsProvider:
    from hecate_agent.dns.hetzner import HetznerProvider  # hcloud is imported only on nodes that manage DNS

    return HetznerProvider(token, endpoint=endpoint)
