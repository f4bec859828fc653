"""The DNS target in the engine, with an in-memory provider and in-memory proxies: the order of additions
(DNS before Caddy) and removals (Caddy before DNS deletes), rollback, conflicts, read-only nodes, outages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.dns.desired import DesiredRRSet, owner_labels
from hecate_agent.dns.plan import LiveRRSet
from hecate_agent.dns.propagation import PropagationTimeoutError
from hecate_agent.dns.provider import DnsError, Pending, ZoneInfo
from hecate_agent.engine.fleetwide import FleetRole
from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.prepare import prepare
from hecate_agent.engine.reconcile import Engine, Result
from hecate_agent.engine.transaction import recover
from hecate_agent.runtime.drift import detect
from hecate_agent.secrets import SecretResolver
from hecate_agent.targets.dns import DnsEngineTarget
from tests.fakes import Crash, CrashingStore, MemorySink, MemorySource, MemoryTarget, Verifier, fake_node, fake_targets
from tests.helpers import config, desired_state, dump_yaml, route

TOKEN = "hz-secret-token-1234567890"
PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


class MemoryDns:
    """The DnsProvider port in memory: every write is an event in the shared list."""

    name = "memory"

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.sets: dict[tuple[str, str, str], LiveRRSet] = {}
        self.down = False
        self.fail_on: str | None = None  # "create A app.example.com": that write fails

    def zones(self) -> list[ZoneInfo]:
        if self.down:
            raise DnsError("GET /zones: connection refused")
        return [ZoneInfo("example.com", ("127.0.0.1:1",))]

    def rrsets(self, zone: str, label_selector: str | None = None) -> list[LiveRRSet]:
        if self.down:
            raise DnsError("GET /zones/rrsets: connection refused")
        wanted = dict(p.split("=") for p in label_selector.split(",")) if label_selector else {}
        return [r for r in self.sets.values() if r.zone == zone and all(r.labels.get(k) == v for k, v in wanted.items())]

    def _write(self, what: str) -> None:
        if self.down or self.fail_on == what:
            raise DnsError(f"{what}: 503 unavailable")
        self.events.append(f"dns {what}")

    def create(self, rrset: DesiredRRSet) -> list[Pending]:
        self._write(f"create {rrset.type} {rrset.fqdn}")
        self.sets[rrset.ident] = LiveRRSet(rrset.zone, rrset.name, rrset.type, rrset.ttl, rrset.values, rrset.labels)
        return []

    def update(self, current: LiveRRSet, wanted: DesiredRRSet) -> list[Pending]:
        self._write(f"update {wanted.type} {wanted.fqdn}")
        self.sets[wanted.ident] = LiveRRSet(wanted.zone, wanted.name, wanted.type, wanted.ttl, wanted.values,
                                            wanted.labels)
        return []

    def delete(self, rrset: LiveRRSet) -> list[Pending]:
        self._write(f"delete {rrset.type} {rrset.fqdn}")
        self.sets.pop(rrset.ident, None)
        return []

    def wait(self, pending: Sequence[Pending]) -> None:
        del pending

    def close(self) -> None:
        pass


class DnsWorld:
    def __init__(self, root: Path, *, manage: bool = True, wait: bool = False) -> None:
        self.events: list[str] = []
        self.provider = MemoryDns(self.events)
        self.waits: list[list[str]] = []
        targets: list[Any] = [t for t in fake_targets(self.events) if t.name != "dns"]
        settings = {"dns": {"provisioning": "agent", "manage": manage, "owner": "fleet-a"},
                    "sync": {"waitForDNS": wait, "dnsTimeout": "2s"}}
        self.node = fake_node(root, targets, verifier=Verifier(), settings=settings)
        assert self.node.settings.dns is not None
        self.dns = DnsEngineTarget(
            self.node.settings.dns, self.node.settings.sync, SecretResolver({"HETZNER_API_TOKEN": TOKEN}),
            role=FleetRole("dns", static=manage),
            provider_factory=lambda endpoint, token: self.provider,
            sleep=lambda seconds: None,
        )
        self.node.targets = sorted([*targets, self.dns], key=lambda t: t.order)
        self.engine = Engine(self.node, sink=MemorySink())
        self.source = MemorySource()

    def caddy(self) -> MemoryTarget:
        return next(t for t in self.node.targets if isinstance(t, MemoryTarget) and t.name == "caddy")

    def files(self, *domains: str, policy: str = "sync", **dns: Any) -> dict[str, str]:
        files = {f"routes/r{i}.yaml": dump_yaml(route(f"r{i}", d, tls=PLAIN)) for i, d in enumerate(domains)}
        glob = {"provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}", "policy": policy,
                "target": {"addresses": ["192.0.2.10", "2001:db8::10"]}, **dns}
        files["config.yaml"] = dump_yaml(config(dns=glob))
        return files

    def reconcile(self, files: dict[str, str]) -> Result:
        revision = self.source.push(files)
        found, problems = self.source.snapshot(revision)
        result, _ = self.engine.reconcile(revision, found, problems, source="test")
        return result

    def records(self) -> dict[str, tuple[str, ...]]:
        return {f"{r.type} {r.fqdn}": r.values for r in self.provider.sets.values()}


def test_a_new_route_gets_its_records_before_caddy_and_a_removed_one_loses_them_after(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.APPLIED, result.error
    assert world.events == ["dns create A app.example.com", "dns create AAAA app.example.com", "apply caddy"]
    assert world.records() == {"A app.example.com": ("192.0.2.10",), "AAAA app.example.com": ("2001:db8::10",)}
    assert all(r.labels["hecate-owner"] == "fleet-a" for r in world.provider.sets.values())
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["components"]["dns"] == {
        "provider": "hetzner", "policy": "sync", "writer": True, "ownedRecords": 2, "waitForDNS": False,
        "role": "provisions (manage: true)", "healthy": True, "detail": "the provider answers (owner id fleet-a)"}
    plan = result.prepared.plan if result.prepared else None
    assert plan is not None
    shown = {c.key: c.action for c in plan.changes if c.kind == "DnsRecord"}
    assert shown == {"DnsRecord/app.example.com/A": "create", "DnsRecord/app.example.com/AAAA": "create"}

    world.events.clear()
    result = world.reconcile(world.files("other.example.com"))
    assert result.outcome == Outcome.APPLIED, result.error
    assert world.events == [
        "dns create A other.example.com",
        "dns create AAAA other.example.com",
        "apply caddy",
        "dns delete A app.example.com",
        "dns delete AAAA app.example.com",
    ]


def test_a_failed_removal_rolls_caddy_and_the_records_back_before_verification(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    assert world.reconcile(world.files("app.example.com")).outcome == Outcome.APPLIED
    world.events.clear()
    world.provider.fail_on = "delete AAAA app.example.com"
    result = world.reconcile(world.files("other.example.com"))
    assert result.outcome == Outcome.ROLLED_BACK
    assert "cannot delete the records of removed routes" in result.error
    assert world.events[:4] == [
        "dns create A other.example.com", "dns create AAAA other.example.com", "apply caddy",
        "dns delete A app.example.com"]
    assert "restore caddy" in world.events[4:]
    assert set(world.records()) == {"A app.example.com", "AAAA app.example.com"}  # as before: put back


def test_upsert_only_keeps_the_records_of_a_removed_route(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    first = world.files("keep.example.com", "app.example.com", policy="upsert-only")
    assert world.reconcile(first).outcome == Outcome.APPLIED
    world.events.clear()
    result = world.reconcile(world.files("keep.example.com", policy="upsert-only"))
    assert result.outcome == Outcome.APPLIED, result.error
    assert world.events == ["apply caddy"]
    assert {"A app.example.com", "AAAA app.example.com"} <= set(world.records())


def test_a_caddy_failure_rolls_the_new_records_back(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    world.caddy().fail_apply = "Caddy refused the config"
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.ROLLED_BACK
    assert world.events[:3] == ["dns create A app.example.com", "dns create AAAA app.example.com", "fail caddy"]
    assert sorted(world.events[3:]) == ["dns delete A app.example.com", "dns delete AAAA app.example.com"]
    assert world.records() == {}


def test_a_propagation_timeout_undoes_the_records_and_caddy_is_never_changed(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    world = DnsWorld(tmp_path, wait=True)

    def never(pending: Any, timeout: float) -> None:
        raise PropagationTimeoutError(f"dns: not every authoritative server answered within {timeout:g}s")

    monkeypatch.setattr("hecate_agent.dns.target.wait_propagated", never)
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.ROLLED_BACK
    assert "within 2s" in result.error and "were undone" in result.error
    assert "apply caddy" not in world.events
    assert world.records() == {}


def test_an_unowned_record_is_a_conflict_and_nothing_is_touched(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    theirs = LiveRRSet("example.com", "app", "A", 300, ("198.51.100.7",), {})
    world.provider.sets[theirs.ident] = theirs
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.ERROR
    assert "A app.example.com (route r0): A app.example.com 198.51.100.7 ttl 300 labels (none) exists" in result.error
    assert "global.dns.adopt: true" in result.error
    assert world.events == []
    assert world.provider.sets == {theirs.ident: theirs}


def test_the_provider_down_changes_nothing_and_is_an_error_retried(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    world.provider.down = True
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.ERROR
    assert "dns: cannot read the records at the provider" in result.error
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "Degraded"
    dns = status["components"]["dns"]  # `hecate-agent status` shows it: healthy/detail
    assert dns["healthy"] is False
    assert dns["detail"] == "cannot read the records at the provider: GET /zones: connection refused"
    assert world.events == []
    assert TOKEN not in result.error


def test_a_node_that_does_not_lead_writes_nothing_and_waits_for_the_writer(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path, manage=False)
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.ROLLED_BACK
    assert "this node does not write DNS records (read-only (manage: false)) and after 2s" in result.error
    assert "+ dns A app.example.com 192.0.2.10" in result.error
    assert world.events == []
    # The writer made them: the route applies without a write here.
    for rtype, value in (("A", "192.0.2.10"), ("AAAA", "2001:db8::10")):
        record = DesiredRRSet("example.com", "app", rtype, 300, (value,), owner_labels("fleet-a", "r0"))
        world.provider.sets[record.ident] = LiveRRSet(record.zone, record.name, rtype, 300, (value,), record.labels)
    result = world.reconcile(world.files("app.example.com"))
    assert result.outcome == Outcome.APPLIED, result.error
    assert world.events == ["apply caddy"]


def test_the_plan_shows_records_and_never_the_token(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    state = desired_state(route("r0", "app.example.com", tls=PLAIN), global_config=config(dns={
        "provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}", "target": {"cname": "lb.example.net"}}))
    prepared = prepare(world.node, state, "rev-1")
    (change,) = [c for c in prepared.plan.changes if c.kind == "DnsRecord"]
    assert change.key == "DnsRecord/app.example.com/CNAME"
    assert change.action == "create"  # shown whole (plan_whole): type, values, TTL
    assert {f.path: f.after for f in change.fields} == {
        "type": "CNAME", "values": ["lb.example.net."], "ttl": 300}
    assert TOKEN not in json.dumps(prepared.plan.to_dict())


def test_a_node_that_does_not_write_says_so_in_its_plan(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path, manage=False)
    state = desired_state(route("r0", "app.example.com", tls=PLAIN), global_config=config(dns={
        "provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}", "target": {"addresses": ["192.0.2.10"]}}))
    plan = prepare(world.node, state, "rev-1").plan
    assert [c.key for c in plan.changes if c.kind == "DnsRecord"] == ["DnsRecord/app.example.com/A"]
    assert plan.notes.count(
        "dns: this node does not write DNS records (read-only (manage: false)); it waits for the writer") == 1


def test_a_crash_before_caddy_is_resolved_by_a_new_process_from_the_journal(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    store = world.node.store
    assert isinstance(store, CrashingStore)
    store.crash_at = "caddy"
    with pytest.raises(Crash):
        world.reconcile(world.files("app.example.com"))
    assert set(world.records()) == {"A app.example.com", "AAAA app.example.com"}
    store.crash_at = None
    fresh = DnsWorld(tmp_path)  # a new process: an unbound DNS target, the same provider and proxies
    fresh.provider = world.provider
    fresh.dns.provider_factory = lambda endpoint, token: world.provider
    fresh.node.targets = [t for t in fresh.node.targets if t.name != "caddy"] + [world.caddy()]
    fresh.node.targets.sort(key=lambda t: t.order)
    outcome = recover(fresh.node)
    assert outcome == "restored the state before revision rev-1"
    assert world.records() == {}  # bound from the journal (config, token reference) and put back


def test_drift_of_an_owned_record_is_detected_and_an_unbound_target_sees_none(tmp_path: Path) -> None:
    world = DnsWorld(tmp_path)
    assert world.reconcile(world.files("app.example.com")).outcome == Outcome.APPLIED
    last = world.node.store.last_applied()
    assert last is not None
    assert detect(world.node, last) == []
    fresh = DnsWorld(tmp_path)  # a new process before its first plan
    fresh.dns.provider_factory = lambda endpoint, token: world.provider
    fresh.node.targets = [t for t in fresh.node.targets if t.name != "caddy"] + [world.caddy()]
    fresh.node.targets.sort(key=lambda t: t.order)
    assert detect(fresh.node, last) == []
    ident = ("example.com", "app", "A")
    changed = world.provider.sets[ident]
    world.provider.sets[ident] = LiveRRSet(changed.zone, changed.name, "A", 300, ("198.51.100.9",), changed.labels)
    assert detect(fresh.node, last) == ["DnsRecord/app.example.com/A"]
