"""The small interface a DNS provider implements, and the error every provider raises.

A provider lists zones (with their authoritative name servers), lists RRSets
(optionally by label selector), creates, updates and deletes whole RRSets, and
waits for the actions its writes return. Hetzner's implementation is in
`hetzner.py`; another provider (e.g. through dns-lexicon) implements the same
Protocol. Values cross this interface in the canonical form of
`desired.normalize_value`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hecate_agent import redaction
from hecate_agent.dns.desired import DesiredRRSet
from hecate_agent.dns.plan import LiveRRSet


class DnsError(Exception):
    """A DNS provider call failed; the message names the call and never holds the API token."""

    def __init__(self, message: str) -> None:
        super().__init__(redaction.scrub(message))


@dataclass(frozen=True)
class ZoneInfo:
    name: str
    nameservers: tuple[str, ...] = ()  # authoritative, as host[:port]
    status: str = "ok"  # Hetzner: ok | updating | error


class Pending(Protocol):
    """An action a write returned; `DnsProvider.wait` blocks until it is done."""


class DnsProvider(Protocol):
    name: str

    def zones(self) -> list[ZoneInfo]: ...
    def rrsets(self, zone: str, label_selector: str | None = None) -> list[LiveRRSet]: ...
    def create(self, rrset: DesiredRRSet) -> list[Pending]: ...
    def update(self, current: LiveRRSet, wanted: DesiredRRSet) -> list[Pending]: ...
    def delete(self, rrset: LiveRRSet) -> list[Pending]: ...
    def wait(self, pending: Sequence[Pending]) -> None: ...
    def close(self) -> None: ...
