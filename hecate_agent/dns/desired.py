"""What DNS must hold for the routes: a pure mapping from routes to RRSets.

Input is one `DnsRoute` per route (its name and domain, wildcards included),
the fleet's `RecordTarget` (the balancer's addresses, or a CNAME host), the
default TTL, the fleet's owner id and the zones the account holds. Output is
one `DesiredRRSet` per (zone, zone-relative name, type), carrying the values,
the TTL and the ownership labels (`managed-by=hecate`, `hecate-owner=<owner>`,
`hecate-route=<route>`) that mark the record as ours. A domain that no zone
holds is a problem naming the domain and the zones seen; nothing is guessed.

Values are kept in the form Hetzner stores them: addresses compressed
(`2001:db8::1`), host names absolute with a trailing dot (`lb.example.net.`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MANAGED_BY = "managed-by"
MANAGER = "hecate"
OWNER_LABEL = "hecate-owner"
ROUTE_LABEL = "hecate-route"
APEX = "@"
# Hetzner's label rules (as Kubernetes'): value up to 63 of [-_.a-zA-Z0-9], alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^([a-zA-Z0-9]([-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)?$")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class DnsRoute:
    """One route that needs DNS: its name and its domain (`app.example.com` or `*.tenants.example.com`)."""

    route: str
    domain: str


@dataclass(frozen=True)
class RecordTarget:
    """Where every route's name points: the balancer's addresses (A/AAAA by family) or one CNAME host."""

    addresses: tuple[str, ...] = ()
    cname: str | None = None


@dataclass(frozen=True)
class DesiredRRSet:
    zone: str
    name: str  # relative to the zone: "app", "*.tenants", "@"
    type: str
    ttl: int | None  # None only when putting back a record that had the zone's default TTL
    values: tuple[str, ...]  # sorted, normalized
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.zone, self.name, self.type)

    @property
    def key(self) -> str:
        """The resource key shared by plan, snapshot and status: `RRSet/<fqdn>/<type>`."""
        return f"RRSet/{fqdn(self.name, self.zone)}/{self.type}"

    @property
    def fqdn(self) -> str:
        return fqdn(self.name, self.zone)

    @property
    def route(self) -> str:
        return self.labels.get(ROUTE_LABEL, "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "name": self.name,
            "type": self.type,
            "ttl": self.ttl,
            "values": list(self.values),
            "labels": dict(sorted(self.labels.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesiredRRSet:
        return cls(
            str(data["zone"]),
            str(data["name"]),
            str(data["type"]),
            None if data.get("ttl") is None else int(data["ttl"]),
            tuple(str(v) for v in data["values"]),
            {str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
        )


@dataclass(frozen=True)
class DesiredDns:
    rrsets: tuple[DesiredRRSet, ...] = ()
    problems: tuple[str, ...] = ()


def fqdn(name: str, zone: str) -> str:
    """The absolute name (no trailing dot) of a zone-relative name."""
    return zone if name == APEX else f"{name}.{zone}"


def find_zone(domain: str, zones: Iterable[str]) -> str | None:
    """The longest zone that is the domain itself or a suffix of it at a label boundary (pure)."""
    host = domain.lower().rstrip(".")
    best: str | None = None
    for zone in zones:
        name = zone.lower().rstrip(".")
        if (host == name or host.endswith("." + name)) and (best is None or len(name) > len(best)):
            best = name
    return best


def relative_name(domain: str, zone: str) -> str:
    host = domain.lower().rstrip(".")
    return APEX if host == zone else host[: -(len(zone) + 1)]


def normalize_value(rtype: str, value: str) -> str:
    """The canonical text of one record value, so desired and live compare directly."""
    if rtype in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(value.strip().strip("[]")).compressed
        except ValueError:
            return value.strip()
    if rtype == "CNAME":
        return value.strip().lower().rstrip(".") + "."
    return value.strip()


def owner_labels(owner: str, route: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, OWNER_LABEL: owner, ROUTE_LABEL: route}


def owner_selector(owner: str) -> str:
    """The label selector that finds this fleet's records."""
    return f"{MANAGED_BY}={MANAGER},{OWNER_LABEL}={owner}"


def is_owned(labels: Mapping[str, str] | None, owner: str) -> bool:
    labels = labels or {}
    return labels.get(MANAGED_BY) == MANAGER and labels.get(OWNER_LABEL) == owner


def _target_problems(target: RecordTarget, ttl: int, owner: str) -> list[str]:
    problems = []
    if bool(target.addresses) == bool(target.cname):
        problems.append(
            "global.dns.target: expected exactly one of addresses (the balancer's IPv4/IPv6 addresses) or cname "
            f"(a host name), got {'both' if target.addresses else 'neither'}"
        )
    for address in target.addresses:
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            problems.append(f"global.dns.target.addresses: {address!r} is not an IPv4 or IPv6 address")
    if target.cname is not None and target.cname:
        labels = target.cname.lower().rstrip(".").split(".")
        if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
            problems.append(f"global.dns.target.cname: {target.cname!r} is not a host name such as lb.example.net")
    if ttl < 1:
        problems.append(f"global.dns.defaultTTL: expected a positive number of seconds, got {ttl}")
    if not owner or not _LABEL_VALUE.match(owner):
        problems.append(
            f"DNS owner id {owner!r}: expected 1-63 letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit (it becomes the hecate-owner label)"
        )
    return problems


def _records(target: RecordTarget) -> dict[str, tuple[str, ...]]:
    if target.cname:
        return {"CNAME": (normalize_value("CNAME", target.cname),)}
    by_type: dict[str, set[str]] = {}
    for address in target.addresses:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            continue
        by_type.setdefault("A" if ip.version == 4 else "AAAA", set()).add(ip.compressed)
    return {rtype: tuple(sorted(values)) for rtype, values in sorted(by_type.items())}


def desired_rrsets(
    routes: Iterable[DnsRoute], target: RecordTarget, zones: Iterable[str], *, ttl: int, owner: str
) -> DesiredDns:
    """Every RRSet the routes need, sorted by key; problems instead of guesses (pure, deterministic)."""
    zone_names = sorted({z.lower().rstrip(".") for z in zones})
    problems = _target_problems(target, ttl, owner)
    if problems:
        return DesiredDns((), tuple(problems))
    records = _records(target)
    out: dict[tuple[str, str, str], DesiredRRSet] = {}
    seen: dict[tuple[str, str, str], str] = {}
    for route in sorted(routes, key=lambda r: (r.domain, r.route)):
        domain = route.domain.lower().rstrip(".")
        zone = find_zone(domain, zone_names)
        if zone is None:
            shown = ", ".join(zone_names) if zone_names else "none"
            problems.append(
                f"Route/{route.route}: no DNS zone in the account holds {domain} (zones seen: {shown}); "
                "create the zone at the DNS provider or use a domain inside one of them"
            )
            continue
        name = relative_name(domain, zone)
        if target.cname and name == APEX:
            problems.append(
                f"Route/{route.route}: {domain} is the apex of zone {zone}, which cannot hold a CNAME; "
                "use global.dns.target.addresses"
            )
            continue
        if target.cname and normalize_value("CNAME", target.cname) == domain + ".":
            problems.append(f"Route/{route.route}: {domain} would be a CNAME to itself; change global.dns.target")
            continue
        for rtype, values in records.items():
            ident = (zone, name, rtype)
            if ident in seen:
                problems.append(
                    f"Route/{route.route} and Route/{seen[ident]} both need {rtype} {domain}; "
                    "a domain belongs to one route"
                )
                continue
            seen[ident] = route.route
            out[ident] = DesiredRRSet(zone, name, rtype, ttl, values, owner_labels(owner, route.route))
    return DesiredDns(tuple(out[k] for k in sorted(out)), tuple(problems))
