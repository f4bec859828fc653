"""What the agent accepts at the edges of each value is what the real proxies take, and what it refuses
there the proxies refuse too: Caddy 2.6.2 (`/load`) and `nginx -t` (Nginx 1.22)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from hecate_agent.render.caddy import merge, render_caddy
from hecate_agent.render.nginx import render_nginx
from hecate_agent.targets.caddy_admin import CaddyError
from tests.helpers import desired_state, route, stream
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.http import Upstream, http_get
from tests.support.nginx import NginxInstance
from tests.support.servers import free_port, serving
from tests.unit.test_models import load_one

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
ACCEPTED_PATHS = ["/a%20b/%2F%c3%A9", "/gesundheit/prüfung", "/-._~!$&'()*+,;=:@/", "/"]


def health_checks(config: Any) -> list[dict[str, Any]]:
    """Every `health_checks.active` object of a rendered Caddy config."""
    found = []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "health_checks" in node:
                found.append(node["health_checks"]["active"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def load(caddy: CaddyInstance, owned: dict[str, Any]) -> None:
    with caddy.admin() as admin:
        live = admin.get_config()
        admin.replace(merge(live.config, owned, caddy.settings), live.etag)


def test_caddy_takes_accepted_paths_durations_and_unicode_domains(caddy: CaddyInstance) -> None:
    backend = Upstream("fass")
    with serving(backend):
        state = desired_state(
            *[route(f"h{i}", f"h{i}.example.com", tls=PLAIN, upstreams=[{"dial": backend.dial}],
                    healthCheck={"path": path, "interval": "1d", "timeout": "23h59m59s999ms",
                                 "unhealthyThreshold": 100})
              for i, path in enumerate(ACCEPTED_PATHS)],
            route("fass", "faß.example.com", tls=PLAIN, upstreams=[{"dial": backend.dial}]),
        )
        caddy.apply(state)
        assert http_get(caddy.http_port, "xn--fa-hia.example.com").json()["upstream"] == "fass"
        assert http_get(caddy.http_port, "fass.example.com").status == 404  # IDNA 2003's answer is another host


@pytest.mark.parametrize(("field", "value", "caddy_says"), [
    ("uri", "/health\x01", "invalid control character in URL"),
    ("uri", "/health%zz", "invalid URL escape"),
    ("interval", "110000d", "invalid duration"),
])
def test_caddy_refuses_what_the_agent_refuses(caddy: CaddyInstance, field: str, value: str, caddy_says: str) -> None:
    owned = render_caddy(desired_state(route("h", "h.example.com", tls=PLAIN, healthCheck={"path": "/h"})),
                         caddy.settings, caddy_capabilities())
    [active] = health_checks(owned)
    active[field] = value
    with pytest.raises(CaddyError) as caught:
        load(caddy, owned)
    assert caddy_says in caught.value.caddy_message
    spec_field = {"uri": "path", "interval": "interval"}[field]
    refused = load_one(route(healthCheck={"path": "/h", spec_field: value}))
    assert refused.state is None and refused.problems[0].field == f"spec.healthCheck.{spec_field}"


def nginx_t(nginx: NginxInstance, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    nginx.stream_dir.mkdir(exist_ok=True)
    for old in nginx.stream_dir.glob("*.conf"):
        old.unlink()
    for name, text in files.items():
        (nginx.stream_dir / name).write_text(text)
    return subprocess.run(list(nginx.settings.test_command), capture_output=True, text=True, check=False)


@pytest.mark.parametrize("fail_timeout", ["0s", "0ms", "1000ms", "1m30s", "106751d23h47m16s"])
def test_nginx_t_takes_every_accepted_fail_timeout(nginx: NginxInstance, fail_timeout: str) -> None:
    state = desired_state(stream(port=free_port(), upstreams=[{"server": "127.0.0.1:9", "failTimeout": fail_timeout}]))
    test = nginx_t(nginx, render_nginx(state))
    assert test.returncode == 0, test.stderr


@pytest.mark.parametrize("fail_timeout", ["500ms", "1s500ms"])
def test_nginx_t_refuses_milliseconds_and_so_does_the_agent(nginx: NginxInstance, fail_timeout: str) -> None:
    state = desired_state(stream(port=free_port(), upstreams=[{"server": "127.0.0.1:9", "failTimeout": "1s"}]))
    files = {name: text.replace("fail_timeout=1s", f"fail_timeout={fail_timeout}")
             for name, text in render_nginx(state).items()}
    test = nginx_t(nginx, files)
    assert test.returncode != 0 and f'invalid parameter "fail_timeout={fail_timeout}"' in test.stderr
    refused = load_one(stream(upstreams=[{"server": "127.0.0.1:9", "failTimeout": fail_timeout}]))
    assert [p.field for p in refused.problems] == ["spec.upstreams[0].failTimeout"]


def test_an_ipv4_mapped_listen_address_renders_as_ipv4_which_nginx_can_bind(nginx: NginxInstance) -> None:
    port = free_port()
    state = desired_state(stream(listen={"address": "::ffff:127.0.0.1", "port": port}))
    files = render_nginx(state)
    assert f"listen 127.0.0.1:{port};" in files["db.conf"]
    assert nginx_t(nginx, files).returncode == 0
    mapped = {name: text.replace(f"listen 127.0.0.1:{port};", f"listen [::ffff:127.0.0.1]:{port};")
              for name, text in files.items()}
    test = nginx_t(nginx, mapped)  # what rendering the address as written would have done
    assert test.returncode != 0 and "Invalid argument" in test.stderr
