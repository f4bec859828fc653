"""Routes to RRSets: zone choice, record types, ownership labels, problems instead of guesses."""

from __future__ import annotations

from hecate_agent.dns.desired import (
    DesiredRRSet,
    DnsRoute,
    RecordTarget,
    desired_rrsets,
    find_zone,
    is_owned,
    normalize_value,
    owner_selector,
    relative_name,
)

ZONES = ("example.com", "tenants.example.com", "other.org")
LB = RecordTarget(("203.0.113.10", "2001:DB8:0::1", "203.0.113.11"))


def test_longest_zone_that_is_a_suffix_at_a_label_boundary() -> None:
    assert find_zone("app.example.com", ZONES) == "example.com"
    assert find_zone("a.tenants.example.com", ZONES) == "tenants.example.com"
    assert find_zone("*.tenants.example.com", ZONES) == "tenants.example.com"
    assert find_zone("example.com", ZONES) == "example.com"
    assert find_zone("badexample.com", ZONES) is None  # a suffix, but not at a label boundary
    assert find_zone("APP.Example.COM.", ZONES) == "example.com"
    assert relative_name("app.example.com", "example.com") == "app"
    assert relative_name("example.com", "example.com") == "@"
    assert relative_name("*.x.example.com", "example.com") == "*.x"


def test_addresses_become_a_and_aaaa_by_family_with_owner_labels() -> None:
    result = desired_rrsets(
        [DnsRoute("app", "app.example.com"), DnsRoute("tenants", "*.tenants.example.com")],
        LB,
        ZONES,
        ttl=300,
        owner="fleet-eu",
    )
    assert result.problems == ()
    assert [(r.zone, r.name, r.type, r.values, r.ttl) for r in result.rrsets] == [
        ("example.com", "app", "A", ("203.0.113.10", "203.0.113.11"), 300),
        ("example.com", "app", "AAAA", ("2001:db8::1",), 300),
        ("tenants.example.com", "*", "A", ("203.0.113.10", "203.0.113.11"), 300),
        ("tenants.example.com", "*", "AAAA", ("2001:db8::1",), 300),
    ]
    first = result.rrsets[0]
    assert dict(first.labels) == {"managed-by": "hecate", "hecate-owner": "fleet-eu", "hecate-route": "app"}
    assert first.key == "RRSet/app.example.com/A"
    assert result.rrsets[2].fqdn == "*.tenants.example.com"
    assert is_owned(first.labels, "fleet-eu") and not is_owned(first.labels, "fleet-us")
    assert owner_selector("fleet-eu") == "managed-by=hecate,hecate-owner=fleet-eu"


def test_cname_target_is_absolute() -> None:
    result = desired_rrsets(
        [DnsRoute("app", "app.example.com")], RecordTarget(cname="LB.Example.net"), ZONES, ttl=60, owner="f"
    )
    assert [(r.name, r.type, r.values) for r in result.rrsets] == [("app", "CNAME", ("lb.example.net.",))]


def test_a_domain_without_a_zone_names_the_domain_and_the_zones_seen() -> None:
    result = desired_rrsets([DnsRoute("shop", "shop.example.net")], LB, ZONES, ttl=300, owner="f")
    assert result.rrsets == ()
    assert result.problems == (
        "Route/shop: no DNS zone in the account holds shop.example.net (zones seen: example.com, other.org, "
        "tenants.example.com); create the zone at the DNS provider or use a domain inside one of them",
    )
    none = desired_rrsets([DnsRoute("shop", "shop.example.net")], LB, (), ttl=300, owner="f")
    assert "(zones seen: none)" in none.problems[0]


def test_target_and_owner_problems() -> None:
    both = desired_rrsets([], RecordTarget(("203.0.113.1",), "lb.example.net"), ZONES, ttl=300, owner="f")
    assert both.problems == (
        "global.dns.target: expected exactly one of addresses (the balancer's IPv4/IPv6 addresses) or cname "
        "(a host name), got both",
    )
    bad = desired_rrsets([], RecordTarget(("203.0.113.300",)), ZONES, ttl=0, owner="bad owner")
    assert bad.problems == (
        "global.dns.target.addresses: '203.0.113.300' is not an IPv4 or IPv6 address",
        "global.dns.defaultTTL: expected a positive number of seconds, got 0",
        "DNS owner id 'bad owner': expected 1-63 letters, digits, '-', '_' or '.', starting and ending with a "
        "letter or digit (it becomes the hecate-owner label)",
    )
    cname = desired_rrsets([], RecordTarget(cname="not a host"), ZONES, ttl=300, owner="f")
    assert cname.problems == ("global.dns.target.cname: 'not a host' is not a host name such as lb.example.net",)


def test_cname_at_a_zone_apex_and_to_itself_are_problems() -> None:
    apex = desired_rrsets(
        [DnsRoute("root", "example.com")], RecordTarget(cname="lb.other.org"), ZONES, ttl=300, owner="f"
    )
    assert apex.problems == (
        "Route/root: example.com is the apex of zone example.com, which cannot hold a CNAME; use "
        "global.dns.target.addresses",
    )
    loop = desired_rrsets(
        [DnsRoute("lb", "lb.other.org")], RecordTarget(cname="lb.other.org."), ZONES, ttl=300, owner="f"
    )
    assert loop.problems == ("Route/lb: lb.other.org would be a CNAME to itself; change global.dns.target",)


def test_two_routes_for_one_domain_is_a_problem() -> None:
    result = desired_rrsets(
        [DnsRoute("a", "app.example.com"), DnsRoute("b", "app.example.com")],
        RecordTarget(("203.0.113.1",)),
        ZONES,
        ttl=300,
        owner="f",
    )
    assert result.problems == ("Route/b and Route/a both need A app.example.com; a domain belongs to one route",)
    assert len(result.rrsets) == 1


def test_values_normalize_and_round_trip() -> None:
    assert normalize_value("AAAA", "2001:0DB8:0000::0001") == "2001:db8::1"
    assert normalize_value("CNAME", "Lb.Example.NET") == "lb.example.net."
    rrset = DesiredRRSet("example.com", "app", "A", 300, ("203.0.113.1",), {"managed-by": "hecate"})
    assert DesiredRRSet.from_dict(rrset.to_dict()) == rrset
    assert DesiredRRSet.from_dict(rrset.to_dict()).labels == rrset.labels


def test_hcloud_is_imported_only_when_a_hetzner_provider_is_made() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hecate_agent.dns.target, hecate_agent.dns.hetzner, hecate_agent.dns.certificates; "
        "sys.exit(1 if 'hcloud' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
