"""A grouped 2,000-route config (render/caddy_layout.py) on real Caddy 2.6.2: every host reaches its own route."""

from __future__ import annotations

import http.client
import ssl

import pytest

from hecate_agent.render.caddy import render_caddy
from hecate_agent.targets.caddy import caddy_resources
from tests.helpers import config, desired_state, route
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.http import Upstream, https_get
from tests.support.servers import serving, wait_until

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def test_every_host_of_a_grouped_2000_route_config_reaches_its_own_route(caddy: CaddyInstance) -> None:
    upstreams = [Upstream(f"u{i}") for i in range(4)]
    names, hosts = [], []
    docs = []
    for i in range(2000):
        # Exact hosts, wildcards one label deep and wildcards two labels deep; one exact host under a wildcard.
        domain = (
            f"r{i}.example.com" if i < 1700
            else f"*.w{i}.example.com" if i < 1900
            else f"*.d{i}.deep.example.com" if i < 1999
            else "x.w1700.example.com"
        )
        names.append(f"n{i}")
        hosts.append(domain.replace("*", "y"))
        docs.append(route(f"n{i}", domain, tls=PLAIN, upstreams=[{"dial": upstreams[i % 4].dial}],
                          headers={"set": {"X-Route": f"n{i}"}}))
    state = desired_state(*docs)
    with serving(*upstreams):
        merged = caddy.apply(state)
        routes = merged["apps"]["http"]["servers"]["hecate_http"]["routes"]
        assert sum(r["@id"].startswith("hecate-group.exact.") for r in routes) >= 2  # really grouped
        assert any(r["@id"].startswith("hecate-group.wildcard-5.") for r in routes)
        conn = http.client.HTTPConnection("127.0.0.1", caddy.http_port, timeout=10)  # keep-alive, like a client
        try:
            def answer(host: str) -> tuple[int, str | None, str]:
                conn.request("GET", "/", headers={"Host": host})
                response = conn.getresponse()
                body = response.read()
                seen = response.getheader("X-Route")
                return response.status, seen, body.decode(errors="replace")

            wrong = []
            for index, (name, host) in enumerate(zip(names, hosts, strict=True)):
                status, seen, body = answer(host)
                if (status, seen) != (200, name) or f'"upstream": "u{index % 4}"' not in body:
                    wrong.append((host, status, seen))
            assert wrong == []
            assert answer("x.w1700.example.com")[1] == "n1999"  # the exact host, not the wildcard around it
            assert answer("z.w1700.example.com")[1] == "n1700"
            status, seen, body = answer("R1699.Example.COM")  # Caddy 2.6.2's large host lists are case-sensitive
            assert (status, seen) == (200, "n1699") and '"Host": "r1699.example.com"' in body
            assert answer("Y.W1800.EXAMPLE.COM")[1] == "n1800"
            for miss in ("a.b.w1800.example.com", "w1800.example.com", "r1.example.org", "x.r1.example.com"):
                assert answer(miss)[0] == 404, miss
        finally:
            conn.close()
        with caddy.admin() as admin:
            live = admin.get_config().config
    # The plan reads the grouped live config route by route: nothing differs from what was rendered.
    owned = render_caddy(state, caddy.settings, caddy_capabilities())
    want, _ = caddy_resources(owned, "hecate")
    have, unmanaged = caddy_resources(live, "hecate")
    assert unmanaged == [] and have == want and len([k for k in have if k.startswith("Route/")]) == 2000


def test_grouped_https_routes_get_certificates_for_exact_and_wildcard_hosts(caddy: CaddyInstance) -> None:
    """Caddy's automatic HTTPS finds the names to manage in the host matchers of a server's top-level
    routes only (modules/caddyhttp/autohttps.go): grouping must leave every name visible there."""
    backend = Upstream("backend")
    docs = [route(f"r{i}", f"r{i}.example.com", upstreams=[{"dial": backend.dial}]) for i in range(290)]
    docs += [route(f"w{i}", f"*.w{i}.example.com", upstreams=[{"dial": backend.dial}]) for i in range(10)]
    with serving(backend):
        merged = caddy.apply(desired_state(*docs, global_config=config(certificates={"provider": "internal"})))
        routes = merged["apps"]["http"]["servers"]["hecate"]["routes"]
        assert any(r["@id"].startswith("hecate-group.wildcard-4.") for r in routes)
        ca = caddy.root_certificate
        assert wait_until(ca.exists, timeout=20)

        def served(host: str) -> bool:
            try:
                return https_get(caddy.https_port, host, cafile=ca).status == 200
            except (OSError, ssl.SSLError):
                return False

        for host in ("r0.example.com", "r289.example.com", "x.w0.example.com", "y.w9.example.com"):
            assert wait_until(lambda host=host: served(host), timeout=60), host
