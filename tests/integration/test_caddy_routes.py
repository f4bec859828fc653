"""Route and AuthPolicy specs rendered to Caddy JSON and proven with real HTTP(S) traffic through Caddy 2.6.2."""

from __future__ import annotations

import collections
import gzip
import ssl
import subprocess
import sys
import time

import pytest

from hecate_agent.render.caddy import RenderError, merge, render_caddy
from hecate_agent.spec.loader import DesiredState
from hecate_agent.targets.caddy_admin import CaddyError
from tests.helpers import SAMPLE_REPO, auth_policy, config, desired_state, route
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.http import FakeOutpost, OutpostServer, Upstream, http_get, https_get
from tests.support.servers import serving, wait_until

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def state_of(*docs: dict, global_config: dict | None = None) -> DesiredState:
    return desired_state(*docs, global_config=global_config)


def who(reply) -> str:  # type: ignore[no-untyped-def]
    assert reply.status == 200, (reply.status, reply.body[:200])
    return str(reply.json()["upstream"])


def test_hosts_exact_and_wildcard_most_specific_wins_unknown_is_404(caddy: CaddyInstance) -> None:
    exact, wild, other = Upstream("exact"), Upstream("wild"), Upstream("other")
    with serving(exact, wild, other):
        caddy.apply(state_of(
            route("wild", "*.apps.example.com", tls=PLAIN, upstreams=[{"dial": wild.dial}]),
            route("exact", "special.apps.example.com", tls=PLAIN, upstreams=[{"dial": exact.dial}]),
            route("other", "other.example.com", tls=PLAIN, upstreams=[{"dial": other.dial}]),
        ))
        port = caddy.http_port
        assert who(http_get(port, "special.apps.example.com")) == "exact"
        assert who(http_get(port, "x.apps.example.com")) == "wild"
        assert who(http_get(port, "OTHER.example.com")) == "other"
        assert http_get(port, "a.b.apps.example.com").status == 404  # a wildcard matches one label
        assert http_get(port, "unknown.example.org").status == 404


def proportions(port: int, host: str, count: int) -> collections.Counter[str]:
    return collections.Counter(who(http_get(port, host)) for _ in range(count))


def test_weights_90_10(caddy: CaddyInstance) -> None:
    a, b = Upstream("a"), Upstream("b")
    with serving(a, b):
        caddy.apply(state_of(route("w", "w.example.com", tls=PLAIN,
                                   upstreams=[{"dial": a.dial, "weight": 90}, {"dial": b.dial, "weight": 10}])))
        counts = proportions(caddy.http_port, "w.example.com", 1000)
    assert abs(counts["a"] / 1000 - 0.90) <= 0.03, counts


@pytest.mark.parametrize(("percentage", "expected"), [(10, 0.10), (0, 0.0), (100, 1.0)])
def test_canary_share(caddy: CaddyInstance, percentage: int, expected: float) -> None:
    stable1, stable2, canary = Upstream("stable1"), Upstream("stable2"), Upstream("canary")
    with serving(stable1, stable2, canary):
        caddy.apply(state_of(route("c", "c.example.com", tls=PLAIN,
                                   upstreams=[{"dial": stable1.dial}, {"dial": stable2.dial}],
                                   canary={"upstream": canary.dial, "percentage": percentage})))
        count = 1000 if percentage not in (0, 100) else 200
        counts = proportions(caddy.http_port, "c.example.com", count)
    share = counts["canary"] / count
    if percentage in (0, 100):
        assert share == expected, counts  # exact
    else:
        assert abs(share - expected) <= 0.03, counts
        assert abs(counts["stable1"] - counts["stable2"]) <= 0.03 * count


def test_unhealthy_upstream_is_taken_out_and_comes_back(caddy: CaddyInstance) -> None:
    good, flaky = Upstream("good"), Upstream("flaky")
    with serving(good, flaky):
        caddy.apply(state_of(route("h", "h.example.com", tls=PLAIN,
                                   upstreams=[{"dial": good.dial}, {"dial": flaky.dial}],
                                   healthCheck={"path": "/health", "interval": "500ms", "timeout": "200ms",
                                                "unhealthyThreshold": 2})))
        port = caddy.http_port
        assert set(proportions(port, "h.example.com", 20)) == {"good", "flaky"}
        flaky.healthy = False
        started = time.monotonic()
        # interval x threshold = 1 s (Caddy 2.6.2 takes an upstream out after one failed probe)
        assert wait_until(lambda: set(proportions(port, "h.example.com", 10)) == {"good"}, timeout=1.5)
        assert time.monotonic() - started <= 1.5
        assert set(proportions(port, "h.example.com", 30)) == {"good"}
        flaky.healthy = True
        assert wait_until(lambda: "flaky" in proportions(port, "h.example.com", 10), timeout=3)


def test_headers_request_id_and_compression(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    with serving(backend):
        caddy.apply(state_of(
            route("hd", "hd.example.com", tls=PLAIN, upstreams=[{"dial": backend.dial}],
                  headers={"set": {"X-Frame-Options": "SAMEORIGIN", "X-Custom": "yes"},
                           "remove": ["X-Powered-By", "X-Content-Type-Options"],
                           "upstream": {"set": {"X-Env": "prod"}, "remove": ["Cookie"]}},
                  middleware=["request-id", "compression"]),
            global_config=config(security={"headers": {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                                                       "Referrer-Policy": "no-referrer"}}),
        ))
        reply = http_get(caddy.http_port, "hd.example.com", "/", {"Cookie": "session=secret", "X-Keep": "1"})
        seen = reply.json()["headers"]
        assert reply.headers["X-Frame-Options"] == "SAMEORIGIN"  # the route overrides the global default
        assert reply.headers["Referrer-Policy"] == "no-referrer"  # a global default the route keeps
        assert reply.headers["X-Custom"] == "yes"
        assert "X-Powered-By" not in reply.headers  # removed from the backend's response
        assert "X-Content-Type-Options" not in reply.headers  # a default the route removes
        assert seen["X-Env"] == "prod" and "Cookie" not in seen and seen["X-Keep"] == "1"
        request_id = reply.headers["X-Request-ID"]
        assert len(request_id) == 36 and seen["X-Request-Id"] == request_id
        assert http_get(caddy.http_port, "hd.example.com").headers["X-Request-ID"] != request_id
        zipped = http_get(caddy.http_port, "hd.example.com", "/big", {"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert b"hecate hecate" in gzip.decompress(zipped.body)
        assert len(zipped.body) < 20_000
        zstd = http_get(caddy.http_port, "hd.example.com", "/big", {"Accept-Encoding": "zstd"})
        assert zstd.headers["Content-Encoding"] == "zstd"
        plain = http_get(caddy.http_port, "hd.example.com", "/big")
        assert "Content-Encoding" not in plain.headers


def auth_state(outpost_url: str, backend: Upstream, **policy: object) -> tuple[DesiredState, dict[str, str]]:
    state = state_of(
        route("app", "app.example.com", tls=PLAIN, authPolicy="staff", upstreams=[{"dial": backend.dial}]),
        auth_policy("staff", requirements={"groups": ["staff", "s.r+e"]}, **policy),
        global_config=config(authentik={"outpostUrl": "${OUTPOST_URL}"}),
    )
    return state, {"OUTPOST_URL": outpost_url}


def test_forward_auth_to_an_authentik_outpost(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    outpost = FakeOutpost(sessions={
        "alice": {"X-Authentik-Username": "alice", "X-Authentik-Groups": "users|staff", "X-Authentik-Email": "a@x"},
        "bob": {"X-Authentik-Username": "bob", "X-Authentik-Groups": "users"},
        "eve": {"X-Authentik-Username": "eve", "X-Authentik-Groups": "s.r+e"},  # no email header at all
    })
    server = OutpostServer(outpost)
    with serving(backend, server):
        state, env = auth_state(server.url, backend)
        caddy.apply(state, env)
        port = caddy.http_port
        anonymous = http_get(port, "app.example.com", "/private?x=1")
        assert anonymous.status == 302
        assert anonymous.headers["Location"] == "https://auth.example.com/flows/login/"
        assert backend.requests == 0
        assert outpost.seen[-1]["X-Forwarded-Uri"] == "/private?x=1"
        assert outpost.seen[-1]["X-Forwarded-Method"] == "GET"

        alice = http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=alice",
                                                         "X-Authentik-Username": "mallory",
                                                         "X_Authentik_Username": "mallory",
                                                         "x-authentik_GROUPS": "admins",
                                                         "X-Authentik-Meta": "forged"})
        seen = alice.json()["headers"]
        assert seen["X-Authentik-Username"] == "alice"  # the spoofed value is gone
        # So is every other spelling a CGI-style backend would read as an identity header.
        assert not [k for k in seen if k.lower().replace("_", "-").startswith("x-authentik-")
                    and k not in ("X-Authentik-Username", "X-Authentik-Groups", "X-Authentik-Email")], seen
        assert seen["X-Authentik-Groups"] == "users|staff"
        assert seen["X-Authentik-Email"] == "a@x"

        eve = http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=eve",
                                                       "X-Authentik-Email": "forged@x"})
        seen = eve.json()["headers"]
        assert seen["X-Authentik-Groups"] == "s.r+e"  # group names are matched literally
        assert "X-Authentik-Email" not in seen  # neither the forged value nor a placeholder
        assert not any("{http." in value for value in seen.values())

        bob = http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=bob"})
        assert bob.status == 403 and backend.requests == 2

        assert http_get(port, "app.example.com", "/outpost.goauthentik.io/start").body == b"outpost page"


def test_allowed_http_methods_and_required_metadata_are_enforced_at_the_proxy(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    outpost = FakeOutpost(sessions={
        "alice": {"X-Authentik-Username": "alice", "X-Authentik-Groups": "staff", "X-Authentik-Email": "a@x"},
        "noemail": {"X-Authentik-Username": "n", "X-Authentik-Groups": "staff"},
    })
    server = OutpostServer(outpost)
    with serving(backend, server):
        state, env = auth_state(server.url, backend, allowedHttpMethods=["GET"], metadata={"required": ["email"]})
        caddy.apply(state, env)
        port = caddy.http_port
        assert http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=alice"}).status == 200
        assert http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=alice"},
                        method="DELETE").status == 405
        assert http_get(port, "app.example.com", "/", {"Cookie": "authentik_session=noemail"}).status == 403


def test_tls_internal_issuer_min_version_and_redirect(caddy: CaddyInstance) -> None:
    backend = Upstream("backend")
    with serving(backend):
        caddy.apply(state_of(
            route("modern", "modern.example.com", upstreams=[{"dial": backend.dial}], tls={"minVersion": "1.3"}),
            route("classic", "classic.example.com", upstreams=[{"dial": backend.dial}]),
            route("open", "open.example.com", upstreams=[{"dial": backend.dial}], tls={"forceHTTPS": False}),
            global_config=config(certificates={"provider": "internal"}),
        ))
        ca = caddy.root_certificate
        assert wait_until(ca.exists, timeout=10)

        def fetch(host: str, tls_max: ssl.TLSVersion | None = None):  # type: ignore[no-untyped-def]
            return https_get(caddy.https_port, host, cafile=ca, tls_max=tls_max)

        assert wait_until(lambda: _ok(fetch, "modern.example.com"), timeout=15)
        assert who(fetch("modern.example.com")) == "backend"
        with pytest.raises(ssl.SSLError):
            fetch("modern.example.com", ssl.TLSVersion.TLSv1_2)
        assert wait_until(lambda: _ok(fetch, "classic.example.com", ssl.TLSVersion.TLSv1_2), timeout=15)
        assert who(fetch("classic.example.com", ssl.TLSVersion.TLSv1_2)) == "backend"

        redirect = http_get(caddy.http_port, "classic.example.com", "/path?q=1")
        assert redirect.status == 308
        assert redirect.headers["Location"] == f"https://classic.example.com:{caddy.https_port}/path?q=1"
        assert who(http_get(caddy.http_port, "open.example.com")) == "backend"  # forceHTTPS: false


def _ok(fetch, host: str, tls_max: ssl.TLSVersion | None = None) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(fetch(host, tls_max).status == 200)
    except (OSError, ssl.SSLError):
        return False


def test_caddy_rejection_keeps_caddys_own_words(caddy: CaddyInstance) -> None:
    owned = render_caddy(state_of(route("x", "x.example.com", tls=PLAIN)), caddy.settings, caddy_capabilities())
    owned["apps"]["http"]["servers"]["hecate_http"]["routes"][0]["handle"][0]["handler"] = "no_such_handler"
    with caddy.admin() as admin:
        live = admin.get_config()
        with pytest.raises(CaddyError) as caught:
            admin.replace(merge(live.config, owned, caddy.settings), live.etag)
        assert "unknown module: http.handlers.no_such_handler" in caught.value.caddy_message
        assert "unknown module: http.handlers.no_such_handler" in str(caught.value)
        assert admin.get_config().config == live.config  # Caddy kept its old config


def test_rate_limit_without_the_module_is_a_render_error(caddy: CaddyInstance) -> None:
    state = state_of(route("api", "api.example.com", middleware=["rate-limit:100/minute"]))
    with pytest.raises(RenderError) as caught:
        render_caddy(state, caddy.settings, caddy_capabilities())
    message = str(caught.value)
    assert "Route/api" in message and "http.handlers.rate_limit" in message and "xcaddy" in message
    assert "2.6.2" in message


def test_the_sample_repo_loads_into_a_fresh_caddy(caddy: CaddyInstance) -> None:
    env = {"AUTHENTIK_OUTPOST_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "hecate_agent", "render", str(SAMPLE_REPO), "--target", "caddy"],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    import json

    owned = json.loads(result.stdout)
    with caddy.admin() as admin:
        live = admin.get_config()
        merged = merge(live.config, owned, caddy.settings)
        # the sample listens on :80/:443; this test Caddy must stay on its own ports
        servers = merged["apps"]["http"]["servers"]
        servers["hecate"]["listen"] = [f"127.0.0.1:{caddy.https_port}"]
        servers["hecate_http"]["listen"] = [f"127.0.0.1:{caddy.http_port}"]
        merged["apps"]["http"]["http_port"] = caddy.http_port
        merged["apps"]["http"]["https_port"] = caddy.https_port
        admin.replace(merged, live.etag)
        assert admin.get_config().config["apps"]["http"]["servers"]["hecate"]["routes"][0]["@id"].startswith("hecate-")


def test_merge_keeps_what_the_agent_does_not_own(caddy: CaddyInstance) -> None:
    foreign = Upstream("foreign")
    with serving(foreign):
        with caddy.admin() as admin:
            live = admin.get_config().config
            live.setdefault("apps", {})["http"] = {"servers": {"operator": {
                "listen": [f"127.0.0.1:{_free()}"],
                "routes": [{"handle": [{"handler": "static_response", "body": "mine"}]}]}}}
            admin.load(live)
            before = admin.get_config().config
        merged = caddy.apply(state_of(route("x", "x.example.com", tls=PLAIN, upstreams=[{"dial": foreign.dial}])))
        assert merged["apps"]["http"]["servers"]["operator"] == before["apps"]["http"]["servers"]["operator"]
        assert merged["admin"] == before["admin"]
        assert who(http_get(caddy.http_port, "x.example.com")) == "foreign"


def _free() -> int:
    from tests.support.servers import free_port

    return free_port()
