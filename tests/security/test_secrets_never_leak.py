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
