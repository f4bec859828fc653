"""Hetzner DNS through the official `hcloud` client (Cloud API: zones and RRSets, `hcloud>=2.11`).

The old dns.hetzner.com API was shut down in May 2026; only a Hetzner Console
project token (Read & Write) works. `hcloud` is imported when a provider is
made (it costs ~0.3 s), so nodes without DNS never load it. Every write
returns the action(s) Hetzner reports; `wait` polls them to the end. Every
failure becomes a `DnsError` naming the call; the token never appears.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hecate_agent import redaction
from hecate_agent.dns.desired import DesiredRRSet, normalize_value
from hecate_agent.dns.plan import LiveRRSet
from hecate_agent.dns.provider import DnsError, Pending, ZoneInfo

if TYPE_CHECKING:
    from hcloud import Client
    from hcloud.zones import Zone, ZoneRRSet

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
T = TypeVar("T")


class HetznerProvider:
    name = "hetzner"

    def __init__(
        self,
        token: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 15.0,
        poll_interval: float = 1.0,
        poll_max_retries: int = 120,
    ) -> None:
        from hcloud import Client

        redaction.register([token])
        self.endpoint = endpoint.rstrip("/")
        self._client: Client = Client(
            token=token,
            api_endpoint=self.endpoint,
            application_name="hecate-agent",
            poll_interval=poll_interval,
            poll_max_retries=poll_max_retries,
            timeout=timeout,
        )
        self._ids: dict[str, int] = {}

    def __repr__(self) -> str:  # never the token
        return f"HetznerProvider(endpoint={self.endpoint!r})"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import requests
        from hcloud import APIException, HCloudException

        try:
            return fn()
        except APIException as exc:
            hint = ""
            if exc.code in ("unauthorized", 401):
                hint = (
                    "; global.dns.apiToken must be a Hetzner Console project token with Read & Write access "
                    "(tokens of the old DNS Console no longer work)"
                )
            elif exc.code in ("forbidden", 403):
                hint = "; the token is read-only or lacks access to this project, give it Read & Write"
            raise DnsError(f"hetzner: {what}: {exc.message} ({exc.code}){hint}") from None
        except HCloudException as exc:  # actions that failed or did not finish
            raise DnsError(f"hetzner: {what}: {exc}") from None
        except requests.RequestException as exc:
            raise DnsError(f"hetzner: {what}: cannot reach {self.endpoint}: {type(exc).__name__}") from None

    def _zone(self, name: str) -> Zone:
        from hcloud.zones import Zone

        zone_id = self._ids.get(name)
        return Zone(id=zone_id) if zone_id is not None else Zone(name=name)

    def _rrset(self, zone: str, name: str, rtype: str) -> ZoneRRSet:
        from hcloud.zones import ZoneRRSet

        return ZoneRRSet(name=name, type=rtype, zone=self._zone(zone))  # type: ignore[arg-type]

    def zones(self) -> list[ZoneInfo]:
        found = self._call("list zones", self._client.zones.get_all)
        out = []
        for zone in found:
            name = str(zone.name).lower().rstrip(".")
            if zone.id is not None:
                self._ids[name] = int(zone.id)
            authoritative = zone.authoritative_nameservers
            assigned = tuple(authoritative.assigned or ()) if authoritative is not None else ()
            out.append(ZoneInfo(name, assigned, str(zone.status or "ok")))
        return out

    def rrsets(self, zone: str, label_selector: str | None = None) -> list[LiveRRSet]:
        found = self._call(
            f"list RRSets of zone {zone}",
            lambda: self._client.zones.get_rrset_all(self._zone(zone), label_selector=label_selector),
        )
        out = []
        for item in found:
            rtype = str(item.type)
            values = tuple(sorted(normalize_value(rtype, r.value) for r in item.records or ()))
            out.append(LiveRRSet(zone, str(item.name), rtype, item.ttl, values, dict(item.labels or {})))
        return out

    def create(self, rrset: DesiredRRSet) -> list[Pending]:
        from hcloud.zones import ZoneRecord

        response = self._call(
            f"create {rrset.type} {rrset.fqdn}",
            lambda: self._client.zones.create_rrset(
                self._zone(rrset.zone),
                name=rrset.name,
                type=rrset.type,  # type: ignore[arg-type]
                ttl=rrset.ttl,
                labels=dict(rrset.labels),
                records=[ZoneRecord(value=v) for v in rrset.values],
            ),
        )
        return [response.action]

    def update(self, current: LiveRRSet, wanted: DesiredRRSet) -> list[Pending]:
        from hcloud.zones import ZoneRecord

        what = f"update {wanted.type} {wanted.fqdn}"
        target = self._rrset(wanted.zone, wanted.name, wanted.type)
        zones = self._client.zones
        pending: list[Pending] = []
        if dict(current.labels) != dict(wanted.labels):
            self._call(what + " (labels)", lambda: zones.update_rrset(target, labels=dict(wanted.labels)))
        if current.normalized() != tuple(sorted(wanted.values)):
            records = [ZoneRecord(value=v) for v in wanted.values]
            pending.append(self._call(what + " (records)", lambda: zones.set_rrset_records(target, records)))
        if current.ttl != wanted.ttl:
            pending.append(self._call(what + " (ttl)", lambda: zones.change_rrset_ttl(target, wanted.ttl)))
        return pending

    def delete(self, rrset: LiveRRSet) -> list[Pending]:
        target = self._rrset(rrset.zone, rrset.name, rrset.type)
        response = self._call(f"delete {rrset.type} {rrset.fqdn}", lambda: self._client.zones.delete_rrset(target))
        return [response.action]

    def wait(self, pending: Sequence[Pending]) -> None:
        for action in pending:
            bound: Any = action
            self._call(f"wait for action {bound.id} ({bound.command})", bound.wait_until_finished)

    def close(self) -> None:
        self._client._client._session.close()
