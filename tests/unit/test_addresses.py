"""Upstream addresses: one strict grammar, published as the schema patterns and used as such by the agent."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hecate_agent.spec.addresses import (
    DIAL_PATTERN,
    IPV6_PATTERN,
    STREAM_SERVER_PATTERN,
    AddressError,
    parse_dial,
    parse_http_url,
    parse_server,
)
from hecate_agent.spec.loader import LoadResult, load_specs
from tests.helpers import config, route
from tests.unit.test_loader import snapshot


def load(files: dict[str, object]) -> LoadResult:
    return load_specs(snapshot(files))


def ecma(pattern: str, value: str) -> bool:
    """The published pattern as an ECMA-262 engine reads it: `$` only at the very end."""
    return re.fullmatch(pattern, value) is not None


hextets = st.text("0123456789abcdefABCDEF", min_size=0, max_size=5)
ipv6ish = st.lists(st.one_of(hextets, st.just(""), st.just("1.2.3.4"), st.just("256.1.1.1")), min_size=1,
                   max_size=10).map(":".join)
zones = st.text("abAB09_.-%{} ;]", min_size=0, max_size=17)
hostish = st.one_of(
    st.builds(lambda a, z: f"[{a}]" if z is None else f"[{a}%{z}]", ipv6ish, st.none() | zones),
    st.lists(st.one_of(st.from_regex(r"[a-z0-9_-]{0,8}", fullmatch=True), st.integers(0, 999).map(str),
                       st.just("0x7f")), min_size=1, max_size=5).map(".".join),
    st.text("ab1.:[]%{}; \n_-0x", max_size=12),
)
portish = st.one_of(st.integers(0, 70000).map(str), st.just("080"), st.just(""), st.just("8o"))
addresses = st.one_of(st.builds(lambda h, p: f"{h}:{p}", hostish, portish), hostish)


@settings(max_examples=1500, deadline=None)
@given(text=ipv6ish)
def test_the_ipv6_pattern_agrees_with_the_standard_library(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
        valid = "%" not in text
    except ValueError:
        valid = False
    assert (re.fullmatch(IPV6_PATTERN, text) is not None) == valid, text


@settings(max_examples=1500, deadline=None)
@given(value=addresses)
def test_the_published_patterns_and_the_agent_give_one_verdict(value: str) -> None:
    try:
        parse_dial(value)
        dial_ok = True
    except AddressError:
        dial_ok = False
    assert ecma(DIAL_PATTERN, value) == dial_ok, value
    try:
        parse_server(value, with_port=False)
        server_ok = True
    except AddressError:
        server_ok = False
    assert ecma(STREAM_SERVER_PATTERN, value) == server_ok, value
    if dial_ok:  # what reaches Caddy: never a placeholder, never a second token
        assert not re.search(r"[{}\s;]", parse_dial(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("App.Internal:8080", "app.internal:8080"),
        ("[FE80::1%Eth0]:80", "[fe80::1%Eth0]:80"),  # interface names are case-sensitive
        ("[::ffff:10.0.0.1]:443", "[::ffff:10.0.0.1]:443"),
        ("svc_a.internal:1", "svc_a.internal:1"),
        ("1e5.example:65535", "1e5.example:65535"),
    ],
)
def test_valid_dials_are_normalized(value: str, expected: str) -> None:
    assert parse_dial(value) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://outpost:hunter2", "port"),
        ("http://outpost:090", "leading zero"),
        ("http://[::1", "not closed"),
        ("http://[1:2:3]:9000", "not a valid IPv6"),
        ("http://user:pw@outpost:9000", "user name or password"),
        ("http://999.1.1.1:9000", "looks like an IPv4 address"),
        ("http://outpost:9000/a b", "space"),
    ],
)
def test_a_written_outpost_url_is_parsed_by_validate(url: str, fragment: str) -> None:
    result = load({"config.yaml": config(authentik={"outpostUrl": url}), "routes/app.yaml": route()})
    assert result.state is None
    messages = [p.message for p in result.problems if p.field == "global.authentik.outpostUrl"]
    assert messages and fragment in messages[0], result.problems
    assert all(p.line >= 1 for p in result.problems)


@pytest.mark.parametrize(("url", "dial", "tls"), [("http://outpost:9000", "outpost:9000", False),
                                                  ("https://auth.internal", "auth.internal:443", True),
                                                  ("http://[::1]/prefix", "[::1]:80", False)])
def test_outpost_urls_become_dial_addresses(url: str, dial: str, tls: bool) -> None:
    assert parse_http_url(url) == (dial, tls)
