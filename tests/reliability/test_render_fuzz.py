"""Every spec the agent accepts renders to a config the real proxies accept: Caddy 2.6.2's `/load` and
`nginx -t`. Hypothesis builds repositories from valid and borderline parts (a quick profile in the
default run; `HYPOTHESIS_PROFILE=slow` runs 10,000 examples)."""

from __future__ import annotations

import os
import re
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


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """`usual`, and `rare` about once in `one_in` draws: one refused field refuses a whole repository, so values
    the agent must refuse stay rare enough that most examples are accepted and reach the real proxies."""
    return st.sampled_from([False] * (one_in - 1) + [True]).flatmap(lambda is_rare: rare if is_rare else usual)


hosts = mostly(st.one_of(st.just("127.0.0.1"), st.just("[::1]"), st.just("localhost"), st.just("app.internal"),
                         st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))),
               st.one_of(st.builds(lambda a, z: f"[{a}%{z}]", st.sampled_from(["fe80::1", "::1", "fe80::a:b"]), zones),
                         st.sampled_from(["999.1.1.1", "1.2.3.4.5", "0x7f000001", "[::1:80", "[::1%a]evil.example"])),
               one_in=31)
ports = st.integers(1, 65535)
# Group names: plain ones, and the ones that would widen the X-Authentik-Groups matcher (refused).
groups = mostly(labels, st.sampled_from(["", " ", "|", "a|b", "admins.*", "(x)", "Ops Team", "grüppe", " x"]), one_in=16)
dials = st.builds(lambda h, p: f"{h}:{p}", hosts, ports)
durations = st.sampled_from(["500ms", "1s", "2s", "10s", "30s", "5m", "1h", "1h30m"])


# Durations at the limits: a probe's day and Go's time.Duration (106751d23h47m16s854ms), and just past both.
probe_intervals = mostly(st.sampled_from(["5s", "10s", "30s", "1d", "23h59m59s999ms"]),
                         st.sampled_from(["1d1ms", "25h", "106751d23h47m16s854ms", "106751d23h47m16s855ms",
                                          "110000d", "9" * 30 + "s"]))
probe_timeouts = mostly(st.sampled_from(["1ms", "999ms", "1s", "2s", "23h59m59s998ms"]),
                        st.sampled_from(["1d", "1d1ms", "110000d", "0s"]))
fail_timeouts = mostly(st.sampled_from(["10s", "0s", "0ms", "1000ms", "1m30s", "106751d23h47m16s"]),
                       st.sampled_from(["500ms", "1s500ms", "106752d"]))
# Health paths: usual ones, percent escapes, non-ASCII; rarely anything at all after the '/'.
health_paths = mostly(
    st.sampled_from(["/", "/health", "/api/v1/ready", "/a%20b", "/%c3%A9t%C3%A9", "/prüfung", "/-._~!$&'()*+,;=:@",
                     "/健康"]),
    st.one_of(st.sampled_from(["/100%", "/a%zz", "/h\x01", "/h\x7f", "/h\u0085", "/a b", "/?q", "/#f"]),
              st.builds(lambda text: "/" + text, st.text(max_size=12))),
    one_in=4,
)
# Unicode labels as people write them: mapped with UTS #46 / IDNA 2008 (or, rarely, refused with a message).
unicode_labels = mostly(
    st.sampled_from(["faß", "bücher", "σίσυφος", "пример", "例え", "\uff21\uff30\uff30", "straße", "xn--fa-hia"]),
    st.one_of(st.sampled_from(["a\u200db", "\u0301a", "İstanbul"]),
              st.text(alphabet=st.characters(categories=["Ll", "Lu", "Lo", "Mn", "Nd"]), min_size=1, max_size=8)),
    one_in=4,
)
# Integers no spec field takes, written into the YAML as they come (decimal, hex, octal; beyond 4,300 digits).
huge_integers = st.sampled_from([str(2**63 - 1), str(2**63), "9" * 5000, "-" + "9" * 5000, "0x" + "f" * 5000,
                                 "0x8000000000000000", "0o" + "7" * 30])
# Header names in any spelling: one header named twice in a rule is refused, a route's header replaces a
# global one of any spelling, and identity headers cannot be set on the upstream request.
header_names = st.sampled_from(["X-Frame-Options", "Cache-Control", "X-A", "X-Team", "Strict-Transport-Security",
                                "Content-Security-Policy", "X-Request-Source", "x-frame-options", "x-a",
                                "STRICT-TRANSPORT-SECURITY", "X-Request-ID", "x-request-id"])
upstream_header_names = mostly(header_names, st.sampled_from(["X-Authentik-Username", "x-authentik-groups"]), one_in=21)
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
        spec["healthCheck"] = {"path": draw(health_paths), "interval": draw(probe_intervals),
                               "timeout": draw(probe_timeouts),
                               "unhealthyThreshold": draw(st.integers(1, 100))}
    if draw(st.booleans()):
        spec["headers"] = {
            "set": draw(st.dictionaries(header_names, header_values, max_size=3)),
            "remove": draw(st.lists(header_names, max_size=2, unique=True)),
            "upstream": {"set": draw(st.dictionaries(upstream_header_names, header_values, max_size=2)),
                         "remove": draw(st.lists(mostly(st.sampled_from(["Cookie", "X-Debug", "cookie"]),
                                                        st.just("X-Authentik-Uid"), one_in=21), max_size=2, unique=True))},
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
        spec["listen"] = {"address": draw(st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1",
                                                            "::ffff:0.0.0.0"])), "port": port}
        servers = st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "[::1]", "localhost", "10.1.2.3",
                                                                  "[fe80::1%lo]", "999.1.1.1", "0x7f000001"]),
                            ports)
    spec["upstreams"] = draw(st.lists(st.builds(
        lambda s, w, f, t, b: {"server": s, "weight": w, "maxFails": f, "failTimeout": t, "backup": b},
        servers, st.integers(1, 100), st.integers(0, 10), fail_timeouts, st.booleans()), min_size=1, max_size=3))
    if draw(st.booleans()) and spec.get("protocol", "tcp") == "tcp":  # TCP probes: tcp streams only
        spec["healthCheck"] = {"interval": draw(probe_intervals), "timeout": draw(probe_timeouts)}
    return {"apiVersion": "hecate.io/v1", "kind": "Stream", "metadata": {"name": name}, "spec": spec}


@st.composite
def repositories(draw: Any) -> list[SourceFile]:
    policy_names = draw(st.lists(names, max_size=2, unique=True))
    policies = [{"apiVersion": "hecate.io/v1", "kind": "AuthPolicy", "metadata": {"name": p},
                 "spec": {"provider": "authentik", "flow": "login",
                          "requirements": {"groups": draw(st.lists(groups, min_size=1, max_size=3, unique=True)),
                                           "mfa": draw(st.sampled_from(["required", "optional", "disabled",
                                                                        True, False]))},
                          "allowedMethods": draw(st.lists(st.sampled_from(["password", "webauthn", "totp"]),
                                                          max_size=3, unique=True)),
                          "allowedHttpMethods": draw(st.lists(st.sampled_from(["GET", "POST", "PUT"]), max_size=3,
                                                              unique=True))}}
                for p in policy_names]
    route_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    domains = draw(st.lists(st.one_of(st.builds(lambda a, b: f"{a}.{b}.example.com", labels, labels),
                                      st.builds(lambda a: f"*.{a}.example.com", labels),
                                      st.builds(lambda a, b: f"{a}.{b}.example.com", unicode_labels, labels),
                                      st.builds(lambda a: f"*.{a}.example.com", unicode_labels)),
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
    huge = draw(mostly(st.none(), huge_integers, one_in=10))
    if huge is not None:  # written into the YAML text: dump_yaml itself cannot write a 5,000-digit integer
        files[0] = SourceFile(files[0].path, re.sub(rb"weight: [0-9]+", b"weight: " + huge.encode(), files[0].data))
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
