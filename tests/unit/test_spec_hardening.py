"""Values that used to be accepted and then crashed the renderer or meant something else to the proxy.

Same contract as test_models.py: where JSON Schema can express the rule, both the schema and the models
refuse; where it cannot (a URL's port, the longest Go duration), the schema accepts and the models refuse.
"""

from __future__ import annotations

from typing import Any

import pytest

from hecate_agent.spec.types import GO_MAX_MILLISECONDS, Duration
from tests.helpers import config, route, stream
from tests.unit.test_models import BOTH, MODEL_ONLY, kind_of, load_one, validator

OUTPOST = "global.authentik.outpostUrl"
HC_PATH = "spec.healthCheck.path"
FAIL_TIMEOUT = "spec.upstreams[0].failTimeout"


def outpost(url: str) -> dict[str, Any]:
    return config(authentik={"outpostUrl": url})


def health_path(path: str) -> dict[str, Any]:
    return route(healthCheck={"path": path})


def fail_timeout(value: str) -> dict[str, Any]:
    return stream(upstreams=[{"server": "10.0.0.2:5432", "failTimeout": value}])


INVALID: list[tuple[str, dict[str, Any], str, str, bool]] = [
    # outpostUrl: what urllib would only refuse when the renderer asks for the port
    ("outpost-port-high", outpost("http://h:99999"), OUTPOST, "the port must be from 1 to 65535", BOTH),
    ("outpost-port-text", outpost("http://h:x"), OUTPOST, "the port must be a number from 1 to 65535", BOTH),
    ("outpost-port-zero", outpost("http://h:0"), OUTPOST, "the port must be from 1 to 65535", BOTH),
    ("outpost-port-empty", outpost("http://h:"), OUTPOST, "it needs a port", BOTH),
    ("outpost-port-leading-zero", outpost("http://h:080"), OUTPOST, "the port has a leading zero", BOTH),
    ("outpost-ipv6-open", outpost("http://[::1/"), OUTPOST, "the '[' of an IPv6 address is not closed", BOTH),
    ("outpost-no-host", outpost("http://:9000"), OUTPOST, "the host is missing", BOTH),
    ("outpost-userinfo", outpost("http://user@h:9000"), OUTPOST, "user name or password", BOTH),
    ("outpost-reference-malformed", outpost("${OUTPOST-URL}"), OUTPOST, "write a URL, or a single reference", BOTH),
    ("outpost-ipv6-bad", outpost("http://[1:2:3]:9000"), OUTPOST,
     "not a usable URL", BOTH),
    ("outpost-host-label", outpost("http://-outpost:9000"), OUTPOST, "not a usable URL: the host name is not valid", BOTH),
    # health-check paths Caddy's URL parser refuses (or reads as something else)
    ("hc-path-control", health_path("/health\x01"), HC_PATH, "control characters", BOTH),
    ("hc-path-nul", health_path("/\x00"), HC_PATH, "control characters", BOTH),
    ("hc-path-del", health_path("/a\x7f"), HC_PATH, "control characters", BOTH),
    ("hc-path-c1", health_path("/a\x85"), HC_PATH, "control characters", BOTH),
    ("hc-path-tab", health_path("/a\tb"), HC_PATH, "control characters", BOTH),
    ("hc-path-bad-escape", health_path("/a%zz"), HC_PATH, "%XX escape", BOTH),
    ("hc-path-lone-percent", health_path("/100%"), HC_PATH, "%XX escape", BOTH),
    ("hc-path-query", health_path("/a?b=1"), HC_PATH, "'?'", BOTH),
    # durations Go's time.Duration cannot hold, and probe intervals beyond a day
    ("duration-go-max", route(healthCheck={"path": "/", "timeout": "110000d"}), "spec.healthCheck.timeout",
     "the longest duration Caddy can hold", MODEL_ONLY),
    ("duration-huge-digits", config(certificates={"renewalWindow": "9" * 5000 + "s"}),
     "global.certificates.renewalWindow", "the longest duration Caddy can hold", MODEL_ONLY),
    ("duration-one-past-go", config(certificates={"renewalWindow": f"{GO_MAX_MILLISECONDS + 1}ms"}),
     "global.certificates.renewalWindow", "longer than 106751d23h47m16s854ms", MODEL_ONLY),
    ("session-duration-go-max", {"apiVersion": "hecate.io/v1", "kind": "AuthPolicy", "metadata": {"name": "p"},
                                 "spec": {"provider": "authentik", "flow": "f",
                                          "requirements": {"sessionDuration": "106752d"}}},
     "spec.requirements.sessionDuration", "the longest duration Caddy can hold", MODEL_ONLY),
    ("hc-interval-over-a-day", route(healthCheck={"path": "/", "interval": "25h"}), "spec.healthCheck.interval",
     "longer than 1d, the most a health-check interval can be", MODEL_ONLY),
    ("global-interval-over-a-day", config(healthChecks={"interval": "2d"}), "global.healthChecks.interval",
     "longer than 1d", MODEL_ONLY),
    ("stream-interval-over-a-day", stream(healthCheck={"interval": "1d1ms"}), "spec.healthCheck.interval",
     "longer than 1d", MODEL_ONLY),
    # fail_timeout: Nginx counts it in whole seconds
    ("fail-timeout-ms", fail_timeout("500ms"), FAIL_TIMEOUT, "write e.g. '1s'", BOTH),
    ("fail-timeout-s-ms", fail_timeout("1s500ms"), FAIL_TIMEOUT, "write e.g. '2s'", BOTH),
    ("fail-timeout-1001ms", fail_timeout("1001ms"), FAIL_TIMEOUT, "whole seconds", BOTH),
    ("fail-timeout-go-max", fail_timeout("106752d"), FAIL_TIMEOUT, "the longest duration", MODEL_ONLY),
    # domains IDNA 2008 refuses (a joiner outside its context, a leading combining mark)
    ("domain-idna2008-joiner", route(domain="a\u200db.example.com"), "spec.domain",
     "not a valid internationalised domain name", MODEL_ONLY),
    ("domain-combining-mark", route(domain="\u0301a.example.com"), "spec.domain",
     "not a valid internationalised domain name", MODEL_ONLY),
]

VALID: dict[str, dict[str, Any]] = {
    "outpost-ipv6": outpost("http://[::1]:9000"),
    "outpost-https-default-port": outpost("https://auth.internal"),
    "outpost-reference": outpost("${OUTPOST_URL}"),
    "hc-path-escapes": health_path("/a%20b/%2F%c3%A9"),
    "hc-path-unicode": health_path("/gesundheit/prüfung"),
    "hc-path-punctuation": health_path("/-._~!$&'()*+,;=:@/"),
    "duration-go-max": config(certificates={"renewalWindow": str(Duration(GO_MAX_MILLISECONDS))}),
    "hc-interval-a-day": route(healthCheck={"path": "/", "interval": "1d", "timeout": "23h59m59s999ms"}),
    "fail-timeout-zero": fail_timeout("0s"),
    "fail-timeout-zero-ms": fail_timeout("0ms"),
    "fail-timeout-1000ms": fail_timeout("1000ms"),
    "fail-timeout-long": fail_timeout("106751d23h47m16s"),
    "domain-eszett": route(domain="faß.example.com"),
    "domain-wildcard-unicode": route(domain="*.Bücher.example"),
}


@pytest.mark.parametrize(("doc", "field", "fragment", "schema_refuses"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_refused(doc: dict[str, Any], field: str, fragment: str, schema_refuses: bool) -> None:
    result = load_one(doc)
    assert result.state is None
    reported = [(p.field, p.message) for p in result.problems]
    assert any(f == field and fragment in m for f, m in reported), reported
    assert all(len(m) < 400 for _, m in reported)  # a 5,000-digit value is not echoed back
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1, problem
    schema_errors = list(validator(kind_of(doc)).iter_errors(doc))
    assert bool(schema_errors) == schema_refuses, [e.message for e in schema_errors]


@pytest.mark.parametrize("doc", VALID.values(), ids=VALID.keys())
def test_accepted_by_both(doc: dict[str, Any]) -> None:
    assert load_one(doc).problems == []
    assert list(validator(kind_of(doc)).iter_errors(doc)) == []


@pytest.mark.parametrize(("written", "stored"), [
    ("faß.example.com", "xn--fa-hia.example.com"),  # UTS #46 non-transitional, as browsers: not 'fass'
    ("*.Faß.example.com", "*.xn--fa-hia.example.com"),
    ("\uff21\uff30\uff30\uff0eexample\uff0ecom", "app.example.com"),  # full-width letters and dots are mapped
    ("Bücher.Example", "xn--bcher-kva.example"),
])
def test_unicode_domains_map_as_browsers_do(written: str, stored: str) -> None:
    state = load_one(route(domain=written)).state
    assert state is not None and state.routes[0].doc.spec.domain == stored


@pytest.mark.parametrize(("written", "stored"), [
    ("::ffff:127.0.0.1", "127.0.0.1"), ("::FFFF:7f00:1", "127.0.0.1"), ("::ffff:0.0.0.0", "0.0.0.0"),
    ("::1", "::1"), ("2001:DB8::1", "2001:db8::1"),
])
def test_an_ipv4_mapped_listen_address_is_the_ipv4_address(written: str, stored: str) -> None:
    state = load_one(stream(listen={"address": written, "port": 5432})).state
    assert state is not None and state.streams[0].doc.spec.listen.address == stored


def test_a_mapped_address_conflicts_with_its_ipv4_form() -> None:
    from hecate_agent.spec.loader import SourceFile, load_specs
    from tests.helpers import dump_yaml

    result = load_specs([
        SourceFile("a.yaml", dump_yaml(stream("a", listen={"address": "127.0.0.1", "port": 7000})).encode()),
        SourceFile("b.yaml", dump_yaml(stream("b", listen={"address": "::ffff:127.0.0.1", "port": 7000})).encode()),
    ])
    assert any("already taken by Stream/a" in p.message for p in result.problems), result.problems


@pytest.mark.parametrize(("url", "reason"), [
    ("http://h:99999", "the port must be from 1 to 65535"),
    ("http://h:", "it needs a port"),
    ("http://[::1/", "is not closed"),
    ("http://[fe80::1%eth0]:9", "zone is not supported"),
    ("http://[fe80::1%25eth0]:9", "zone is not supported"),
    ("http://user:hunter2@h:9", "user name or password"),
    ("http://:9", "the host is missing"),
    ("http://bücher:9", "the host name is not valid"),
    ("http://-h:9", "the host name is not valid"),
    ("http://h:9/a b", "the path holds"),
    ("ftp://h", "not an http:// or https:// URL"),
])
def test_a_resolved_url_is_refused_without_quoting_it(url: str, reason: str) -> None:
    """The renderer parses resolved references with the same function: its reasons never quote the value."""
    from hecate_agent.spec.addresses import parse_http_url as parse_service_url

    with pytest.raises(ValueError) as caught:
        parse_service_url(url)
    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value) and "bücher" not in str(caught.value)


@pytest.mark.parametrize(("url", "dial", "tls"), [
    ("http://outpost:9000", "outpost:9000", False), ("https://Auth.Internal", "auth.internal:443", True),
    ("http://[::1]/outpost.goauthentik.io", "[::1]:80", False),
])
def test_a_service_url_gives_the_dial_address(url: str, dial: str, tls: bool) -> None:
    from hecate_agent.spec.addresses import parse_http_url as parse_service_url

    assert parse_service_url(url) == (dial, tls)


def test_case_ids_are_unique() -> None:
    ids = [case[0] for case in INVALID]
    assert len(ids) == len(set(ids))
