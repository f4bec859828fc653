"""Wait until every authoritative name server of a zone answers with the new records.

Each server (`host[:port]`; a host name is resolved to all its addresses) is
asked directly over UDP, without recursion, and only an authoritative answer
(AA flag) with exactly the expected values (and TTL, when one is expected)
counts. NXDOMAIN, an empty answer (NODATA), old values or a timeout mean "not
yet": public resolvers are never asked, since they may cache the negative
answer. A wildcard is checked through a probe name below it, so the check
sees what clients get. The wait is bounded by a timeout with backoff; at the
timeout `PropagationTimeoutError` names each record and the servers that had not
answered with the new value (and what they said).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from hecate_agent.dns.desired import normalize_value
from hecate_agent.dns.provider import DnsError

PROBE_LABEL = "_hecate-probe"
_MAX_ROUNDS = 10_000  # a bound, not a policy: the deadline ends the wait long before


class PropagationTimeoutError(DnsError):
    """Not every authoritative server answered with the new records in time."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 53 else f"{host}:{self.port}"


@dataclass(frozen=True)
class Expectation:
    """What one query must return: `values` (normalized) and `ttl`, or nothing at all when `absent`."""

    shown: str  # the record as the plan shows it, e.g. "A *.tenants.example.com"
    qname: str  # absolute, no trailing dot; a probe name for wildcards
    type: str
    values: frozenset[str] = frozenset()
    ttl: int | None = None
    absent: bool = False


def parse_server(text: str) -> Server:
    """`ns1.example.com`, `ns1.example.com.`, `192.0.2.1:5353`, `[2001:db8::1]:53` or a bare IPv6 address."""
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return Server(host, int(rest[1:]) if rest.startswith(":") else 53)
    if value.count(":") > 1:  # a bare IPv6 address
        return Server(value)
    host, _, port = value.partition(":")
    return Server(host.rstrip(".").lower(), int(port) if port else 53)


def query_name(fqdn: str) -> str:
    """The name to ask for: the name itself, or a probe below a wildcard (what a client would ask)."""
    return f"{PROBE_LABEL}.{fqdn[2:]}" if fqdn.startswith("*.") else fqdn


def addresses(server: Server) -> list[str]:
    try:
        return [ipaddress.ip_address(server.host).compressed]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def check(expectation: Expectation, address: str, port: int, timeout: float) -> str | None:
    """None when this server answers as expected; otherwise what it said instead."""
    query = dns.message.make_query(expectation.qname, expectation.type)
    query.flags &= ~dns.flags.RD
    try:
        response = dns.query.udp(query, address, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return f"no answer ({type(exc).__name__})"
    rcode = response.rcode()
    if not response.flags & dns.flags.AA:
        return f"not authoritative ({dns.rcode.to_text(rcode)} without the AA flag)"
    rdtype = dns.rdatatype.from_text(expectation.type)
    found = next((r for r in response.answer if r.rdtype == rdtype), None)
    if expectation.absent:
        return None if found is None else "still has the record"
    if rcode == dns.rcode.NXDOMAIN:
        return "NXDOMAIN"
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode)
    if found is None:
        return "no such record yet (NODATA)"
    values = frozenset(normalize_value(expectation.type, rdata.to_text()) for rdata in found)
    if values != expectation.values or (expectation.ttl is not None and found.ttl != expectation.ttl):
        return f"old answer {','.join(sorted(values))} ttl {found.ttl}"
    return None


def wait_propagated(
    pending: Sequence[tuple[Expectation, Sequence[str]]],
    timeout: float,
    *,
    query_timeout: float = 2.0,
    initial_delay: float = 0.1,
    max_delay: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once every server of every expectation answers as expected; raise PropagationTimeoutError otherwise."""
    outstanding: dict[tuple[Expectation, Server], str] = {}
    for expectation, servers in pending:
        if not servers:
            raise DnsError(f"dns: cannot wait for {expectation.shown}: the zone has no authoritative name servers")
        for text in servers:
            outstanding[(expectation, parse_server(text))] = "not asked yet"
    deadline = clock() + timeout
    delay = initial_delay
    for _ in range(_MAX_ROUNDS):
        for (expectation, server), _said in list(outstanding.items()):
            found = addresses(server)
            if not found:
                outstanding[(expectation, server)] = "cannot resolve the name server's address"
                continue
            answers = [check(expectation, address, server.port, min(query_timeout, timeout)) for address in found]
            wrong = [a for a in answers if a is not None]
            if wrong:
                outstanding[(expectation, server)] = wrong[0]
            else:
                del outstanding[(expectation, server)]
        if not outstanding:
            return
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(delay, remaining))
        delay = min(delay * 1.6, max_delay)
    raise PropagationTimeoutError(_timeout_message(outstanding, timeout))


def _timeout_message(outstanding: dict[tuple[Expectation, Server], str], timeout: float) -> str:
    by_record: dict[Expectation, list[str]] = {}
    for (expectation, server), said in outstanding.items():
        by_record.setdefault(expectation, []).append(f"{server} ({said})")
    parts = []
    for expectation, servers in sorted(by_record.items(), key=lambda item: item[0].shown):
        if expectation.absent:
            wanted = "gone"
        else:
            wanted = ",".join(sorted(expectation.values)) + (f" ttl {expectation.ttl}" if expectation.ttl else "")
        parts.append(f"{expectation.shown} = {wanted}: not answered by {', '.join(sorted(servers))}")
    return (
        f"dns: the authoritative name servers did not all answer with the new records within {timeout:g}s: "
        + "; ".join(parts)
        + ". Raise sync.dnsTimeout if the provider is slow to publish"
    )
