"""Every spec the agent accepts renders to a config the real proxies accept: Caddy 2.6.2's `/load` and
`nginx -t`. Hypothesis builds repositories from valid and borderline parts (a quick profile in the
default run; `HYPOTHESIS_PROFILE=slow` runs 10,000 examples)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hecate_agent.render.bundle import render_all
from hecate_agent.render.caddy import RenderError, merge
from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.targets.caddy_admin import CaddyError
from tests.helpers import dump_yaml
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.nginx import NginxInstance

SLOW = os.environ.get("HYPOTHESIS_PROFILE") == "slow"
EXAMPLES = 10_000 if SLOW else 40
# 10,000 renders through real Caddy and nginx -t take about half an hour on 2 cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3 * 3600 if SLOW else 300)]

names = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
# IPv6 zones (interface names) reach Caddy's dial addresses; broken IPv4 look-alikes and hostile zones
# must be refused before they get there.
zones = st.one_of(st.sampled_from(["lo", "eth0", "eth0.100", "br-1a2b", "wg_0", "Lo"]),
                  st.text(alphabet="abZ09_.-%{}; ]", min_size=0, max_size=17))
def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], weight: int = 8) -> st.SearchStrategy[Any]:
    """`rare` about once in `weight + 1` draws, so most examples are accepted and reach the proxies."""
    return st.sampled_from([False] * weight + [True]).flatmap(lambda pick: rare if pick else common)


hosts = rarely(st.one_of(st.just("127.0.0.1"), st.just("[::1]"), st.just("localhost"), st.just("app.internal"),
                         st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))),
               st.one_of(st.builds(lambda a, z: f"[{a}%{z}]", st.sampled_from(["fe80::1", "::1", "fe80::a:b"]), zones),
                         st.sampled_from(["999.1.1.1", "1.2.3.4.5", "0x7f000001", "[::1:80", "[::1%a]evil.example"])),
               weight=30)
ports = st.integers(1, 65535)
# Group names: plain ones, and the ones that would widen the X-Authentik-Groups matcher (refused).
groups = rarely(labels, st.sampled_from(["", " ", "|", "a|b", "admins.*", "(x)", "Ops Team", "grüppe", " x"]), weight=15)
dials = st.builds(lambda h, p: f"{h}:{p}", hosts, ports)
durations = st.sampled_from(["500ms", "1s", "2s", "10s", "30s", "5m", "1h", "1h30m"])
# Header names in any spelling: one header named twice in a rule is refused, a route's header replaces a
# global one of any spelling, and identity headers cannot be set on the upstream request.
header_names = st.sampled_from(["X-Frame-Options", "Cache-Control", "X-A", "X-Team", "Strict-Transport-Security",
                                "Content-Security-Policy", "X-Request-Source", "x-frame-options", "x-a",
                                "STRICT-TRANSPORT-SECURITY", "X-Request-ID", "x-request-id"])
upstream_header_names = rarely(header_names, st.sampled_from(["X-Authentik-Username", "x-authentik-groups"]), weight=20)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="{}"),
                        max_size=30)


@st.composite
def routes(draw: Any, name: str, domain: str, policies: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "domain": domain,
        "upstreams": draw(st.lists(st.builds(lambda d, w: {"dial": d, "weight": w}, dials, st.integers(1, 100)),
                                   min_size=1, max_size=4)),
        "tls": {"autoHTTPS": draw(st.booleans()), "forceHTTPS": draw(st.booleans()),
                "minVersion": draw(st.sampled_from(["1.2", "1.3"]))},
    }
    if draw(st.booleans()):
        interval = draw(st.sampled_from(["5s", "10s", "30s"]))
        spec["healthCheck"] = {"path": draw(st.sampled_from(["/", "/health", "/api/v1/ready"])), "interval": interval,
                               "timeout": draw(st.sampled_from(["1s", "2s"])),
                               "unhealthyThreshold": draw(st.integers(1, 10))}
    if draw(st.booleans()):
        spec["headers"] = {
            "set": draw(st.dictionaries(header_names, header_values, max_size=3)),
            "remove": draw(st.lists(header_names, max_size=2, unique=True)),
            "upstream": {"set": draw(st.dictionaries(upstream_header_names, header_values, max_size=2)),
                         "remove": draw(st.lists(rarely(st.sampled_from(["Cookie", "X-Debug", "cookie"]),
                                                        st.just("X-Authentik-Uid"), weight=20), max_size=2, unique=True))},
        }
    spec["middleware"] = draw(st.lists(st.sampled_from(["compression", "request-id"]), max_size=2, unique=True))
    if draw(st.booleans()):
        spec["canary"] = {"upstream": draw(dials), "percentage": draw(st.integers(0, 100))}
    if policies and draw(st.booleans()):
        spec["authPolicy"] = draw(st.sampled_from(policies))
    return {"apiVersion": "hecate.io/v1", "kind": "Route", "metadata": {"name": name}, "spec": spec}


@st.composite
def streams(draw: Any, name: str, port: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"protocol": draw(st.sampled_from(["tcp", "udp"]))}
    if draw(st.integers(0, 5)) == 0:
        spec = {"preset": draw(st.sampled_from(["mailcow", "jenkins", "wazuh"])),
                "listen": {"address": f"127.0.{port % 250}.{1 + port % 200}"}}
        # Nginx resolves upstream names when it loads (an unknown one fails `nginx -t`, and the apply
        # rolls back): only names this machine resolves.
        servers = st.sampled_from(["127.0.0.1", "localhost", "[::1]"])
    else:
        spec["listen"] = {"address": draw(st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "::"])), "port": port}
        servers = st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "[::1]", "localhost", "10.1.2.3",
                                                                  "[fe80::1%lo]", "999.1.1.1", "0x7f000001"]),
                            ports)
    spec["upstreams"] = draw(st.lists(st.builds(
        lambda s, w, f, b: {"server": s, "weight": w, "maxFails": f, "failTimeout": "10s", "backup": b},
        servers, st.integers(1, 100), st.integers(0, 10), st.booleans()), min_size=1, max_size=3))
    if draw(st.booleans()):
        spec["healthCheck"] = {"interval": "10s", "timeout": "2s"}
    return {"apiVersion": "hecate.io/v1", "kind": "Stream", "metadata": {"name": name}, "spec": spec}


@st.composite
def repositories(draw: Any) -> list[SourceFile]:
    policy_names = draw(st.lists(names, max_size=2, unique=True))
    policies = [{"apiVersion": "hecate.io/v1", "kind": "AuthPolicy", "metadata": {"name": p},
                 "spec": {"provider": "authentik", "flow": "login",
                          "requirements": {"groups": draw(st.lists(groups, min_size=1, max_size=3, unique=True)),
                                           "mfa": draw(st.booleans())},
                          "allowedMethods": draw(st.lists(st.sampled_from(["GET", "POST", "PUT"]), max_size=3,
                                                          unique=True))}}
                for p in policy_names]
    route_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    domains = draw(st.lists(st.one_of(st.builds(lambda a, b: f"{a}.{b}.example.com", labels, labels),
                                      st.builds(lambda a: f"*.{a}.example.com", labels)),
                            min_size=len(route_names), max_size=len(route_names), unique=True))
    docs = [draw(routes(n, d, policy_names)) for n, d in zip(route_names, domains, strict=True)]
    stream_names = draw(st.lists(names, max_size=3, unique=True))
    docs += [draw(streams(n, 20000 + i * 7)) for i, n in enumerate(stream_names)]
    config: dict[str, Any] = {"global": {
        "certificates": {"provider": "internal"},
        "security": {"tlsMinVersion": draw(st.sampled_from(["1.2", "1.3"])),
                     "headers": draw(st.dictionaries(header_names, header_values, max_size=2))},
        "monitoring": {"accessLogs": draw(st.booleans()), "metrics": draw(st.booleans())},
    }}
    if policies:
        config["global"]["authentik"] = {"outpostUrl": draw(st.sampled_from(["http://127.0.0.1:9000",
                                                                           "https://auth.internal:9443"]))}
    files = [SourceFile(f"specs/{i}.yaml", dump_yaml(d).encode()) for i, d in enumerate(docs + policies)]
    return [*files, SourceFile("config.yaml", dump_yaml(config).encode())]


def header_maps(node: Any) -> list[dict[str, Any]]:
    """Every `set` map of a headers handler in rendered Caddy JSON."""
    if isinstance(node, dict):
        found = [node["set"]] if isinstance(node.get("set"), dict) else []
        return found + [m for value in node.values() for m in header_maps(value)]
    if isinstance(node, list):
        return [m for value in node for m in header_maps(value)]
    return []


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(files=repositories())
def test_whatever_is_accepted_loads_into_caddy_and_passes_nginx_t(caddy: CaddyInstance, nginx: NginxInstance,
                                                                   files: list[SourceFile]) -> None:
    result = load_specs(files)
    if result.state is None:
        return  # refused with problems (e.g. two streams on one port): nothing reaches a proxy
    try:
        rendered = render_all(result.state, "fuzz", caddy=caddy.settings, capabilities=caddy_capabilities(),
                              environment={}, nginx_enabled=True)
    except RenderError:
        return  # refused for this node with a message: also fine
    for headers in header_maps(rendered.caddy_owned):  # one entry per header, whatever its spelling
        assert len({name.lower() for name in headers}) == len(headers), headers
    with caddy.admin() as admin:
        live = admin.get_config().config
        try:
            admin.load(merge(live, rendered.caddy_owned, caddy.settings))
        except CaddyError as exc:
            pytest.fail(f"Caddy refused an accepted revision: {exc}")
    nginx.stream_dir.mkdir(exist_ok=True)
    for old in nginx.stream_dir.glob("*.conf"):
        old.unlink()
    for name, text in rendered.nginx_files.items():
        (nginx.stream_dir / name).write_text(text)
    test = subprocess.run(list(nginx.settings.test_command), capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stderr + "\n" + "\n".join(rendered.nginx_files.values())
