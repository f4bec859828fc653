"""Canary secrets, from the environment and from Vault, go to the backends and nowhere else: not to a
plan in any format, the daemon's log, status.json, /status, /metrics, history, Consul, `render`, or the
error raised when a secret value is unusable."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import PLAIN, Agent, agent_factory, remote, upstreams  # noqa: F401  (fixtures)
from tests.helpers import dump_yaml, route
from tests.support.consul_server import FakeConsul
from tests.support.http import http_get
from tests.support.servers import wait_until
from tests.support.vault_server import FakeVault

ENV_CANARY = "envcanary-6d1f0a9b3c"
VAULT_CANARY = "vaultcanary-93be27c41d"


def app(dial: str, extra_header: str = "") -> str:
    headers = {"upstream": {"set": {"X-Vault-Key": "${vault:apps/app#api_key}", "X-Env-Token": "${APP_TOKEN}"}}}
    if extra_header:
        headers["upstream"]["set"]["X-Extra"] = extra_header
    return dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}], headers=headers))


def cli(agent: Agent, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hecate_agent", "--config", str(agent.config), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "APP_TOKEN": ENV_CANARY})


def test_canaries_reach_the_backend_and_appear_in_no_output(node, remote, upstreams, agent_factory, tmp_path) -> None:  # noqa: F811
    a, _ = upstreams
    vault, consul_server = FakeVault(), FakeConsul()
    try:
        vault.put("apps/app", {"api_key": VAULT_CANARY})
        token = tmp_path / "vault-token"
        token.write_text(vault.token())
        first = remote.commit({"specs/routes/app.yaml": app(a.dial)}, "first")
        remote.push()
        agent = agent_factory(
            source={"git": {"url": str(remote.bare), "branch": "main", "path": "specs", "interval": "1s"}},
            vault={"address": vault.address, "tokenFile": str(token), "refreshInterval": "1s"},
            consul={"address": f"http://127.0.0.1:{consul_server.port}", "sessionTtl": "10s"},
        )
        agent.extra_env = {"APP_TOKEN": ENV_CANARY}
        agent.start()
        agent.wait_applied(first, timeout=20)
        seen = http_get(node.caddy.http_port, "app.example.com").json()["headers"]
        assert seen["X-Vault-Key"] == VAULT_CANARY and seen["X-Env-Token"] == ENV_CANARY

        # A rotation, then a value that cannot go into a header: both must stay unnamed everywhere.
        vault.put("apps/app", {"api_key": VAULT_CANARY + "-2"})
        assert wait_until(lambda: http_get(node.caddy.http_port, "app.example.com").json()["headers"]["X-Vault-Key"]
                          == VAULT_CANARY + "-2", timeout=15)
        vault.put("apps/app", {"api_key": VAULT_CANARY + "\r\nX-Injected: 1"})
        second = remote.commit({"specs/routes/app.yaml": app(a.dial, extra_header="v2")}, "second")
        remote.push()
        assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("revision") == second, timeout=20)
        assert "contains a line break" in agent.status()["lastAttempt"]["error"]

        outputs = {
            "/status": urllib.request.urlopen(agent.url("/status"), timeout=5).read().decode(),
            "/metrics": urllib.request.urlopen(agent.url("/metrics"), timeout=5).read().decode(),
        }
        vault.put("apps/app", {"api_key": VAULT_CANARY + "-3"})
        for fmt in ("text", "json", "markdown"):
            result = cli(agent, "plan", "--format", fmt, str(remote.work / "specs"))
            outputs[f"plan {fmt}"] = result.stdout + result.stderr
            assert result.returncode in (0, 2), result.stderr
        for where, args in (("status", ("status", "--format", "json")), ("history", ("history",)),
                            ("render", ("render", str(remote.work / "specs"), "--target", "caddy")),
                            ("fleet", ("status", "--fleet", "--format", "json"))):
            result = cli(agent, *args)
            outputs[where] = result.stdout + result.stderr
        agent.stop(signal.SIGTERM)
        outputs["agent log"] = agent.log.read_text()
        state = node.state_dir
        outputs["status.json"] = (state / "status.json").read_text()
        outputs["history.json"] = (state / "history.json").read_text()
        with consul_server.state.lock:
            outputs["consul"] = "\n".join(base64.b64decode(e["Value"]).decode(errors="replace")
                                          for e in consul_server.state.kv.values() if e.get("Value"))
        outputs["consul writes"] = "\n".join(body.decode(errors="replace") for _, _, body in consul_server.state.writes)

        for where, text in outputs.items():
            assert ENV_CANARY not in text, where
            assert VAULT_CANARY not in text, where
        assert outputs["render"].count("<redacted>") == 2  # both headers, masked
        assert "(sensitive value changed)" in outputs["plan text"]  # the rotation shows as such
        assert json.loads(outputs["status.json"])["appliedRevision"] is not None

        # The snapshots must hold the values (to restore them exactly), so only the agent's user reads them.
        assert state.stat().st_mode & 0o777 == 0o700
        for snapshot in [state / "last-applied.json", *(state / "snapshots").glob("*.json")]:
            assert snapshot.stat().st_mode & 0o777 == 0o600, snapshot
    finally:
        vault.close()
        consul_server.close()


# --- errors built from resolved values name the reference, never any part of the value -------------

URL_CANARY = "q7zxw3kv9j"


def fragments(secret: str, size: int = 4) -> set[str]:
    """Every piece of `secret` long enough to give it away."""
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


BROKEN_SECRET_URLS = [
    f"http://host:{URL_CANARY}",  # the example: a token where the port belongs
    f"http://outpost:9000{URL_CANARY}",
    f"http://[{URL_CANARY}]:9000",
    f"http://[::1{URL_CANARY}",
    f"http://user:{URL_CANARY}@outpost:9000",
    f"http://outpost:9000/{URL_CANARY} x",
    f"ftp://{URL_CANARY}",
    f"{URL_CANARY}",
    f"http://999.{URL_CANARY}.1.1:9000",
    f"http://{URL_CANARY[:4]}.1.2.399:9000",
    f"http://outpost:0{URL_CANARY[:1]}",
    f"http://{URL_CANARY}%eth0:80",
]


def _outpost_state(reference: str) -> Any:
    from tests.helpers import auth_policy, config, desired_state, route

    return desired_state(route("app", "app.example.com", authPolicy="staff"), auth_policy(),
                         global_config=config(authentik={"outpostUrl": reference}))


@pytest.mark.parametrize("value", BROKEN_SECRET_URLS)
@pytest.mark.parametrize("reference", ["OUTPOST_TOKEN", "vault:auth/outpost#url"])
def test_a_broken_url_from_a_secret_is_reported_by_its_reference_alone(value: str, reference: str) -> None:
    from hecate_agent.render.bundle import render_all
    from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, RenderError

    with pytest.raises(RenderError) as caught:
        render_all(_outpost_state(f"${{{reference}}}"), "r1", caddy=CaddySettings(), capabilities=CaddyCapabilities(),
                   environment={reference: value}, nginx_enabled=False)
    text = "\n".join(caught.value.problems)
    assert f"global.authentik.outpostUrl: ${{{reference}}} does not hold a usable URL: " in text, text
    leaked = {piece for piece in fragments(URL_CANARY) if piece in text}
    assert not leaked, text


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(["http://", "https://", "[", "]", ":", "@", "/", "%", ".", " ", "80", "0",
                                        "::1", "host", URL_CANARY, URL_CANARY[:5], "999."]), min_size=1, max_size=8))
def test_no_url_assembled_from_a_secret_shows_in_an_error(pieces: list[str]) -> None:
    from hecate_agent.render.caddy import RenderError, render_caddy

    value = "".join(pieces)
    if URL_CANARY[:5] not in value:
        return
    try:
        render_caddy(_outpost_state("${OUTPOST_TOKEN}"), environment={"OUTPOST_TOKEN": value})
    except RenderError as exc:
        text = "\n".join(exc.problems)
        assert not {piece for piece in fragments(URL_CANARY[:5]) if piece in text}, (value, text)


def test_the_dial_cut_out_of_a_secret_url_is_a_secret_too() -> None:
    from hecate_agent import redaction
    from hecate_agent.secrets import SecretResolver

    resolution = SecretResolver({"OUTPOST_TOKEN": f"http://{URL_CANARY}.internal:9000"}).resolve(
        _outpost_state("${OUTPOST_TOKEN}"))
    assert f"{URL_CANARY}.internal:9000" in resolution.sensitive
    assert URL_CANARY not in redaction.scrub(f"dial {URL_CANARY}.internal:9000 refused")
