"""The DNS target through the real hcloud client against the Hetzner test server, waited for on loopback DNS."""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import pytest

from hecate_agent import redaction
from hecate_agent.dns.desired import DesiredDns, DnsRoute, RecordTarget, desired_rrsets
from hecate_agent.dns.hetzner import HetznerProvider
from hecate_agent.dns.propagation import PropagationTimeoutError, parse_server, query_name
from hecate_agent.dns.provider import DnsError
from hecate_agent.dns.target import Applied, DnsSnapshot, DnsTarget
from tests.support.dns_server import AuthoritativeDns
from tests.support.hetzner_server import FakeHetzner

TOKEN = "hcloud-test-token-4f9c2a7d1e"
OWNER = "fleet-eu"
LB = RecordTarget(("203.0.113.10", "2001:db8::10"))


@pytest.fixture
def servers() -> Iterator[tuple[AuthoritativeDns, AuthoritativeDns]]:
    one, two = AuthoritativeDns(), AuthoritativeDns()
    yield one, two
    one.close()
    two.close()


@pytest.fixture
def hetzner(servers: tuple[AuthoritativeDns, AuthoritativeDns]) -> Iterator[FakeHetzner]:
    server = FakeHetzner(TOKEN, servers, action_polls=1)
    server.add_zone("example.com")
    server.add_zone("tenants.example.com")
    yield server
    server.close()
    assert server.state.errors == []  # every response matched hcloud's models, every request was hcloud's


def make_target(hetzner: FakeHetzner, token: str = TOKEN, **kwargs: object) -> DnsTarget:
    provider = HetznerProvider(token, endpoint=hetzner.endpoint, poll_interval=0.01, timeout=5)
    return DnsTarget(provider, owner=OWNER, **kwargs)  # type: ignore[arg-type]


def routes(*pairs: tuple[str, str]) -> list[DnsRoute]:
    return [DnsRoute(r, d) for r, d in pairs]


def want(target: DnsTarget, pairs: list[DnsRoute], record: RecordTarget = LB, ttl: int = 300) -> DesiredDns:
    return desired_rrsets(pairs, record, [z.name for z in target.zones()], ttl=ttl, owner=OWNER)


def converge(target: DnsTarget, desired: DesiredDns, timeout: float = 10.0) -> Applied:
    live = target.read_live(r.fqdn for r in desired.rrsets)
    changes = target.plan(desired, live)
    assert changes.conflicts == () and changes.problems == ()
    return target.apply(changes, wait_timeout=timeout)


def ask(server: AuthoritativeDns, name: str, rtype: str) -> tuple[bool, list[str], int | None]:
    """(authoritative, values, ttl) as a client asking the server directly sees them."""
    response = dns.query.udp(dns.message.make_query(query_name(name), rtype), "127.0.0.1", port=server.port, timeout=2)
    found = [r for r in response.answer if dns.rdatatype.to_text(r.rdtype) == rtype]
    values = sorted(rd.to_text() for r in found for rd in r)
    return bool(response.flags & dns.flags.AA), values, found[0].ttl if found else None


def test_routes_get_owned_records_waited_for_on_every_authoritative_server(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    target = make_target(hetzner)
    desired = want(target, routes(("app", "app.example.com"), ("tenants", "*.tenants.example.com")))
    applied = converge(target, desired)
    assert [c.key for c in applied.changes] == [  # by zone, name, type
        "RRSet/app.example.com/A",
        "RRSet/app.example.com/AAAA",
        "RRSet/*.tenants.example.com/A",
        "RRSet/*.tenants.example.com/AAAA",
    ]
    stored = hetzner.rrset("example.com", "app", "AAAA")
    assert stored is not None and stored["ttl"] == 300 and stored["records"][0]["value"] == "2001:db8::10"
    assert stored["labels"] == {"managed-by": "hecate", "hecate-owner": OWNER, "hecate-route": "app"}
    for server in servers:  # the wait returned, so both answer authoritatively (wildcards through a probe name)
        assert ask(server, "app.example.com", "A") == (True, ["203.0.113.10"], 300)
        assert ask(server, "*.tenants.example.com", "AAAA") == (True, ["2001:db8::10"], 300)
    assert target.plan(desired, target.read_live(r.fqdn for r in desired.rrsets)).empty


def test_cname_target(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    target = make_target(hetzner)
    converge(target, want(target, routes(("app", "app.example.com")), RecordTarget(cname="lb.example.net")))
    assert ask(servers[0], "app.example.com", "CNAME") == (True, ["lb.example.net."], 300)


def test_values_and_ttl_are_updated_and_waited_for(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    target = make_target(hetzner)
    converge(target, want(target, routes(("app", "app.example.com"))))
    moved = want(target, routes(("app", "app.example.com")), RecordTarget(("203.0.113.20", "2001:db8::10")), ttl=60)
    changes = target.plan(moved, target.read_live(["app.example.com"]))
    assert changes.lines() == [
        "~ dns A app.example.com: values 203.0.113.10 -> 203.0.113.20; ttl 300 -> 60",
        "~ dns AAAA app.example.com: ttl 300 -> 60",
    ]
    target.apply(changes, wait_timeout=10)
    for server in servers:
        assert ask(server, "app.example.com", "A") == (True, ["203.0.113.20"], 60)
        assert ask(server, "app.example.com", "AAAA") == (True, ["2001:db8::10"], 60)


def test_sync_deletes_our_records_of_removed_routes_and_upsert_only_keeps_them(hetzner: FakeHetzner) -> None:
    upsert = make_target(hetzner)
    converge(upsert, want(upsert, routes(("app", "app.example.com"), ("old", "old.example.com"))))
    hetzner.add_rrset("example.com", "mail", "A", ["198.51.100.7"])  # someone else's
    remaining = want(upsert, routes(("app", "app.example.com")))
    kept = upsert.plan(remaining, upsert.read_live(["app.example.com"]))
    assert kept.empty and len(kept.kept) == 2
    upsert.apply(kept)
    assert hetzner.rrset("example.com", "old", "A") is not None
    sync = make_target(hetzner, policy="sync")
    changes = sync.plan(remaining, sync.read_live(["app.example.com"]))
    assert [line.split(" (")[0] for line in changes.lines()] == [
        "- dns A old.example.com 203.0.113.10 ttl 300",
        "- dns AAAA old.example.com 2001:db8::10 ttl 300",
    ]
    sync.apply(changes, wait_timeout=10)
    assert hetzner.rrset("example.com", "old", "A") is None and hetzner.rrset("example.com", "old", "AAAA") is None
    assert hetzner.rrset("example.com", "mail", "A") is not None
    assert hetzner.rrset("example.com", "app", "A") is not None


def test_an_unowned_record_with_the_same_name_is_a_conflict_and_nothing_is_touched(hetzner: FakeHetzner) -> None:
    hetzner.add_rrset("example.com", "app", "A", ["198.51.100.1"], ttl=600, labels={"team": "web"})
    target = make_target(hetzner, policy="sync")
    desired = want(target, routes(("app", "app.example.com")), RecordTarget(("203.0.113.10",)))
    changes = target.plan(desired, target.read_live(["app.example.com"]))
    assert changes.empty
    assert changes.conflicts == (
        "A app.example.com (route app): A app.example.com 198.51.100.1 ttl 600 labels team=web exists and it has no "
        "hecate ownership labels; nothing is changed for it. Remove it at the DNS provider, or set "
        "global.dns.adopt: true to take it over",
    )
    target.apply(changes)
    assert hetzner.state.writes == []
    stored = hetzner.rrset("example.com", "app", "A")
    assert stored is not None and stored["labels"] == {"team": "web"} and stored["ttl"] == 600
    assert [r["value"] for r in stored["records"]] == ["198.51.100.1"]


def test_adopt_takes_the_record_over(hetzner: FakeHetzner) -> None:
    hetzner.add_rrset("example.com", "app", "A", ["198.51.100.1"], labels={"team": "web"})
    target = make_target(hetzner, adopt=True)
    converge(target, want(target, routes(("app", "app.example.com")), RecordTarget(("203.0.113.10",))))
    stored = hetzner.rrset("example.com", "app", "A")
    assert stored is not None and stored["labels"]["hecate-owner"] == OWNER
    assert [r["value"] for r in stored["records"]] == ["203.0.113.10"]


def test_hetzner_down_is_an_error_and_nothing_is_applied(hetzner: FakeHetzner) -> None:
    target = make_target(hetzner)
    desired = want(target, routes(("app", "app.example.com")))
    changes = target.plan(desired, target.read_live(["app.example.com"]))
    hetzner.down = True
    with pytest.raises(DnsError) as caught:
        target.apply(changes)
    assert str(caught.value).startswith(f"hetzner: create A app.example.com: cannot reach {hetzner.endpoint}: ")
    assert str(caught.value).endswith("; nothing had been changed")
    with pytest.raises(DnsError, match="hetzner: list zones: cannot reach"):
        target.read_live()
    hetzner.down = False
    assert hetzner.state.writes == []


def test_a_failed_write_undoes_the_writes_before_it(hetzner: FakeHetzner) -> None:
    target = make_target(hetzner)
    changes = target.plan(want(target, routes(("app", "app.example.com"))), target.read_live(["app.example.com"]))
    hetzner.state.writes_allowed = 1
    with pytest.raises(DnsError) as caught:
        target.apply(changes)
    assert str(caught.value) == (
        "hetzner: create AAAA app.example.com: the service is temporarily unavailable (unavailable); "
        "undoing the DNS changes also failed, DNS is half-changed: hetzner: delete A app.example.com: "
        "the service is temporarily unavailable (unavailable)"
    )
    hetzner.state.writes_allowed = None
    hetzner.state.refused = {"create b/AAAA"}
    hetzner.state.writes.clear()
    with pytest.raises(DnsError, match=r"; the 1 DNS change\(s\) made before the changes failed were undone"):
        target.apply(target.plan(want(target, routes(("b", "b.example.com"))), target.read_live(["b.example.com"])))
    assert hetzner.state.writes == ["create b/A", "delete b/A"]
    assert hetzner.rrset("example.com", "b", "A") is None


def test_slow_propagation_is_waited_for(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    servers[1].delay = 0.4
    target = make_target(hetzner)
    converge(target, want(target, routes(("app", "app.example.com"))), timeout=20)
    assert servers[1].queries > servers[0].queries  # asked again until it published
    assert ask(servers[1], "app.example.com", "A") == (True, ["203.0.113.10"], 300)


def test_a_propagation_timeout_names_the_record_and_the_silent_server_and_rolls_back(
    hetzner: FakeHetzner, servers
) -> None:  # type: ignore[no-untyped-def]
    servers[1].frozen = True
    target = make_target(hetzner)
    desired = want(target, routes(("app", "app.example.com")), RecordTarget(("203.0.113.10",)))
    changes = target.plan(desired, target.read_live(["app.example.com"]))
    with pytest.raises(DnsError) as caught:
        target.apply(changes, wait_timeout=0.5)
    assert str(caught.value) == (
        "dns: the authoritative name servers did not all answer with the new records within 0.5s: "
        f"A app.example.com = 203.0.113.10 ttl 300: not answered by {servers[1].address} (NXDOMAIN). "
        "Raise sync.dnsTimeout if the provider is slow to publish; the 1 DNS change(s) made before waiting failed "
        "were undone"
    )
    assert hetzner.rrset("example.com", "app", "A") is None
    assert hetzner.state.writes == ["create app/A", "delete app/A"]


def test_wait_for_deletions(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    target = make_target(hetzner, policy="sync")
    converge(target, want(target, routes(("app", "app.example.com"))))
    servers[0].frozen = True
    changes = target.plan(want(target, []), target.read_live())
    target.apply(changes)
    with pytest.raises(
        PropagationTimeoutError, match=f"A app.example.com = gone: not answered by {servers[0].address}"
    ):
        target.wait_propagated(changes.changes, 0.3, deletions=True)
    servers[0].frozen = False
    target.wait_propagated(changes.changes, 10, deletions=True)


def test_snapshot_and_restore(hetzner: FakeHetzner) -> None:
    target = make_target(hetzner)
    converge(target, want(target, routes(("app", "app.example.com"))))
    hetzner.add_rrset("example.com", "mail", "A", ["198.51.100.7"])
    snapshot = DnsSnapshot.from_dict(target.snapshot().to_dict())
    assert [r.key for r in snapshot.rrsets] == ["RRSet/app.example.com/A", "RRSet/app.example.com/AAAA"]
    sync = make_target(hetzner, policy="sync")
    moved = want(sync, routes(("b", "b.example.com")), RecordTarget(("203.0.113.30",)), ttl=60)
    converge(sync, moved)
    assert hetzner.rrset("example.com", "app", "A") is None
    target.restore(snapshot)
    assert target.snapshot() == snapshot
    assert hetzner.rrset("example.com", "b", "A") is None
    assert hetzner.rrset("example.com", "mail", "A") is not None


def test_undo_from_a_journaled_record(hetzner: FakeHetzner) -> None:
    target = make_target(hetzner)
    applied = converge(target, want(target, routes(("app", "app.example.com"))))
    target.undo(Applied.from_dict(applied.to_dict()))
    assert target.snapshot() == DnsSnapshot()


def test_many_records_are_read_across_pages(hetzner: FakeHetzner) -> None:
    for i in range(60):
        hetzner.add_rrset("example.com", f"host{i}", "A", [f"198.51.100.{i}"])
    target = make_target(hetzner)
    live = target.read_live(["app.example.com"])
    assert len([r for r in live.rrsets if r.name.startswith("host")]) == 60
    pages = [r for r in hetzner.state.requests if r.startswith("GET /v1/zones/") and "/rrsets?" in r]
    assert any("page=2" in r and "per_page=50" in r for r in pages), pages


def test_a_refused_token_says_what_token_is_needed_and_never_shows_it(hetzner: FakeHetzner) -> None:
    wrong = "wrong-token-value-9d8e7f"
    target = make_target(hetzner, token=wrong)
    with pytest.raises(DnsError) as caught:
        target.read_live()
    assert str(caught.value) == (
        "hetzner: list zones: unable to authenticate (unauthorized); global.dns.apiToken must be a Hetzner Console "
        "project token with Read & Write access (tokens of the old DNS Console no longer work)"
    )
    assert wrong in redaction.known() and wrong not in repr(target) and TOKEN not in repr(make_target(hetzner))


def test_name_servers_are_host_and_port() -> None:
    assert str(parse_server("127.0.0.1:5353")) == "127.0.0.1:5353"
    assert str(parse_server("hydrogen.ns.hetzner.com.")) == "hydrogen.ns.hetzner.com"
    assert parse_server("[2001:db8::1]:5353").port == 5353
    assert parse_server("2001:db8::1").host == "2001:db8::1"


def test_the_installed_caddy_gets_the_capability_error_for_a_wildcard() -> None:
    """Against the real `caddy` on this machine (Debian's 2.6.2 here): what it lists decides the message."""
    import shutil
    import subprocess

    from hecate_agent.dns.certificates import CertRoute, dns_challenge_problems

    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    version = subprocess.run([caddy, "version"], capture_output=True, text=True, check=True).stdout.split()[0]
    listed = subprocess.run([caddy, "list-modules"], capture_output=True, text=True, check=True).stdout
    modules = {line.strip() for line in listed.splitlines() if line.strip() and " " not in line.strip()}
    problems = dns_challenge_problems([CertRoute("t", "*.t.example.com")], "letsencrypt", "hetzner", version, modules)
    if "dns.providers.hetzner" in modules:
        assert problems == []
    else:
        assert len(problems) == 1 and "needs the Caddy module dns.providers.hetzner" in problems[0]
        assert "github.com/caddy-dns/hetzner/v2" in problems[0]


def test_an_answer_without_the_aa_flag_does_not_count(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    servers[0].authoritative = False
    target = make_target(hetzner)
    changes = target.plan(want(target, routes(("app", "app.example.com"))), target.read_live(["app.example.com"]))
    with pytest.raises(DnsError, match=rf"not answered by {servers[0].address} \(not authoritative \(NOERROR without"):
        target.apply(changes, wait_timeout=0.3)
    assert hetzner.rrset("example.com", "app", "A") is None  # undone


def test_the_loopback_dns_server_answers_like_an_authoritative_one(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    hetzner.add_rrset("example.com", "*.t", "A", ["192.0.2.1"])
    hetzner.add_rrset("example.com", "txt", "TXT", ['"hello"'])

    def rcode(name: str, rtype: str) -> tuple[str, int]:
        query = dns.message.make_query(name, rtype)
        response = dns.query.udp(query, "127.0.0.1", port=servers[0].port, timeout=2)
        return dns.rcode.to_text(response.rcode()), len(response.answer)

    assert rcode("x.t.example.com", "A") == ("NOERROR", 1)  # synthesised from the wildcard
    assert rcode("txt.example.com", "A") == ("NOERROR", 0)  # NODATA
    assert rcode("nothing.example.com", "A") == ("NXDOMAIN", 0)
    assert rcode("example.org", "A") == ("REFUSED", 0)


def test_the_hetzner_test_server_checks_itself_against_hcloud() -> None:
    from tests.support.hetzner_checks import check_response, selector_matches

    labels = {"managed-by": "hecate", "hecate-owner": "x"}
    assert selector_matches("managed-by=hecate,hecate-owner=x", labels)
    assert not selector_matches("managed-by=hecate,hecate-owner=y", labels)
    assert selector_matches("hecate-owner in (y, x),!team", labels)
    assert not selector_matches("hecate-owner notin (x)", labels) and selector_matches("team!=web", labels)
    errors: list[str] = []
    check_response(errors, {"rrset": {"id": "a/A", "name": "a", "type": "A", "records": [], "extra": 1}})
    assert errors == ["rrset: fields ['extra', 'labels', 'protection', 'ttl', 'zone'] differ from hcloud's ZoneRRSet"]


def test_an_update_that_fails_halfway_is_undone_too(hetzner: FakeHetzner) -> None:
    hetzner.add_rrset("example.com", "app", "A", ["198.51.100.1"], ttl=600, labels={"team": "web"})
    target = make_target(hetzner, adopt=True)
    desired = want(target, routes(("app", "app.example.com")), RecordTarget(("203.0.113.10",)))
    changes = target.plan(desired, target.read_live(["app.example.com"]))
    hetzner.state.refused = {"set_records app/A"}  # the labels are written, then the records are refused
    with pytest.raises(DnsError, match=r"^hetzner: update A app.example.com \(records\): .* were undone$"):
        target.apply(changes)
    # the undo sets every field the update may have touched back (records and TTL were never changed)
    assert hetzner.state.writes == ["labels app/A", "labels app/A", "set_records app/A", "change_ttl app/A"]
    stored = hetzner.rrset("example.com", "app", "A")
    assert stored is not None and stored["labels"] == {"team": "web"} and stored["ttl"] == 600
    assert [r["value"] for r in stored["records"]] == ["198.51.100.1"]


def test_wildcard_records_are_updated_and_deleted_through_their_names(hetzner: FakeHetzner, servers) -> None:  # type: ignore[no-untyped-def]
    target = make_target(hetzner, policy="sync")
    wildcard = routes(("t", "*.t.example.com"))
    converge(target, want(target, wildcard, RecordTarget(("203.0.113.1",))))
    converge(target, want(target, wildcard, RecordTarget(("203.0.113.2",)), ttl=60))
    assert ask(servers[0], "*.t.example.com", "A") == (True, ["203.0.113.2"], 60)
    converge(target, want(target, []))
    assert hetzner.rrset("example.com", "*.t", "A") is None
    assert "DELETE /v1/zones/101/rrsets/*.t/A" in hetzner.state.requests
