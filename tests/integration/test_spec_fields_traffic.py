"""Fields of the design document's format that change traffic, proven through real Caddy 2.6.2 (issue 14)."""

from __future__ import annotations

import collections
import socketserver
import struct
from pathlib import Path

import pytest

from hecate_agent.render.caddy import merge, render_caddy
from tests.helpers import auth_policy, config, desired_state, dump_yaml, route, write_repo
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest
from tests.support.servers import free_port, serving, wait_until

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def answered_by(port: int, host: str, count: int) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        reply = http_get(port, host)
        assert reply.status == 200, (reply.status, reply.body[:200])
        found[str(reply.json()["upstream"])] += 1
    return found


def test_the_default_health_check_takes_out_an_upstream_failing_its_path(caddy: CaddyInstance) -> None:
    good, sick = Upstream("good"), Upstream("sick")
    with serving(good, sick):
        state = desired_state(
            route("d", "d.example.com", tls=PLAIN, upstreams=[{"dial": good.dial}, {"dial": sick.dial}]),
            global_config=config(healthChecks={"default": {"path": "/health", "interval": "500ms",
                                                           "timeout": "200ms"}}),
        )
        caddy.apply(state)
        port = caddy.http_port
        assert set(answered_by(port, "d.example.com", 20)) == {"good", "sick"}
        sick.healthy = False  # its /health answers 503 now
        assert wait_until(lambda: set(answered_by(port, "d.example.com", 10)) == {"good"}, timeout=10)
        assert set(answered_by(port, "d.example.com", 30)) == {"good"}
        sick.healthy = True
        assert wait_until(lambda: "sick" in answered_by(port, "d.example.com", 10), timeout=10)


def test_without_the_default_path_a_failing_health_path_changes_nothing(caddy: CaddyInstance) -> None:
    good, sick = Upstream("good"), Upstream("sick")
    with serving(good, sick):
        caddy.apply(desired_state(route("n", "n.example.com", tls=PLAIN,
                                        upstreams=[{"dial": good.dial}, {"dial": sick.dial}])))
        sick.healthy = False
        assert set(answered_by(caddy.http_port, "n.example.com", 20)) == {"good", "sick"}


def test_the_prometheus_port_answers_metrics_with_request_counts(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    metrics_port = free_port()
    with serving(backend):
        state = desired_state(
            route("m", "m.example.com", tls=PLAIN, upstreams=[{"dial": backend.dial}]),
            global_config=config(monitoring={"prometheus": {"enabled": True, "port": metrics_port}}),
        )
        owned = render_caddy(state, caddy.settings, caddy_capabilities(), {})
        servers = owned["apps"]["http"]["servers"]
        assert servers["hecate_metrics"]["listen"] == [f":{metrics_port}"]
        servers["hecate_metrics"]["listen"] = [f"127.0.0.1:{metrics_port}"]  # tests stay on loopback
        with caddy.admin() as admin:
            live = admin.get_config()
            admin.replace(merge(live.config, owned, caddy.settings), live.etag)
        for _ in range(3):
            assert answered_by(caddy.http_port, "m.example.com", 1) == {"backend": 1}
        reply = http_get(metrics_port, "anything", "/metrics")
        assert reply.status == 200
        text = reply.body.decode()
        # request metrics are on for the agent's servers (opt-in since Caddy 2.6): the three requests counted
        assert (
            'caddy_http_request_duration_seconds_count{code="200",handler="subroute",method="GET",'
            'server="hecate_http"} 3'
        ) in text.splitlines()
        assert http_get(metrics_port, "anything", "/other").status == 404


def test_plan_and_apply_fail_closed_until_the_node_declares_authentik_provisioning(
    node: NodeUnderTest, tmp_path: Path
) -> None:
    backend = Upstream("backend")
    repo = write_repo(tmp_path / "repo", {
        "routes/app.yaml": dump_yaml(route("app", "app.example.com", tls=PLAIN, authPolicy="secure",
                                           upstreams=[{"dial": backend.dial}])),
        "policies/secure.yaml": dump_yaml(auth_policy("secure", requirements={"groups": ["staff"],
                                                                              "mfa": "required"})),
    })
    with serving(backend):
        # no outpost URL anywhere: plan says so; and MFA has nobody to enforce it
        planned = node.cli("plan", str(repo))
        assert planned.returncode == 1
        assert "neither config.yaml (global.authentik.outpostUrl) nor this node's agent.yaml" in planned.stderr
        assert (
            "AuthPolicy/secure: requirements.mfa (required) cannot be enforced on this node: the proxy cannot check "
            "it and agent.yaml configures no Authentik provisioning. Let the agent provision Authentik (`authentik: "
            "{provisioning: agent, url: ..., tokenFile: ...}` in agent.yaml), or configure Authentik yourself and "
            "declare that with `authentik: {provisioning: external}`, or remove requirements.mfa from the policy"
        ) in planned.stderr
        node.configure(authentik={"outpostUrl": "http://127.0.0.1:9"})
        refused = node.cli("apply", str(repo), "--yes")
        assert refused.returncode == 1 and "requirements.mfa (required) cannot be enforced" in refused.stderr
        with node.caddy.admin() as admin:  # nothing was applied
            assert "hecate" not in ((admin.get_config().config.get("apps") or {}).get("http") or {}).get("servers", {})

        node.configure(authentik={"outpostUrl": "http://127.0.0.1:9", "provisioning": "external"})
        planned = node.cli("plan", str(repo))
        assert planned.returncode == 2, planned.stderr
        assert (
            "Note: AuthPolicy/secure: requirements.mfa (required) enforced outside the agent "
            "(authentik.provisioning: external)"
        ) in planned.stdout
        applied = node.cli("apply", str(repo), "--yes")
        assert applied.returncode == 0, applied.stderr
        # forward auth to the outpost named in agent.yaml (nothing listens there: Caddy answers 502)
        assert http_get(node.caddy.http_port, "app.example.com").status == 502
        assert backend.requests == 0


class NameServer(socketserver.ThreadingTCPServer):
    """DNS over TCP (what Caddy 2.6.2's upstream resolver dials): every A question gets 127.0.0.1."""

    daemon_threads = True

    def __init__(self) -> None:
        self.asked: list[str] = []
        super().__init__(("127.0.0.1", 0), _NameHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _answer(query: bytes, asked: list[str]) -> bytes:
    labels, offset = [], 12
    while query[offset]:
        labels.append(query[offset + 1 : offset + 1 + query[offset]].decode())
        offset += 1 + query[offset]
    question = query[12 : offset + 5]
    qtype = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
    asked.append(".".join(labels))
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1]) if qtype == 1 else b""
    return query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0) + question + answer


class _NameHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: NameServer = self.server  # type: ignore[assignment]
        for _ in range(16):  # bounded: a client sends a few questions per connection
            size = self.rfile.read(2)
            if len(size) < 2:
                return
            reply = _answer(self.rfile.read(struct.unpack("!H", size)[0]), server.asked)
            self.wfile.write(struct.pack("!H", len(reply)) + reply)


def test_upstream_names_are_looked_up_through_the_configured_resolvers(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    names = NameServer()
    port = int(backend.dial.rsplit(":", 1)[1])
    with serving(backend, names):
        caddy.apply(desired_state(
            route("r", "r.example.com", tls=PLAIN, upstreams=[{"dial": f"backend.hecate-test.invalid:{port}"}]),
            global_config=config(dns={"resolvers": [f"127.0.0.1:{names.port}"]}),
        ))
        assert answered_by(caddy.http_port, "r.example.com", 2) == {"backend": 2}
        assert "backend.hecate-test.invalid" in names.asked
