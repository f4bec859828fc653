"""DNS as a target of the engine, end to end: real Caddy, the real hcloud client against the Hetzner test
server, the wait on loopback authoritative DNS servers; the design document's Global Configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.reconcile import Engine
from hecate_agent.render.caddy import CaddyCapabilities
from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.targets.dns import DnsEngineTarget
from tests.helpers import dump_yaml, route
from tests.integration.test_dns_target import TOKEN, ask, hetzner, servers  # noqa: F401 - fixtures
from tests.support.caddy import caddy_capabilities
from tests.support.dns_server import AuthoritativeDns
from tests.support.hetzner_server import FakeHetzner
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest
from tests.support.servers import free_port, serving
from tests.unit.test_design_document import design_document, yaml_after

pytestmark = pytest.mark.integration
PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
ADDRESS = "203.0.113.10"


def global_config(prometheus_port: int) -> str:
    """The design document's Global Configuration, as written for DNS; what Debian's Caddy 2.6.2 cannot
    do otherwise (vault storage, tracing) and a free Prometheus port are the only edits."""
    text = yaml_after(design_document(), "### Global Configuration")
    assert "provider: hetzner" in text and "apiToken: ${HETZNER_API_TOKEN}" in text and "defaultTTL: 300" in text
    text = text.replace("storage: vault", "storage: file").replace("port: 9090", f"port: {prometheus_port}")
    text = text.replace("tracing:\n      enabled: true", "tracing:\n      enabled: false")
    return text.replace("defaultTTL: 300\n", "defaultTTL: 300\n    policy: sync\n", 1)


class Fleet:
    def __init__(self, node: NodeUnderTest, api: FakeHetzner, upstream: Upstream, timeout: str = "20s") -> None:
        node.configure(
            dns={"provisioning": "agent", "apiEndpoint": api.endpoint, "publicAddresses": [ADDRESS],
                 "manage": True, "owner": "fleet-eu"},
            sync={"dnsTimeout": timeout},
        )
        self.node_under_test = node
        self.node = node.node(caddy_capabilities(), environment={"HETZNER_API_TOKEN": TOKEN})
        self.engine = Engine(self.node)
        self.hetzner = api
        self.upstream = upstream
        self.prometheus = free_port()
        self.events: list[str] = []
        self.status: dict[str, Any] = {}
        dns = self.node.target("dns")
        assert isinstance(dns, DnsEngineTarget)
        self.dns = dns

    def files(self, *domains: str) -> list[SourceFile]:
        docs = {f"routes/r{i}.yaml": route(f"r{i}", d, tls=PLAIN, upstreams=[{"dial": self.upstream.dial}])
                for i, d in enumerate(domains)}
        files = [SourceFile(path, dump_yaml(doc).encode()) for path, doc in docs.items()]
        return [*files, SourceFile("config.yaml", global_config(self.prometheus).encode())]

    def apply(self, *domains: str) -> Any:
        result, self.status = self.engine.reconcile(f"rev-{'-'.join(domains)}", self.files(*domains), source="test")
        return result

    def serves(self, host: str) -> bool:
        try:
            return http_get(self.node_under_test.caddy.http_port, host).status == 200
        except OSError:  # no listener yet: Caddy has no route at all
            return False

    def record(self, name: str) -> dict[str, Any] | None:
        return self.hetzner.rrset("example.com", name, "A")


@pytest.fixture
def fleet(node: NodeUnderTest, hetzner: FakeHetzner) -> Any:  # noqa: F811 - the fixture
    upstream = Upstream("a")
    with serving(upstream):
        fleet = Fleet(node, hetzner, upstream)
        yield fleet
        fleet.node.close()


def test_the_design_documents_config_creates_records_before_the_route_and_deletes_them_after(
        fleet: Fleet, servers: tuple[AuthoritativeDns, AuthoritativeDns]) -> None:  # noqa: F811
    caddy = fleet.node.target("caddy")
    assert caddy is not None
    real_apply, real_retire = caddy.apply, fleet.dns.retire

    def caddy_apply(prepared: Any, record: Any, save: Any) -> None:
        # DNS first: every authoritative server answers for the new name before Caddy is changed.
        answers = [ask(server, "app.example.com", "A") for server in servers]
        fleet.events.append(f"caddy applies; dns answers {answers}; serving {fleet.serves('app.example.com')}")
        real_apply(prepared, record, save)

    def dns_retire(prepared: Any, record: Any, save: Any) -> None:
        if record["later"]:
            fleet.events.append(f"dns removes; serving {fleet.serves('app.example.com')}; "
                                f"record {fleet.record('app') is not None}")
        real_retire(prepared, record, save)

    caddy.apply = caddy_apply  # type: ignore[method-assign]
    fleet.dns.retire = dns_retire  # type: ignore[method-assign]

    planned = fleet.engine.prepare(load_specs(fleet.files("app.example.com")).state, "rev-plan")[0]
    assert planned is not None
    (shown,) = [c for c in planned.plan.changes if c.kind == "DnsRecord"]
    assert {f.path: f.after for f in shown.fields} == {"type": "A", "values": ["203.0.113.10"], "ttl": 300}
    assert {c.key: c.action for c in planned.plan.changes if c.kind == "DnsRecord"} == {
        "DnsRecord/app.example.com/A": "create"}

    result = fleet.apply("app.example.com")
    assert result.outcome == Outcome.APPLIED, result.error
    assert fleet.events == [
        "caddy applies; dns answers [(True, ['203.0.113.10'], 300), (True, ['203.0.113.10'], 300)]; serving False"]
    assert fleet.serves("app.example.com")
    labels = (fleet.record("app") or {})["labels"]
    assert labels == {"managed-by": "hecate", "hecate-owner": "fleet-eu", "hecate-route": "r0"}
    assert fleet.status["phase"] == "Synced"
    assert fleet.status["components"]["dns"] == {
        "provider": "hetzner", "policy": "sync", "writer": True, "ownedRecords": 1, "waitForDNS": True,
        "role": "provisions (manage: true)", "healthy": True, "detail": "the provider answers (owner id fleet-eu)"}

    fleet.events.clear()
    result = fleet.apply("keep.example.com")
    assert result.outcome == Outcome.APPLIED, result.error
    assert fleet.events[-1] == "dns removes; serving False; record True"  # Caddy first, then DNS
    assert fleet.record("app") is None
    assert fleet.record("keep") is not None
    assert fleet.hetzner.state.errors == []


def test_a_server_that_never_answers_times_out_the_records_are_undone_and_caddy_is_untouched(
        node: NodeUnderTest, hetzner: FakeHetzner, servers: tuple[AuthoritativeDns, AuthoritativeDns]) -> None:  # noqa: F811
    servers[1].frozen = True  # publishes nothing: the second authoritative server never has the record
    upstream = Upstream("a")
    with serving(upstream):
        fleet = Fleet(node, hetzner, upstream, timeout="1s")
        try:
            result = fleet.apply("app.example.com")
        finally:
            fleet.node.close()
    assert result.outcome == Outcome.ROLLED_BACK
    assert "were undone" in result.error and "A app.example.com" in result.error
    assert servers[1].address in result.error
    assert fleet.record("app") is None
    assert not fleet.serves("app.example.com")
    assert fleet.status["phase"] == "Degraded"


def test_an_unowned_record_is_a_conflict_and_nothing_is_touched(fleet: Fleet) -> None:
    fleet.hetzner.add_rrset("example.com", "app", "A", ["198.51.100.7"], ttl=600)
    writes = list(fleet.hetzner.state.writes)
    result = fleet.apply("app.example.com")
    assert result.outcome == Outcome.ERROR
    assert "A app.example.com (route r0): A app.example.com 198.51.100.7 ttl 600 labels (none) exists" in result.error
    assert "Remove it at the DNS provider, or set global.dns.adopt: true" in result.error
    assert fleet.hetzner.state.writes == writes
    assert not fleet.serves("app.example.com")
    theirs = fleet.record("app") or {}
    assert [r["value"] for r in theirs["records"]] == ["198.51.100.7"] and not theirs["labels"]


def test_hetzner_down_applies_nothing_the_last_known_good_serves_and_the_node_is_degraded(fleet: Fleet) -> None:
    assert fleet.apply("app.example.com").outcome == Outcome.APPLIED
    fleet.hetzner.down = True
    result = fleet.apply("app.example.com", "new.example.com")
    assert result.outcome == Outcome.ERROR
    assert "dns: cannot read the records at the provider" in result.error
    assert TOKEN not in result.error
    assert fleet.serves("app.example.com") and not fleet.serves("new.example.com")
    status = json.loads((fleet.node_under_test.state_dir / "status.json").read_text())
    assert status == fleet.status
    assert status["phase"] == "Degraded"
    assert "dns: cannot read the records" in status["lastAttempt"]["error"]
    assert status["appliedRevision"] == "rev-app.example.com"


def test_a_wildcard_with_letsencrypt_on_debians_caddy_is_a_capability_error(node: NodeUnderTest) -> None:
    capabilities = caddy_capabilities()
    assert capabilities.version.startswith("2.6.2") and not capabilities.has("dns.providers.hetzner")
    files = [
        SourceFile("routes/t.yaml", dump_yaml(route("tenants", "*.tenants.example.com")).encode()),
        SourceFile("config.yaml", global_config(free_port()).encode()),
    ]
    loaded = load_specs(files)
    assert loaded.state is not None
    node.configure(dns={"provisioning": "external"})
    engine = Engine(node.node(capabilities, environment={"HETZNER_API_TOKEN": TOKEN}))
    prepared, refused = engine.prepare(loaded.state, "rev-1")
    assert prepared is None and refused is not None
    assert (
        "Route/tenants: a wildcard certificate for *.tenants.example.com from Let's Encrypt needs the ACME DNS-01 "
        "challenge, which needs the Caddy module dns.providers.hetzner. This Caddy (2.6.2) has no dns.providers.* "
        "module (caddy list-modules), and the plugin github.com/caddy-dns/hetzner/v2 needs Caddy 2.10.2 or newer, "
        "so no plugin can give this Caddy the module (Debian's caddy package cannot add plugins). Install a custom "
        "Caddy 2.10.2 or newer built with github.com/caddy-dns/hetzner/v2 (xcaddy build v2.10.2 --with "
        "github.com/caddy-dns/hetzner/v2; replace the packaged binary with dpkg-divert as Caddy's install docs "
        "describe), or list explicit host names instead of the wildcard (HTTP-01, with certificate storage shared "
        "by the nodes)"
    ) in refused.details
    with_module = CaddyCapabilities(capabilities.version, capabilities.modules | {"dns.providers.hetzner"})
    engine = Engine(node.node(with_module, environment={"HETZNER_API_TOKEN": TOKEN}))
    assert engine.prepare(loaded.state, "rev-1")[0] is not None


def test_with_consul_only_the_holder_of_the_dns_lock_writes(tmp_path: Any) -> None:
    from hecate_agent.engine.fleetwide import FleetRole, use_publisher
    from hecate_agent.runtime.wiring import build_node
    from hecate_agent.settings import AgentSettings
    from hecate_agent.store.consul_status import ConsulPublisher
    from tests.support.consul_server import FakeConsul

    consul = FakeConsul()
    try:
        def target(name: str) -> DnsEngineTarget:
            settings = AgentSettings.model_validate({
                "node": {"name": name}, "stateDir": str(tmp_path / name),
                "consul": {"address": f"http://127.0.0.1:{consul.port}"},
                "dns": {"provisioning": "agent", "manage": True}})  # manage is for fleets without Consul
            found = build_node(settings, environment={}, capabilities=CaddyCapabilities()).target("dns")
            assert isinstance(found, DnsEngineTarget)
            return found

        one, two = target("edge-1"), target("edge-2")
        assert one.role.would_act() and two.role.would_act()  # nobody leads yet: either would take it
        assert one.role.leader() is None  # planning never takes the lead
        assert one.role.acts() and not two.role.acts()
        assert one.role.would_act() and not two.role.would_act()
        assert two.role.leader() == "edge-1"
        assert two.role.describe() == "read-only (edge-1 holds hecate/leaders/dns)"
        # The daemon's publisher (renewed by its heartbeat) takes over the lock's session; the node still leads.
        node = build_node(AgentSettings.model_validate({
            "node": {"name": "edge-1"}, "stateDir": str(tmp_path / "daemon"),
            "consul": {"address": f"http://127.0.0.1:{consul.port}"}, "dns": {"provisioning": "agent"}}),
            environment={}, capabilities=CaddyCapabilities())
        daemon_publisher = ConsulPublisher(f"http://127.0.0.1:{consul.port}", "edge-1")
        use_publisher(node.targets, daemon_publisher)
        found = node.target("dns")
        assert isinstance(found, DnsEngineTarget) and isinstance(found.role, FleetRole)
        assert found.role.publisher is daemon_publisher
        assert found.role.acts()  # held by edge-1's other process: this node writes
        # Its session dies (expired while Consul was away): the next apply makes a new one and leads again.
        with consul.state.lock:
            consul.state.invalidate(str(daemon_publisher.session))
        one.close()  # edge-1's first process ends: its lock is released, its own session closed
        assert one.role.publisher is not None and one.role.publisher.session is None
        assert found.role.leader() is None
        assert found.role.acts() and found.role.would_act()
    finally:
        consul.close()
