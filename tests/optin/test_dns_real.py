"""The DNS target against the real Hetzner Cloud API, when you have a token and a zone to test in.

    HCLOUD_TOKEN=... HECATE_TEST_ZONE=test.example.com pytest tests/optin/test_dns_real.py -v

Skipped unless both variables are set. The token is a Hetzner Console project
token with Read & Write access; the zone must already exist in that project.
Every record the suite creates sits under a random label
(`hecate-optin-<random>`) and carries a random owner id, and is deleted at the
end (also when a test fails). Waiting asks Hetzner's authoritative name
servers (`authoritative_nameservers.assigned`) directly, so the machine
running the suite needs outbound DNS (UDP 53). `HECATE_TEST_DNS_TIMEOUT`
(default 300 s) bounds each wait. CI runs the same checks against
tests/support/hetzner_server.py and tests/support/dns_server.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from hecate_agent.dns.desired import DnsRoute, RecordTarget, desired_rrsets
from hecate_agent.dns.hetzner import HetznerProvider
from hecate_agent.dns.provider import DnsError
from hecate_agent.dns.target import DnsTarget

TOKEN = os.environ.get("HCLOUD_TOKEN", "")
ZONE = os.environ.get("HECATE_TEST_ZONE", "").rstrip(".").lower()
TIMEOUT = float(os.environ.get("HECATE_TEST_DNS_TIMEOUT", "300"))
pytestmark = pytest.mark.skipif(
    not (TOKEN and ZONE), reason="opt-in: set HCLOUD_TOKEN and HECATE_TEST_ZONE to run against the real Hetzner API"
)


@pytest.fixture
def marker() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def target(marker: str) -> Iterator[DnsTarget]:
    real = DnsTarget(HetznerProvider(TOKEN, poll_interval=1.0), owner=f"hecate-optin-{marker}", policy="sync")
    yield real
    try:  # remove everything this owner holds, whatever happened
        changes = real.plan([], real.read_live())
        real.apply(changes)
        assert real.snapshot().rrsets == ()
    finally:
        real.close()


def test_create_update_wait_and_delete_on_hetzner(target: DnsTarget, marker: str) -> None:
    zones = [z.name for z in target.zones()]
    assert ZONE in zones, f"HECATE_TEST_ZONE {ZONE} is not a zone of this project (zones: {', '.join(zones)})"
    base = f"hecate-optin-{marker}.{ZONE}"
    routes = [DnsRoute("app", f"app.{base}"), DnsRoute("tenants", f"*.t.{base}")]
    desired = desired_rrsets(routes, RecordTarget(("192.0.2.10", "2001:db8::10")), zones, ttl=300, owner=target.owner)
    assert desired.problems == ()
    changes = target.plan(desired, target.read_live(r.fqdn for r in desired.rrsets))
    assert [c.action for c in changes.changes] == ["create"] * 4
    target.apply(changes, wait_timeout=TIMEOUT)  # every authoritative server answers, wildcard through a probe
    live = target.read_live(r.fqdn for r in desired.rrsets)
    assert target.plan(desired, live).empty
    ours = [r for r in live.rrsets if r.fqdn.endswith(base)]
    assert all(r.labels.get("hecate-owner") == target.owner for r in ours) and len(ours) == 4

    moved = desired_rrsets(routes, RecordTarget(("192.0.2.20",)), zones, ttl=600, owner=target.owner)
    changes = target.plan(moved, target.read_live(r.fqdn for r in moved.rrsets))
    assert sorted(c.action for c in changes.changes) == ["delete", "delete", "update", "update"]
    target.apply(changes, wait_timeout=TIMEOUT)
    assert target.plan(moved, target.read_live(r.fqdn for r in moved.rrsets)).empty


def test_a_record_without_our_labels_is_a_conflict(target: DnsTarget, marker: str) -> None:
    zones = [z.name for z in target.zones()]
    name = f"hecate-optin-{marker}-foreign"
    other = DnsTarget(HetznerProvider(TOKEN), owner=f"hecate-optin-{marker}-other", policy="sync")
    try:
        foreign = desired_rrsets(
            [DnsRoute("x", f"{name}.{ZONE}")], RecordTarget(("192.0.2.30",)), zones, ttl=300, owner=other.owner
        )
        other.apply(other.plan(foreign, other.read_live([f"{name}.{ZONE}"])))
        mine = desired_rrsets(
            [DnsRoute("x", f"{name}.{ZONE}")], RecordTarget(("192.0.2.40",)), zones, ttl=300, owner=target.owner
        )
        changes = target.plan(mine, target.read_live([f"{name}.{ZONE}"]))
        assert changes.empty and len(changes.conflicts) == 1
        assert f"belongs to hecate owner '{other.owner}'" in changes.conflicts[0]
    finally:
        other.apply(other.plan([], other.read_live()))
        other.close()


def test_a_wrong_token_is_refused_without_showing_it() -> None:
    wrong = "hecate-optin-not-a-token-" + uuid.uuid4().hex
    with pytest.raises(DnsError) as caught:
        HetznerProvider(wrong).zones()
    assert "unauthorized" in str(caught.value) and wrong not in str(caught.value)
