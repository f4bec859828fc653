"""Every field the design document defines has an effect, or fails closed with an exact message (issue 14).

Render effects are checked here without proxies; the traffic effects on real Caddy
and Nginx are in tests/integration/test_spec_fields_traffic.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.enforcement import node_verdict, otel_endpoint, tracing_verdict
from hecate_agent.errors import SpecProblem
from hecate_agent.render.bundle import render_all
from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, RenderError, merge, render_caddy
from hecate_agent.report import RENDERERS
from hecate_agent.secrets import Reference, is_sensitive
from hecate_agent.settings import AuthentikNodeSettings, DnsNodeSettings, SettingsError, load_settings
from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.targets.process_env import admin_process_environment
from tests.helpers import auth_policy, config, desired_state, dump_yaml, route, stream

OUTPOST = config(authentik={"outpostUrl": "http://outpost:9000"})
EXTERNAL = AuthentikNodeSettings(provisioning="external")


def owned(*docs: dict[str, Any], global_config: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return render_caddy(desired_state(*docs, global_config=global_config), **kwargs)


def servers(out: dict[str, Any]) -> dict[str, Any]:
    return out["apps"]["http"]["servers"]


def proxy(out: dict[str, Any], name: str = "app") -> dict[str, Any]:
    site = next(r for r in servers(out)["hecate"]["routes"] if r["@id"] == f"hecate-route-{name}")
    return site["handle"][0]["routes"][-1]["handle"][-1]


# --- Route ------------------------------------------------------------------------------------


def test_rate_limit_accepts_the_documents_cli_spelling() -> None:
    caps = CaddyCapabilities("2.6.2", frozenset({"http.handlers.rate_limit"}))
    short = owned(route(middleware=["rate-limit:100/min"]), capabilities=caps)
    long = owned(route(middleware=["rate-limit:100/minute"]), capabilities=caps)
    assert short == long
    limit = servers(short)["hecate"]["routes"][0]["handle"][0]["routes"][0]["handle"][0]
    assert limit["rate_limits"]["app"]["window"] == "1m" and limit["rate_limits"]["app"]["max_events"] == 100
    hourly = owned(route(middleware=["rate-limit:5/hr"]), capabilities=caps)
    assert servers(hourly)["hecate"]["routes"][0]["handle"][0]["routes"][0]["handle"][0]["rate_limits"]["app"][
        "window"
    ] == "1h"


# --- AuthPolicy: what the proxy enforces ------------------------------------------------------


def auth_routes(policy: dict[str, Any], settings: CaddySettings | None = None,
                global_config: dict[str, Any] | None = OUTPOST) -> list[dict[str, Any]]:
    out = owned(route(authPolicy="staff"), policy, global_config=global_config, settings=settings or CaddySettings())
    site = next(r for r in servers(out)["hecate"]["routes"] if r["@id"] == "hecate-route-app")
    return site["handle"][0]["routes"]


def test_allowed_http_methods_render_the_405_restriction() -> None:
    ids = [r.get("@id") for r in auth_routes(auth_policy(allowedHttpMethods=["GET", "HEAD"]))]
    assert "hecate-auth.staff.app.methods" in ids
    methods = next(r for r in auth_routes(auth_policy(allowedHttpMethods=["GET", "HEAD"]))
                   if r.get("@id") == "hecate-auth.staff.app.methods")
    assert methods["match"] == [{"not": [{"method": ["GET", "HEAD"]}]}]
    assert methods["handle"][0]["status_code"] == 405
    assert "hecate-auth.staff.app.methods" not in [r.get("@id") for r in auth_routes(auth_policy())]


def test_header_attributes_are_checked_by_the_proxy_and_others_are_not() -> None:
    ids = [r.get("@id") for r in auth_routes(auth_policy(metadata={"required": ["email", "employee_id"]}))]
    assert "hecate-auth.staff.app.requires-email" in ids
    assert not any("employee_id" in str(i) for i in ids)  # Authentik's to check: see the fail-closed tests


def test_the_outpost_url_comes_from_agent_yaml_when_config_yaml_has_none() -> None:
    first = auth_routes(auth_policy(), CaddySettings(outpost_url="http://node-outpost:9000"), global_config=None)
    assert first[0]["handle"][0]["upstreams"] == [{"dial": "node-outpost:9000"}]
    # config.yaml wins when it sets one
    both = auth_routes(auth_policy(), CaddySettings(outpost_url="http://node-outpost:9000"))
    assert both[0]["handle"][0]["upstreams"] == [{"dial": "outpost:9000"}]


def test_plan_on_a_node_with_no_outpost_url_says_so() -> None:
    with pytest.raises(RenderError) as caught:
        auth_routes(auth_policy(), CaddySettings(), global_config=None)
    assert caught.value.problems == [
        "routes use an AuthPolicy, but neither config.yaml (global.authentik.outpostUrl) nor this node's "
        "agent.yaml (authentik.outpostUrl) sets the Authentik outpost URL; set one of them"
    ]


# --- AuthPolicy: fail closed on what only Authentik enforces ----------------------------------

FIELDS = [
    ({"flow": "default-authentication-flow"}, "flow (default-authentication-flow)", "flow"),
    ({"requirements": {"mfa": "required"}}, "requirements.mfa (required)", "requirements.mfa"),
    ({"requirements": {"mfa": "optional"}}, "requirements.mfa (optional)", "requirements.mfa"),
    ({"requirements": {"mfa": True}}, "requirements.mfa (required)", "requirements.mfa"),
    ({"requirements": {"sessionDuration": "4h"}}, "requirements.sessionDuration (4h)",
     "requirements.sessionDuration"),
    ({"metadata": {"required": ["username", "employee_id"]}}, "metadata.required (attribute employee_id)",
     "metadata.required"),
    ({"allowedMethods": ["password", "webauthn"]}, "allowedMethods (password, webauthn)", "allowedMethods"),
]


@pytest.mark.parametrize(("spec", "shown", "field"), FIELDS, ids=[f[1] for f in FIELDS])
def test_authentik_only_fields_stop_the_plan_without_provisioning(spec: dict[str, Any], shown: str,
                                                                 field: str) -> None:
    state = desired_state(auth_policy("staff", **spec))
    verdict = node_verdict(state, None, None)
    assert verdict.errors == [
        f"AuthPolicy/staff: {shown} cannot be enforced on this node: the proxy cannot check it and agent.yaml "
        "configures no Authentik provisioning. Let the agent provision Authentik (`authentik: {provisioning: "
        "agent, url: ..., tokenFile: ...}` in agent.yaml), or configure Authentik yourself and declare that with "
        f"`authentik: {{provisioning: external}}`, or remove {field} from the policy"
    ]
    assert verdict.notes == []
    agent_settings = AuthentikNodeSettings(provisioning="agent", url="http://127.0.0.1:9", tokenFile="/dev/null")
    agent = node_verdict(state, agent_settings, None)
    assert agent.errors == []
    assert agent.notes == [
        f"AuthPolicy/staff: {shown} enforced by Authentik, provisioned by the agent (authentik.provisioning: agent)"
    ]
    external = node_verdict(state, EXTERNAL, None)
    assert external.errors == []
    assert external.notes == [
        f"AuthPolicy/staff: {shown} enforced outside the agent (authentik.provisioning: external)"
    ]


def test_groups_header_attributes_and_http_methods_need_no_provisioning() -> None:
    state = desired_state(auth_policy(requirements={"groups": ["staff"], "mfa": "disabled"},
                                      metadata={"required": ["username", "email"]},
                                      allowedHttpMethods=["GET"]))
    assert node_verdict(state, None, None).errors == []


def test_validate_warns_where_plan_would_stop_and_about_deprecated_spellings() -> None:
    files = [
        SourceFile("policies/p.yaml", dump_yaml(auth_policy("p", requirements={"mfa": True})).encode()),
        SourceFile("config.yaml", dump_yaml(config(healthChecks={"interval": "20s"},
                                                   monitoring={"metrics": True})).encode()),
    ]
    result = load_specs(files)
    assert result.problems == [] and result.state is not None
    assert [(w.field, w.message) for w in result.warnings] == [
        ("global.healthChecks.interval", "healthChecks.interval is deprecated; move it to healthChecks.default.interval"),
        ("global.monitoring.metrics", "monitoring.metrics is deprecated; write monitoring.prometheus: {enabled: true, "
         "port: 9090} (metrics: true only turns Caddy's request metrics on, served by Caddy's admin /metrics)"),
        ("spec.requirements.mfa", "mfa: true is deprecated; write mfa: required"),
        ("spec.requirements.mfa", "requirements.mfa (required) is enforced by Authentik, not by the proxy: a node "
         "applies this policy only when its agent.yaml sets authentik.provisioning (external: you configure "
         "Authentik to enforce it); elsewhere plan and apply stop"),
    ]
    # the deprecated spelling still means what it said
    assert result.state.config.health_checks.effective.interval.milliseconds == 20_000


@pytest.mark.parametrize("output_format", ["text", "json", "github", "sarif"])
def test_every_report_format_shows_warnings_as_warnings(output_format: str) -> None:
    warning = SpecProblem("c.yaml", 3, 5, "old spelling", kind="Config", field="global.x", severity="warning")
    out = RENDERERS[output_format]([warning], {"Route": 1}, "repo")
    expected = {"text": "c.yaml:3:5: Config: global.x: warning: old spelling", "json": '"severity": "warning"',
                "github": "::warning file=c.yaml,line=3,col=5", "sarif": '"level": "warning"'}[output_format]
    assert expected in out
    if output_format == "text":
        assert out.splitlines()[-1] == "repo: valid (1 Route, 0 AuthPolicy, 0 Stream); 1 warning(s)"


# --- config.yaml: dns --------------------------------------------------------------------------

DNS = config(dns={"provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}", "defaultTTL": 300})


def test_dns_provider_stops_the_plan_unless_records_are_kept_outside() -> None:
    state = desired_state(route(), global_config=DNS)
    assert node_verdict(state, None, None).errors == [
        "global.dns.provider (hetzner): DNS record management is not available yet on this node (agent.yaml does not "
        "say who keeps the records). Let the agent keep them with `dns: {provisioning: agent}` (and "
        "global.dns.target), or keep them yourself and declare that with `dns: {provisioning: external}`, or "
        "remove global.dns.provider"
    ]
    agent = node_verdict(state, None, DnsNodeSettings(provisioning="agent"))
    assert agent.errors == [
        "global.dns.provider (hetzner): dns.provisioning: agent needs to know where the records point: set "
        "global.dns.target (addresses: [...] of the balancer, or cname: host) in config.yaml, or "
        "dns.publicAddresses in agent.yaml on a node not behind a balancer"
    ]
    assert node_verdict(state, None, DnsNodeSettings(provisioning="agent", public_addresses=["192.0.2.7"])).errors == []
    targeted = config(dns={"provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}", "target": {"addresses": ["192.0.2.10"]}})
    lifted = node_verdict(desired_state(route(), global_config=targeted), None, DnsNodeSettings(provisioning="agent"))
    assert lifted.errors == []
    assert lifted.notes == [  # letsencrypt + file storage behind a balancer
        "certificates: the nodes behind one balancer (global.dns.target) keep certificates in node-local storage "
        "(file), so each node requests its own certificate for every domain from Let's Encrypt: one order per node "
        "per name, which runs into Let's Encrypt's rate limits (5 certificates for the same names per week, 50 per "
        "registered domain per week) and fails HTTP-01 challenges the balancer sends to another node. Set "
        "global.certificates.storage to storage the nodes share"
    ]
    shared = config(dns=targeted["global"]["dns"], certificates={"storage": "consul"})
    assert node_verdict(desired_state(route(), global_config=shared), None, DnsNodeSettings(provisioning="agent")).notes == []
    external = node_verdict(state, None, DnsNodeSettings(provisioning="external"))
    assert external.errors == []
    assert external.notes == [
        "global.dns.provider (hetzner): DNS records are kept outside the agent (dns.provisioning: external)"
    ]


def test_the_dns_token_is_a_secret_whatever_its_variable_is_called() -> None:
    assert is_sensitive(Reference("HETZNER_X", "global.dns.apiToken"))
    assert not is_sensitive(Reference("HETZNER_X", "global.dns.resolvers[0]"))
    literal = load_specs([SourceFile("config.yaml", dump_yaml(
        config(dns={"provider": "hetzner", "apiToken": "hunter2-real-token"})).encode())])
    assert literal.state is None
    assert all("hunter2" not in p.message for p in literal.problems)


# --- config.yaml: certificates.storage -----------------------------------------------------------


@pytest.mark.parametrize(("storage", "plugin"), [("vault", "github.com/gerolf-vent/caddy-vault-storage"),
                                                 ("consul", "github.com/pteich/caddy-tlsconsul"),
                                                 ("redis", "github.com/pberkel/caddy-storage-redis")])
def test_shared_storage_needs_its_plugin(storage: str, plugin: str) -> None:
    state = desired_state(route(), global_config=config(certificates={"storage": storage}))
    with pytest.raises(RenderError) as caught:
        render_caddy(state)
    assert caught.value.problems == [
        f"global.certificates.storage: {storage} needs the Caddy module caddy.storage.{storage}, which this Caddy "
        f"(2.6.2) does not have; build Caddy with it (xcaddy build --with {plugin}) or use storage: file"
    ]
    out = render_caddy(state, capabilities=CaddyCapabilities("2.6.2", frozenset({f"caddy.storage.{storage}"})))
    assert out["apps"]["tls"]["automation"]["policies"][0]["storage"] == {"module": storage}
    plain = render_caddy(desired_state(route()))
    assert "storage" not in plain["apps"]["tls"]["automation"]["policies"][0]


# --- config.yaml: healthChecks.default -----------------------------------------------------------


def test_the_default_health_check_applies_to_routes_without_their_own() -> None:
    defaults = config(healthChecks={"default": {"path": "/health", "interval": "30s", "timeout": "5s",
                                                "unhealthyThreshold": 4}})
    out = owned(route("app"), route("own", "own.example.com", healthCheck={"path": "/own"}), global_config=defaults)
    assert proxy(out, "app")["health_checks"]["active"] == {
        "uri": "/health", "interval": "30s", "timeout": "5s", "expect_status": 2}
    assert proxy(out, "app")["health_checks"]["passive"]["max_fails"] == 4
    own = proxy(out, "own")["health_checks"]["active"]
    assert own["uri"] == "/own" and own["interval"] == "30s" and own["timeout"] == "5s"
    assert "health_checks" not in proxy(owned(route("app")), "app")
    # without a path the defaults only fill in what a route's own check leaves out
    no_path = owned(route("app"), global_config=config(healthChecks={"default": {"interval": "30s"}}))
    assert "health_checks" not in proxy(no_path, "app")


# --- config.yaml: monitoring ------------------------------------------------------------------


def test_prometheus_turns_request_metrics_on_and_serves_them_on_its_port() -> None:
    out = owned(route(), global_config=config(monitoring={"prometheus": {"enabled": True, "port": 9191}}))
    metrics = servers(out)["hecate_metrics"]
    assert metrics["listen"] == [":9191"]
    assert metrics["routes"][0]["match"] == [{"path": ["/metrics"]}]
    assert metrics["routes"][0]["handle"] == [{"handler": "metrics"}]
    assert servers(out)["hecate"]["metrics"] == {} and servers(out)["hecate_http"]["metrics"] == {}
    assert "metrics" not in out["apps"]["http"]
    newer = owned(route(), global_config=config(monitoring={"prometheus": {"enabled": True}}),
                  capabilities=CaddyCapabilities("2.9.1"))
    assert newer["apps"]["http"]["metrics"] == {"per_host": True}
    assert "metrics" not in servers(newer)["hecate"]
    off = owned(route())
    assert "hecate_metrics" not in servers(off) and "metrics" not in servers(off)["hecate"]
    # the deprecated `metrics: true` turns request metrics on, without a listener of its own
    old = owned(route(), global_config=config(monitoring={"metrics": True}))
    assert servers(old)["hecate"]["metrics"] == {} and "hecate_metrics" not in servers(old)


def test_the_metrics_server_is_the_agents_on_merge() -> None:
    out = owned(route(), global_config=config(monitoring={"prometheus": {"enabled": True, "port": 9191}}))
    merged = merge({"apps": {"http": {"servers": {"hecate_metrics": {"listen": [":1"]}}}}}, out, CaddySettings())
    assert merged["apps"]["http"]["servers"]["hecate_metrics"]["listen"] == [":9191"]
    gone = merge(merged, owned(route()), CaddySettings())
    assert "hecate_metrics" not in gone["apps"]["http"]["servers"]


def test_the_metrics_port_is_checked_against_every_other_listener() -> None:
    state = desired_state(route(), stream("db", port=9191),
                          global_config=config(monitoring={"prometheus": {"enabled": True, "port": 9191}}))
    with pytest.raises(RenderError) as caught:
        render_all(state, "r", caddy=CaddySettings(), capabilities=CaddyCapabilities(), environment={})
    assert caught.value.problems == [
        "Stream/db: tcp 0.0.0.0:9191 collides with Caddy's listener 0.0.0.0:9191 (the Prometheus metrics listener); "
        "pick another port"
    ]
    state = desired_state(route(), global_config=config(monitoring={"prometheus": {"enabled": True, "port": 443}}))
    with pytest.raises(RenderError) as caught:
        render_all(state, "r", caddy=CaddySettings(), capabilities=CaddyCapabilities(), environment={})
    assert caught.value.problems == [
        "global.monitoring.prometheus.port 443 collides with Caddy's listener 0.0.0.0:443 "
        "(agent.yaml caddy.httpListen / caddy.httpsListen); pick another port"
    ]


TRACING = config(monitoring={"tracing": {"enabled": True, "endpoint": "jaeger:4317"}})


def test_tracing_needs_the_module_debian_disabled() -> None:
    state = desired_state(route(), global_config=TRACING)
    with pytest.raises(RenderError) as caught:
        render_caddy(state)
    assert caught.value.problems == [
        "global.monitoring.tracing: tracing needs the Caddy module http.handlers.tracing, which this Caddy (2.6.2) "
        "does not have (Debian's build disables it). Install an upstream Caddy build (caddyserver.com/download, or "
        "xcaddy build) or set monitoring.tracing.enabled: false"
    ]
    out = render_caddy(state, capabilities=CaddyCapabilities("2.6.2", frozenset({"http.handlers.tracing"})))
    site = servers(out)["hecate"]["routes"][0]["handle"][0]["routes"][0]["handle"]
    assert site[0] == {"handler": "tracing", "span": "app"}


def test_tracing_endpoint_is_compared_with_caddys_environment() -> None:
    state = desired_state(route(), global_config=TRACING)
    assert otel_endpoint("jaeger:4317") == "http://jaeger:4317"
    assert tracing_verdict(state, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, "pid 7").errors == []
    assert tracing_verdict(state, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4317"}, "pid 7").errors == []
    wrong = tracing_verdict(state, {"PATH": "/bin"}, "pid 7")
    assert wrong.errors == [
        "global.monitoring.tracing.endpoint: the running Caddy (pid 7) has no OTEL_EXPORTER_OTLP_ENDPOINT, not "
        "http://jaeger:4317. Caddy reads the exporter endpoint only from its environment: set it with a systemd "
        "drop-in and restart Caddy: `sudo systemctl edit caddy`, add the lines `[Service]` and "
        "`Environment=OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317`, then `sudo systemctl restart caddy`"
    ]
    other = tracing_verdict(state, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://old:4317"}, "pid 7")
    assert "has OTEL_EXPORTER_OTLP_ENDPOINT=http://old:4317, not http://jaeger:4317" in other.errors[0]
    with_password = tracing_verdict(state, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:s3cr3t@old:4317"}, "pid 7")
    assert "has OTEL_EXPORTER_OTLP_ENDPOINT=http://old:4317, not" in with_password.errors[0]
    assert "s3cr3t" not in with_password.errors[0]
    unknown = tracing_verdict(state, None, "pid 7: permission denied")
    assert unknown.errors == [] and "could not read the running Caddy's environment" in unknown.notes[0]


def test_the_environment_of_the_process_behind_an_admin_address(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = tmp_path / "ready"
    code = (f"import socket,pathlib,time\ns=socket.socket();s.bind(('127.0.0.1',{port}));s.listen()\n"
            f"pathlib.Path({str(ready)!r}).write_text('x')\ntime.sleep(30)")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        for _ in range(500):  # bounded: the child needs well under a second to listen
            if ready.exists() or child.poll() is not None:
                break
            time.sleep(0.02)
        environment, source = admin_process_environment(f"http://127.0.0.1:{port}")
        assert source == f"pid {child.pid}"
        assert environment is not None and environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317"
    finally:
        child.kill()
        child.wait()
    assert admin_process_environment(f"http://127.0.0.1:{port}")[0] is None
    assert admin_process_environment("http://caddy.example.com:2019") == (
        None, "its admin endpoint caddy.example.com is not on this host")


# --- agent.yaml ----------------------------------------------------------------------------------


def test_agent_yaml_declares_provisioning_and_the_outpost(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("authentik: {provisioning: external, outpostUrl: 'http://outpost:9000'}\n"
                    "dns: {provisioning: external}\n")
    settings = load_settings(path, environ={})
    assert settings.authentik is not None and settings.authentik.provisioning == "external"
    assert settings.authentik.outpost_url == "http://outpost:9000"
    assert settings.dns is not None and settings.dns.provisioning == "external"
    path.write_text("authentik: {provisioning: sometimes}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    assert "authentik.provisioning" in str(caught.value)


def test_dns_resolvers_are_the_ones_caddy_looks_upstream_names_up_with() -> None:
    out = owned(route(), global_config=config(dns={"resolvers": ["10.0.0.53", "${RESOLVER}"]}),
                environment={"RESOLVER": "10.0.0.54:5353"})
    assert proxy(out)["transport"] == {"protocol": "http", "resolver": {"addresses": ["10.0.0.53", "10.0.0.54:5353"]}}
    assert "transport" not in proxy(owned(route()))
