"""Desired vs live RRSets: creates, updates, deletes by policy; conflicts and unmanaged records left alone."""

from __future__ import annotations

import json

from hecate_agent import redaction
from hecate_agent.dns.desired import DnsRoute, RecordTarget, desired_rrsets, owner_labels
from hecate_agent.dns.plan import Change, DnsChangeSet, LiveDns, LiveRRSet, plan, resources

ZONES = ("example.com",)
OWNER = "fleet-eu"


def want(*routes: tuple[str, str], target: RecordTarget | None = None, ttl: int = 300):  # type: ignore[no-untyped-def]
    target = target or RecordTarget(("203.0.113.10",))
    return desired_rrsets([DnsRoute(r, d) for r, d in routes], target, ZONES, ttl=ttl, owner=OWNER)


def ours(name: str, rtype: str, values: tuple[str, ...], route: str, ttl: int = 300, owner: str = OWNER) -> LiveRRSet:
    return LiveRRSet("example.com", name, rtype, ttl, values, owner_labels(owner, route))


def live(*rrsets: LiveRRSet) -> LiveDns:
    return LiveDns(ZONES, rrsets)


def test_new_routes_are_created_and_described() -> None:
    changes = plan(want(("app", "app.example.com"), ("t", "*.t.example.com")), live(), owner=OWNER)
    assert changes.lines() == [
        "+ dns A *.t.example.com 203.0.113.10 ttl 300 (route t)",
        "+ dns A app.example.com 203.0.113.10 ttl 300 (route app)",
    ]
    assert changes.conflicts == () and changes.problems == ()


def test_nothing_to_do_when_live_matches() -> None:
    changes = plan(want(("app", "app.example.com")), live(ours("app", "A", ("203.0.113.10",), "app")), owner=OWNER)
    assert changes.empty and changes.lines() == []


def test_values_and_ttl_changes_are_updates() -> None:
    current = ours("app", "A", ("203.0.113.9",), "app", ttl=60)
    changes = plan(want(("app", "app.example.com")), live(current), owner=OWNER)
    assert changes.lines() == ["~ dns A app.example.com: values 203.0.113.9 -> 203.0.113.10; ttl 60 -> 300"]
    assert changes.changes[0].before == current


def test_upsert_only_keeps_records_of_removed_routes_and_sync_deletes_them() -> None:
    old = ours("old", "A", ("203.0.113.10",), "old")
    keep = plan(want(), live(old), owner=OWNER)
    assert keep.changes == ()
    assert keep.lines() == [
        "  dns kept (upsert-only; policy sync would delete it): A old.example.com 203.0.113.10 ttl 300 labels "
        "hecate-owner=fleet-eu,hecate-route=old,managed-by=hecate (route old removed)"
    ]
    sync = plan(want(), live(old), owner=OWNER, policy="sync")
    assert sync.lines() == ["- dns A old.example.com 203.0.113.10 ttl 300 (route old removed)"]


def test_sync_never_deletes_records_that_are_not_ours() -> None:
    foreign = LiveRRSet("example.com", "mail", "A", 300, ("198.51.100.1",), {})
    other_fleet = ours("api", "A", ("198.51.100.2",), "api", owner="fleet-us")
    changes = plan(want(), live(foreign, other_fleet), owner=OWNER, policy="sync")
    assert changes.changes == () and changes.kept == ()


def test_unowned_record_at_a_desired_name_is_a_conflict_and_untouched() -> None:
    foreign = LiveRRSet("example.com", "app", "A", 300, ("198.51.100.1",), {"team": "web"})
    changes = plan(want(("app", "app.example.com"), ("b", "b.example.com")), live(foreign), owner=OWNER, policy="sync")
    assert [c.key for c in changes.changes] == ["RRSet/b.example.com/A"]
    assert changes.conflicts == (
        "A app.example.com (route app): A app.example.com 198.51.100.1 ttl 300 labels team=web exists and it has no "
        "hecate ownership labels; nothing is changed for it. Remove it at the DNS provider, or set "
        "global.dns.adopt: true to take it over",
    )
    assert changes.unmanaged == ("A app.example.com 198.51.100.1 ttl 300 labels team=web",)
    assert "! dns conflict: A app.example.com (route app)" in changes.lines()[1]


def test_another_fleets_record_is_a_conflict_naming_the_owner() -> None:
    theirs = ours("app", "A", ("198.51.100.1",), "app", owner="fleet-us")
    changes = plan(want(("app", "app.example.com")), live(theirs), owner=OWNER)
    assert changes.changes == ()
    assert "it belongs to hecate owner 'fleet-us', not this fleet" in changes.conflicts[0]


def test_adopt_takes_over_an_unowned_record_of_the_same_type() -> None:
    foreign = LiveRRSet("example.com", "app", "A", 300, ("198.51.100.1",), {})
    changes = plan(want(("app", "app.example.com")), live(foreign), owner=OWNER, adopt=True)
    assert changes.conflicts == () and changes.unmanaged == ()
    assert changes.lines() == [
        "~ dns A app.example.com: values 198.51.100.1 -> 203.0.113.10; labels (none) -> "
        "hecate-owner=fleet-eu,hecate-route=app,managed-by=hecate (adopted: global.dns.adopt is set)"
    ]


def test_cname_conflicts_with_unowned_address_records_and_the_other_way_round() -> None:
    foreign_a = LiveRRSet("example.com", "app", "A", 300, ("198.51.100.1",), {})
    changes = plan(
        want(("app", "app.example.com"), target=RecordTarget(cname="lb.example.net")), live(foreign_a), owner=OWNER
    )
    assert changes.changes == ()
    assert changes.conflicts[0].startswith(
        "CNAME app.example.com (route app): A app.example.com 198.51.100.1 ttl 300 labels (none) exists and it has "
        "no hecate ownership labels; a CNAME cannot share its name with other records"
    )
    foreign_cname = LiveRRSet("example.com", "app", "CNAME", 300, ("x.example.net.",), {})
    changes = plan(want(("app", "app.example.com")), live(foreign_cname), owner=OWNER, adopt=True)
    assert changes.changes == () and len(changes.conflicts) == 1  # adopt never takes a record of another type


def test_our_own_records_are_replaced_when_the_target_type_changes_even_with_upsert_only() -> None:
    mine = ours("app", "A", ("203.0.113.10",), "app")
    changes = plan(
        want(("app", "app.example.com"), target=RecordTarget(cname="lb.example.net")), live(mine), owner=OWNER
    )
    assert changes.lines() == [
        "- dns A app.example.com 203.0.113.10 ttl 300 (replaced by CNAME)",
        "+ dns CNAME app.example.com lb.example.net. ttl 300 (route app)",
    ]


def test_unknown_policy_is_a_problem() -> None:
    changes = plan(want(), live(), owner=OWNER, policy="create-only")
    assert changes.problems == ("global.dns.policy: expected one of upsert-only, sync, got 'create-only'",)


def test_plan_json_round_trip_and_no_secret(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    redaction.register(["hcloud-secret-token-value"])
    current = ours("app", "A", ("203.0.113.9",), "app")
    changes = plan(want(("app", "app.example.com"), ("b", "b.example.com")), live(current), owner=OWNER)
    data = changes.to_dict()
    text = json.dumps(data)
    assert "hcloud-secret-token-value" not in text
    again = tuple(Change.from_dict(c) for c in data["changes"])
    assert again == changes.changes
    assert isinstance(changes, DnsChangeSet)
    assert resources([current]) == {
        "RRSet/app.example.com/A": {
            "ttl": 300,
            "values": ["203.0.113.9"],
            "labels": {"hecate-owner": "fleet-eu", "hecate-route": "app", "managed-by": "hecate"},
        }
    }
