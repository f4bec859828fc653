"""Every spec rule, checked against the models (through the loader) and the JSON Schemas alike.

Each invalid case says whether JSON Schema can express the rule. Where it can,
both must refuse the document; where it cannot (IDNA, IPv6 syntax, timeout <
interval, ...), the schema must accept it and the models must refuse it. So the
two can never drift apart silently.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import pytest

from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.spec.types import Duration
from tests.helpers import SCHEMAS, auth_policy, config, dump_yaml, route, stream, with_value

SCHEMA_OF = {"Route": "route", "AuthPolicy": "authpolicy", "Stream": "stream", "Config": "config"}


@cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{SCHEMA_OF[kind]}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def kind_of(doc: dict[str, Any]) -> str:
    return str(doc.get("kind", "Config")) if "global" not in doc else "Config"


def load_one(doc: dict[str, Any]):
    name = "config.yaml" if kind_of(doc) == "Config" else "spec.yaml"
    return load_specs([SourceFile(name, dump_yaml(doc).encode())])


VALID = {
    "route-minimal": route(),
    "route-full": route(
        upstreams=[{"dial": "10.0.0.1:8080", "weight": 3}, {"dial": "app.internal:80", "weight": 100}],
        tls={"autoHTTPS": True, "forceHTTPS": False, "minVersion": "1.3"},
        healthCheck={"path": "/healthz", "interval": "1h30m", "timeout": "500ms", "unhealthyThreshold": 2},
        headers={"set": {"X-Frame-Options": "DENY"}, "remove": ["Server"],
                 "upstream": {"set": {"X-Env": "prod"}, "remove": ["Cookie"]}},
        middleware=["rate-limit:100/minute", "compression", "request-id"],
        canary={"upstream": "10.0.0.9:8080", "percentage": 100},
    ),
    "route-wildcard": route(domain="*.tenants.example.com"),
    "route-idna": route(domain="Bücher.Example"),
    "route-ipv6-upstream": route(upstreams=[{"dial": "[2001:db8::1]:443"}]),
    "route-canary-zero": route(canary={"upstream": "canary.internal:80", "percentage": 0}),
    "route-tls-float": route(tls={"minVersion": 1.3}),
    "route-single-label-name": route(name="a" * 63),
    "policy-full": auth_policy(
        requirements={"groups": ["staff"], "mfa": True, "sessionDuration": "30d"},
        metadata={"required": ["username", "email"]},
        allowedMethods=["GET", "POST"],
    ),
    "stream-tcp": stream(upstreams=[{"server": "10.0.0.2:5432", "weight": 2, "maxFails": 3,
                                     "failTimeout": "30s"}, {"server": "db2:5432", "backup": True}]),
    "stream-udp": stream(port=53, protocol="udp", upstreams=[{"server": "10.0.0.53:53"}]),
    "stream-preset": stream(port=None, preset="mailcow", upstreams=[{"server": "mail.internal"}]),
    "stream-ipv6-listen": stream(listen={"address": "::", "port": 8443}),
    "config-empty": config(),
    "config-full": config(
        dns={"resolvers": ["1.1.1.1", "${RESOLVER}"]},
        certificates={"provider": "letsencrypt", "email": "${ACME_EMAIL}", "renewalWindow": "30d"},
        healthChecks={"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3},
        monitoring={"metrics": True, "accessLogs": False},
        security={"tlsMinVersion": "1.3", "headers": {"X-Content-Type-Options": "nosniff"}},
        authentik={"outpostUrl": "http://outpost:9000"},
    ),
    "config-literal-dollar": config(certificates={"email": "ops$$team@example.com"}),
}


@pytest.mark.parametrize("doc", VALID.values(), ids=VALID.keys())
def test_valid_documents_pass_models_and_schema(doc: dict[str, Any]) -> None:
    result = load_one(doc)
    assert result.problems == []
    assert list(validator(kind_of(doc)).iter_errors(doc)) == []


BOTH = True  # JSON Schema can express the rule: both must refuse
MODEL_ONLY = False  # only the models can check it: the schema accepts, the models refuse

# (id, document, field the problem is reported on, fragment of the message, who refuses)
INVALID: list[tuple[str, dict[str, Any], str, str, bool]] = [
    # metadata.name
    ("name-uppercase", route(name="App"), "metadata.name", "lowercase DNS label", BOTH),
    ("name-too-long", route(name="a" * 64), "metadata.name", "longer than 63 characters", BOTH),
    ("name-leading-dash", route(name="-app"), "metadata.name", "lowercase DNS label", BOTH),
    ("name-missing", with_value(route(), "metadata", {}), "metadata.name", "required field is missing", BOTH),
    # document envelope
    ("api-version", with_value(route(), "apiVersion", "hecate.io/v2"), "apiVersion", "'hecate.io/v1'", BOTH),
    ("unknown-top-field", with_value(route(), "status", {}), "status", "unknown field", BOTH),
    ("unknown-spec-field", with_value(route(), "spec.domains", "x"), "spec.domains", "allowed here", BOTH),
    # domain
    ("domain-space", route(domain="exa mple.com"), "spec.domain", "host name", BOTH),
    ("domain-inner-wildcard", route(domain="a.*.example.com"), "spec.domain", "host name", BOTH),
    ("domain-placeholder", route(domain="{env.HOME}.example.com"), "spec.domain", "host name", BOTH),
    ("domain-wildcard-tld", route(domain="*.com"), "spec.domain", "at least two labels", MODEL_ONLY),
    ("domain-label-dash", route(domain="-bad.example.com"), "spec.domain", "not a valid host name", MODEL_ONLY),
    ("domain-ip", route(domain="10.0.0.1"), "spec.domain", "IP address", MODEL_ONLY),
    ("domain-label-too-long", route(domain="a" * 64 + ".example.com"), "spec.domain", "1-63", MODEL_ONLY),
    # upstreams
    ("upstreams-empty", route(upstreams=[]), "spec.upstreams", "at least 1", BOTH),
    ("dial-no-port", route(upstreams=[{"dial": "10.0.0.1"}]), "spec.upstreams[0].dial", "host:port", BOTH),
    ("dial-port-zero", route(upstreams=[{"dial": "10.0.0.1:0"}]), "spec.upstreams[0].dial", "from 1 to 65535",
     BOTH),
    ("dial-port-high", route(upstreams=[{"dial": "h:65536"}]), "spec.upstreams[0].dial", "from 1 to 65535",
     BOTH),
    ("dial-v6-unbracketed", route(upstreams=[{"dial": "2001:db8::1:80"}]), "spec.upstreams[0].dial",
     "brackets", BOTH),
    ("dial-v6-invalid", route(upstreams=[{"dial": "[1:2:3]:80"}]), "spec.upstreams[0].dial",
     "not a valid IPv6", BOTH),
    ("dial-injection", route(upstreams=[{"dial": "app;evil:80"}]), "spec.upstreams[0].dial",
     "space, control character", BOTH),
    # Strict dial addresses (issue 11): zones of interface-name characters only, no placeholders, no
    # broken brackets, no names that look like broken IPv4, no leading zeros in ports.
    ("dial-zone-placeholder", route(upstreams=[{"dial": "[fe80::1%{http.request.uri.query.x}]:80"}]),
     "spec.upstreams[0].dial", "brace", BOTH),
    ("canary-zone-placeholder", route(canary={"upstream": "[fe80::1%{env.SECRET}]:80", "percentage": 5}),
     "spec.canary.upstream", "brace", BOTH),
    ("dial-zone-space", route(upstreams=[{"dial": "[fe80::1%a b]:80"}]), "spec.upstreams[0].dial", "space", BOTH),
    ("dial-zone-semicolon", route(upstreams=[{"dial": "[fe80::1%a;b]:80"}]), "spec.upstreams[0].dial", "';'",
     BOTH),
    ("dial-zone-too-long", route(upstreams=[{"dial": "[fe80::1%abcdefghijklmnop]:80"}]),
     "spec.upstreams[0].dial", "interface name", BOTH),
    ("dial-zone-empty", route(upstreams=[{"dial": "[fe80::1%]:80"}]), "spec.upstreams[0].dial", "interface name",
     BOTH),
    ("dial-unclosed-bracket", route(upstreams=[{"dial": "[::1:80"}]), "spec.upstreams[0].dial", "not closed",
     BOTH),
    ("dial-host-after-bracket", route(upstreams=[{"dial": "[::1%a]evil.example:80"}]), "spec.upstreams[0].dial",
     "followed by ':port'", BOTH),
    ("dial-broken-ipv4", route(upstreams=[{"dial": "999.1.1.1:80"}]), "spec.upstreams[0].dial",
     "looks like an IPv4 address", BOTH),
    ("dial-five-numbers", route(upstreams=[{"dial": "1.2.3.4.5:80"}]), "spec.upstreams[0].dial",
     "looks like an IPv4 address", BOTH),
    ("dial-hex-number", route(upstreams=[{"dial": "0x7f000001:80"}]), "spec.upstreams[0].dial",
     "looks like an IPv4 address", BOTH),
    ("dial-octal-ipv4", route(upstreams=[{"dial": "010.0.0.1:80"}]), "spec.upstreams[0].dial",
     "looks like an IPv4 address", BOTH),
    ("dial-port-leading-zero", route(upstreams=[{"dial": "10.0.0.1:080"}]), "spec.upstreams[0].dial",
     "leading zero", BOTH),
    ("dial-newline", route(upstreams=[{"dial": "10.0.0.1\n:80"}]), "spec.upstreams[0].dial", "control character",
     BOTH),
    ("stream-server-zone", stream(upstreams=[{"server": "[fe80::1%eth0]:5432"}]), "spec.upstreams[0].server",
     "zone", BOTH),
    ("stream-server-broken-ipv4", stream(upstreams=[{"server": "1.2.3.4.5:5432"}]), "spec.upstreams[0].server",
     "looks like an IPv4 address", BOTH),
    ("stream-server-port-leading-zero", stream(upstreams=[{"server": "db:05432"}]), "spec.upstreams[0].server",
     "leading zero", BOTH),
    ("weight-zero", route(upstreams=[{"dial": "a:1", "weight": 0}]), "spec.upstreams[0].weight",
     "at least 1", BOTH),
    ("weight-high", route(upstreams=[{"dial": "a:1", "weight": 101}]), "spec.upstreams[0].weight",
     "at most 100", BOTH),
    ("weight-string", route(upstreams=[{"dial": "a:1", "weight": "3"}]), "spec.upstreams[0].weight",
     "remove the quotes", BOTH),
    ("weight-float", route(upstreams=[{"dial": "a:1", "weight": 1.5}]), "spec.upstreams[0].weight",
     "expected an integer", BOTH),
    # tls
    ("tls-1.1", route(tls={"minVersion": "1.1"}), "spec.tls.minVersion", "security policy", BOTH),
    ("tls-1.0-float", route(tls={"minVersion": 1.0}), "spec.tls.minVersion", "security policy", BOTH),
    ("tls-auto-string", route(tls={"autoHTTPS": "yes"}), "spec.tls.autoHTTPS", "true or false", BOTH),
    # health checks
    ("hc-path-relative", route(healthCheck={"path": "health"}), "spec.healthCheck.path", "starting with '/'",
     BOTH),
    ("hc-duration-no-unit", route(healthCheck={"path": "/h", "interval": "10"}), "spec.healthCheck.interval",
     "not a duration", BOTH),
    ("hc-duration-space", route(healthCheck={"path": "/h", "interval": "10 s"}), "spec.healthCheck.interval",
     "not a duration", BOTH),
    ("hc-duration-number", route(healthCheck={"path": "/h", "timeout": 5}), "spec.healthCheck.timeout",
     "write the unit", BOTH),
    ("hc-timeout-not-below", route(healthCheck={"path": "/h", "interval": "5s", "timeout": "5s"}),
     "spec.healthCheck.timeout", "must be shorter than interval", MODEL_ONLY),
    # headers
    ("header-name-space", route(headers={"set": {"Bad Header": "x"}}), "spec.headers.set.Bad Header",
     "HTTP header name", BOTH),
    ("header-value-crlf", route(headers={"set": {"X-A": "a\r\nInjected: 1"}}), "spec.headers.set.X-A",
     "line breaks", BOTH),
    ("header-value-placeholder", route(headers={"set": {"X-A": "{env.AWS_SECRET_ACCESS_KEY}"}}),
     "spec.headers.set.X-A", "placeholders", BOTH),
    ("header-remove-bad", route(headers={"remove": ["Bad Header"]}), "spec.headers.remove[0]",
     "HTTP header name", BOTH),
    ("upstream-header-placeholder", route(headers={"upstream": {"set": {"X-H": "{http.request.host}"}}}),
     "spec.headers.upstream.set.X-H", "placeholders", BOTH),
    # middleware
    ("middleware-unknown", route(middleware=["gzip"]), "spec.middleware[0]", "known: compression", BOTH),
    ("middleware-rate-unit", route(middleware=["rate-limit:100/day"]), "spec.middleware[0]",
     "rate-limit:<n>/<second|minute|hour>", BOTH),
    ("middleware-rate-zero", route(middleware=["rate-limit:0/minute"]), "spec.middleware[0]",
     "rate-limit:<n>", BOTH),
    ("middleware-twice", route(middleware=["compression", "compression"]), "spec",
     "listed twice", MODEL_ONLY),
    # canary
    ("canary-over", route(canary={"upstream": "c:80", "percentage": 101}), "spec.canary.percentage",
     "at most 100", BOTH),
    ("canary-negative", route(canary={"upstream": "c:80", "percentage": -1}), "spec.canary.percentage",
     "at least 0", BOTH),
    ("canary-no-port", route(canary={"upstream": "canary", "percentage": 5}), "spec.canary.upstream",
     "host:port", BOTH),
    ("auth-policy-name", route(authPolicy="Staff"), "spec.authPolicy", "lowercase DNS label", BOTH),
    # AuthPolicy
    ("provider-keycloak", auth_policy(provider="keycloak"), "spec.provider", "only provider for now", BOTH),
    ("flow-missing", with_value(auth_policy(), "spec", {"provider": "authentik"}), "spec.flow",
     "required field", BOTH),
    ("session-duration", auth_policy(requirements={"sessionDuration": "8 hours"}),
     "spec.requirements.sessionDuration", "not a duration", BOTH),
    ("required-attribute", auth_policy(metadata={"required": ["password"]}), "spec.metadata.required[0]",
     "'username'", BOTH),
    ("allowed-method", auth_policy(allowedMethods=["FETCH"]), "spec.allowedMethods[0]", "'GET'", BOTH),
    ("mfa-string", auth_policy(requirements={"mfa": "yes"}), "spec.requirements.mfa", "true or false", BOTH),
    # Stream
    ("protocol", stream(protocol="sctp"), "spec.protocol", "'tcp' or 'udp'", BOTH),
    ("listen-hostname", stream(listen={"address": "localhost", "port": 1}), "spec.listen.address",
     "IP address", BOTH),
    ("listen-bad-ip", stream(listen={"address": "999.1.1.1", "port": 1}), "spec.listen.address",
     "not an IP address", MODEL_ONLY),
    ("listen-port-zero", stream(port=0), "spec.listen.port", "at least 1", BOTH),
    ("listen-port-high", stream(port=70000), "spec.listen.port", "at most 65535", BOTH),
    ("listen-port-missing", stream(port=None), "spec", "listen.port is required", MODEL_ONLY),
    ("preset-unknown", stream(port=None, preset="exchange"), "spec.preset", "'mailcow'", BOTH),
    ("preset-with-port", stream(port=25, preset="mailcow", upstreams=[{"server": "m"}]), "spec",
     "preset 'mailcow' decides the ports", MODEL_ONLY),
    ("preset-udp", stream(port=None, preset="wazuh", protocol="udp", upstreams=[{"server": "w"}]), "spec",
     "TCP only", MODEL_ONLY),
    ("preset-upstream-port", stream(port=None, preset="jenkins", upstreams=[{"server": "ci:50000"}]), "spec",
     "give the host only", MODEL_ONLY),
    ("stream-upstream-no-port", stream(upstreams=[{"server": "10.0.0.2"}]), "spec", "needs a port",
     MODEL_ONLY),
    ("stream-all-backup", stream(upstreams=[{"server": "a:1", "backup": True}]), "spec",
     "at least one must be a primary", MODEL_ONLY),
    ("stream-server-injection", stream(upstreams=[{"server": "a b;:1"}]), "spec.upstreams[0].server",
     "space, control character", BOTH),
    ("max-fails-negative", stream(upstreams=[{"server": "a:1", "maxFails": -1}]),
     "spec.upstreams[0].maxFails", "at least 0", BOTH),
    ("fail-timeout", stream(upstreams=[{"server": "a:1", "failTimeout": "soon"}]),
     "spec.upstreams[0].failTimeout", "not a duration", BOTH),
    # global config
    ("cert-provider", config(certificates={"provider": "zerossl"}), "global.certificates.provider",
     "'letsencrypt' or 'internal'", BOTH),
    ("env-reference-open", config(dns={"resolvers": ["${BROKEN"]}), "global.dns.resolvers[0]",
     "${NAME}", BOTH),
    ("env-reference-name", config(certificates={"email": "${1ABC}"}), "global.certificates.email",
     "${NAME}", BOTH),
    ("env-placeholder", config(certificates={"email": "{env.HOME}"}), "global.certificates.email",
     "${NAME}", BOTH),
    ("outpost-scheme", config(authentik={"outpostUrl": "ftp://outpost"}), "global.authentik.outpostUrl",
     "http:// or https:// URL", BOTH),
    ("global-tls-old", config(security={"tlsMinVersion": "1.0"}), "global.security.tlsMinVersion",
     "security policy", BOTH),
    ("global-hc-order", config(healthChecks={"interval": "1s", "timeout": "2s"}), "global.healthChecks.timeout",
     "must be shorter", MODEL_ONLY),
    ("global-unknown", config(logging={}), "global.logging", "unknown field", BOTH),
    ("monitoring-string", config(monitoring={"metrics": "yes"}), "global.monitoring.metrics", "true or false",
     BOTH),
]


@pytest.mark.parametrize(("doc", "field", "fragment", "schema_refuses"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_documents(doc: dict[str, Any], field: str, fragment: str, schema_refuses: bool) -> None:
    result = load_one(doc)
    assert result.state is None
    reported = [(p.field, p.message) for p in result.problems]
    assert any(f == field and fragment in m for f, m in reported), reported
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1, problem
    schema_errors = list(validator(kind_of(doc)).iter_errors(doc))
    assert bool(schema_errors) == schema_refuses, [e.message for e in schema_errors]


def test_invalid_case_ids_are_unique() -> None:
    ids = [case[0] for case in INVALID]
    assert len(ids) == len(set(ids))


def test_domain_is_stored_lowercased_in_ascii() -> None:
    state = load_one(route(domain="Bücher.Example")).state
    assert state is not None
    assert state.routes[0].doc.spec.domain == "xn--bcher-kva.example"
    state = load_one(route(domain="APP.Example.COM")).state
    assert state is not None and state.routes[0].doc.spec.domain == "app.example.com"


def test_defaults() -> None:
    state = load_one(route()).state
    assert state is not None
    spec = state.routes[0].doc.spec
    assert spec.tls.auto_https is True and spec.tls.force_https is True
    assert spec.upstreams[0].weight == 1
    assert state.config.security.tls_min_version == "1.2"


@pytest.mark.parametrize(
    ("text", "milliseconds", "canonical"),
    [("500ms", 500, "500ms"), ("30s", 30_000, "30s"), ("5m", 300_000, "5m"), ("4h", 14_400_000, "4h"),
     ("30d", 2_592_000_000, "30d"), ("1h30m", 5_400_000, "1h30m"), ("90s", 90_000, "1m30s"), ("0s", 0, "0s")],
)
def test_durations_parse_to_a_typed_value(text: str, milliseconds: int, canonical: str) -> None:
    duration = Duration.parse(text)
    assert duration.milliseconds == milliseconds
    assert str(duration) == canonical


@pytest.mark.parametrize("text", ["", "10", "1.5s", "s", "5 m", "1m1h", "-5s", "1w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        Duration.parse(text)


def test_middleware_is_typed() -> None:
    from hecate_agent.spec.types import Compression, RateLimit, RequestId

    state = load_one(route(middleware=["rate-limit:20/second", "compression", "request-id"])).state
    assert state is not None
    assert state.routes[0].doc.spec.middleware == [RateLimit(20, "second"), Compression(), RequestId()]


def test_stream_listeners_count_every_preset_port() -> None:
    state = load_one(stream(port=None, preset="mailcow", upstreams=[{"server": "mail"}])).state
    assert state is not None
    ports = [port for _, port, _ in state.streams[0].doc.spec.listeners()]
    assert ports == [25, 465, 587, 143, 993, 110, 995]


def test_default_timeout_is_checked_against_a_short_interval() -> None:
    result = load_one(stream(healthCheck={"interval": "1s"}))
    assert [(p.field, "timeout (2s) must be shorter than interval (1s)" in p.message) for p in result.problems] == [
        ("spec.healthCheck.timeout", True)
    ]
