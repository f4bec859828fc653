"""A small authoritative DNS server on loopback (dnspython, UDP), for the propagation wait.

It answers from a dict of records with the AA flag set: the records at the
name, a CNAME (not chased) when the name holds one, NODATA when the name exists
with other types, a wildcard match at the closest encloser, NXDOMAIN for names
it does not know, REFUSED outside its zones. The Hetzner test server publishes
into it; `delay` holds every publication back that many seconds (slow
propagation, measured on the monotonic clock when a query arrives), and
`frozen` holds them back until unfrozen (a timeout); `authoritative = False`
drops the AA flag.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass
class _Pending:
    due: float
    zone: str
    name: str  # absolute, lowercase, no trailing dot
    rtype: str
    ttl: int
    values: tuple[str, ...]  # empty: remove


class AuthoritativeDns:
    def __init__(self, zones: tuple[str, ...] = (), *, delay: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.zones: set[str] = {z.lower().rstrip(".") for z in zones}
        self.records: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}  # (name, type) -> (ttl, values)
        self.pending: list[_Pending] = []
        self.delay = delay
        self.frozen = False
        self.authoritative = True  # False: answers without the AA flag, as a cache or a lame server would
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()

    # --- what the Hetzner test server calls ---------------------------------------------------

    def add_zone(self, zone: str) -> None:
        with self.lock:
            self.zones.add(zone.lower().rstrip("."))

    def publish(self, zone: str, name: str, rtype: str, ttl: int, values: tuple[str, ...]) -> None:
        """Set (or, with no values, remove) one RRSet after the delay; `name` is absolute."""
        with self.lock:
            due = time.monotonic() + self.delay
            self.pending.append(_Pending(due, zone, name.lower().rstrip("."), rtype, ttl, values))

    def flush(self) -> None:
        """Apply every publication now (tests that set up state before the wait starts)."""
        with self.lock:
            self._apply(force=True)

    def _apply(self, force: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for item in self.pending:
            if force or (not self.frozen and item.due <= now):
                if item.values:
                    self.records[(item.name, item.rtype)] = (item.ttl, item.values)
                else:
                    self.records.pop((item.name, item.rtype), None)
            else:
                keep.append(item)
        self.pending = keep

    # --- answering ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            with self.lock:
                self.queries += 1
                self._apply()
                response = self._answer(query)
            self.sock.sendto(response.to_wire(), peer)

    def _zone_of(self, name: str) -> str | None:
        return max((z for z in self.zones if name == z or name.endswith("." + z)), key=len, default=None)

    def _exists(self, name: str) -> bool:
        return any(n == name for n, _ in self.records) or any(n.endswith("." + name) for n, _ in self.records)

    def _rrset(self, owner: dns.name.Name, name: str, rtype: str) -> dns.rrset.RRset | None:
        found = self.records.get((name, rtype))
        if found is None:
            return None
        ttl, values = found
        texts = [v if rtype != "CNAME" or v.endswith(".") else f"{v}." for v in values]
        return dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, rtype, texts)

    def _answer(self, query: dns.message.Message) -> Any:
        response = dns.message.make_response(query)
        question = query.question[0]
        qname = question.name.to_text().lower().rstrip(".")
        rtype = dns.rdatatype.to_text(question.rdtype)
        zone = self._zone_of(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if self.authoritative:
            response.flags |= dns.flags.AA
        source = qname
        if not self._exists(qname):
            source = self._wildcard(qname, zone) or ""
            if not source:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response
        for wanted in (rtype, "CNAME"):
            rrset = self._rrset(question.name, source, wanted)
            if rrset is not None:
                response.answer.append(rrset)
                return response
        return response  # NODATA

    def _wildcard(self, qname: str, zone: str) -> str | None:
        """The `*.<closest encloser>` that covers qname, if one exists (RFC 4592, without empty non-terminals)."""
        labels = qname.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if len(parent) < len(zone):
                return None
            if any(n == f"*.{parent}" for n, _ in self.records) or self._exists(parent) or parent == zone:
                return f"*.{parent}" if any(n == f"*.{parent}" for n, _ in self.records) else None
        return None
