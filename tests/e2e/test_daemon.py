"""`hecate-agent run` against a real Git remote, real Caddy and real Nginx."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import PLAIN, Remote, app_route
from tests.helpers import dump_yaml, route, write_repo
from tests.support.http import http_get
from tests.support.servers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def git_source(remote: Remote, **extra: object) -> dict:
    return {"git": {"url": str(remote.bare), "branch": "main", "path": "specs", "interval": "1s", **extra}}


def start_synced(remote: Remote, agent_factory, files: dict[str, str], *, source_options: dict | None = None,
                 **overrides: object):  # type: ignore[no-untyped-def]
    """Push a first commit, start an agent following it, and wait until it is applied."""
    first = remote.commit(files, "first")
    remote.push()
    agent = agent_factory(source=git_source(remote, **(source_options or {})), **overrides)
    agent.start()
    agent.wait_applied(first, timeout=15)
    return agent, first


def upstream_of(node) -> str | None:  # type: ignore[no-untyped-def]
    reply = http_get(node.caddy.http_port, "app.example.com")
    return reply.json()["upstream"] if reply.status == 200 else None


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_push_is_applied_by_polling_and_by_webhook(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    agent, _ = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)}, source_options={"interval": "1s"})
    assert upstream_of(node) == "a"
    notes = agent.notifications()
    assert "READY=1" in notes and "WATCHDOG=1" in notes

    second = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "second")
    remote.push()
    waited = agent.wait_applied(second, timeout=5)
    assert waited <= 1 + 1 + 1.5, waited  # interval + 1 s, plus the apply itself
    assert upstream_of(node) == "b"

    with urllib.request.urlopen(agent.url("/healthz"), timeout=5) as health:
        assert health.status == 200
    with urllib.request.urlopen(agent.url("/readyz"), timeout=5) as ready:
        assert ready.status == 200
    with urllib.request.urlopen(agent.url("/metrics"), timeout=5) as metrics:
        text = metrics.read().decode()
    assert "hecate_reconciles_total" in text and f'revision="{second}"' in text
    with urllib.request.urlopen(agent.url("/status"), timeout=5) as status:
        assert json.loads(status.read())["appliedRevision"] == second


def test_webhook_triggers_an_immediate_fetch_and_bad_signatures_are_refused(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    agent, first = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)}, source_options={"interval": "1h"})
    second = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "second")
    remote.push()
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    assert post(agent.url("/hooks/git"), body, {"X-Hub-Signature-256": "sha256=" + "0" * 64}) == 401
    assert post(agent.url("/hooks/git"), body, {}) == 401
    time.sleep(1.0)
    assert agent.applied() == first  # nothing was fetched for the bad requests
    signature = hmac.new(b"s3cret-webhook", body, hashlib.sha256).hexdigest()
    started = time.monotonic()
    assert post(agent.url("/hooks/git"), body, {"X-Hub-Signature-256": f"sha256={signature}"}) == 202
    agent.wait_applied(second, timeout=5)
    assert time.monotonic() - started < 1.0 + 0.5  # goal < 1 s; the slack covers a loaded CI machine
    assert upstream_of(node) == "b"


def test_invalid_commit_is_not_applied_then_a_fix_is(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    good = remote.commit({"specs/routes/app.yaml": app_route(a.dial)}, "good")
    remote.push()
    agent = agent_factory(source=git_source(remote))
    agent.start()
    agent.wait_applied(good, timeout=15)
    bad = remote.commit({"specs/routes/app.yaml": app_route(b.dial, middleware=["gzip"])}, "bad")
    remote.push()
    assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("revision") == bad, timeout=8)
    attempt = agent.status()["lastAttempt"]
    assert attempt["outcome"] == "invalid"
    assert "specs/routes/app.yaml:" in attempt["error"] and "unknown middleware 'gzip'" in attempt["error"]
    assert agent.status()["appliedRevision"] == good and upstream_of(node) == "a"
    fixed = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "fix")
    remote.push()
    agent.wait_applied(fixed, timeout=8)
    assert upstream_of(node) == "b"


def test_force_push_is_refused_unless_allowed(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    agent, first = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)})
    from tests.e2e.conftest import git

    git(remote.work, "checkout", "-q", "--orphan", "rewritten")
    rewritten = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "history rewritten")
    git(remote.work, "push", "-q", "--force", "origin", "rewritten:main")
    assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("outcome") == "refused", timeout=8)
    assert "force-pushed" in agent.status()["lastAttempt"]["error"]
    assert agent.applied() == first and upstream_of(node) == "a"
    agent.stop()
    permissive = agent_factory(source=git_source(remote, allowForcePush=True))
    permissive.start()
    permissive.wait_applied(rewritten, timeout=15)
    assert upstream_of(node) == "b"


def test_drift_is_healed_or_only_reported(node, remote, upstreams, agent_factory) -> None:
    a, _ = upstreams
    agent, _ = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)}, source_options={"interval": "1h"})
    with node.caddy.admin() as admin:  # Caddy restarted empty: only the admin block is left
        admin.load({"admin": admin.get_config().config["admin"]})
    assert wait_until(lambda: upstream_of_safe(node) == "a", timeout=2 + 3)
    agent.stop()

    reporter = agent_factory(source=git_source(remote, interval="1h"), sync={"selfHeal": False, "driftInterval": "1s"})
    reporter.start()
    notes: list[str] = []
    assert wait_until(lambda: "READY=1" in notes or bool(notes.extend(reporter.notifications())), timeout=10)
    with node.caddy.admin() as admin:
        admin.load({"admin": admin.get_config().config["admin"]})
    assert wait_until(lambda: reporter.status().get("drift", {}).get("detected") is True, timeout=6)
    assert "Route/app" in reporter.status()["drift"]["resources"]
    assert reporter.status()["phase"] == "OutOfSync"
    time.sleep(1.5)
    assert upstream_of_safe(node) is None  # reported, not healed


def upstream_of_safe(node) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return upstream_of(node)
    except (OSError, ValueError, KeyError):
        return None


def test_unreachable_remote_degrades_and_recovers(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    agent, _ = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)})
    hidden = remote.bare.with_name("hidden.git")
    remote.bare.rename(hidden)
    assert wait_until(lambda: agent.status().get("phase") == "Degraded", timeout=8)
    assert agent.status()["sourceError"]
    assert upstream_of(node) == "a"  # proxies untouched
    hidden.rename(remote.bare)
    second = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "second")
    remote.push()
    agent.wait_applied(second, timeout=20)  # backoff is capped; the fetch comes back
    assert agent.status()["phase"] == "Synced"


def test_directory_mode_applies_an_atomic_save_once(node, upstreams, agent_factory, tmp_path: Path) -> None:
    a, b = upstreams
    specs = write_repo(tmp_path / "specs", {"routes/app.yaml": app_route(a.dial)})
    agent = agent_factory(source={"directory": str(specs)})
    agent.start()
    assert wait_until(lambda: upstream_of_safe(node) == "a" and agent.applied() is not None, timeout=15)
    before = len(json.loads((node.state_dir / "history.json").read_text()))
    temporary = specs / "routes" / ".app.yaml.swp"
    temporary.write_text(app_route(b.dial))
    started = time.monotonic()
    temporary.replace(specs / "routes" / "app.yaml")  # how editors save
    assert wait_until(lambda: upstream_of_safe(node) == "b", timeout=3)
    assert time.monotonic() - started < 1.0 + 0.5
    time.sleep(1.0)
    history = json.loads((node.state_dir / "history.json").read_text())
    assert [e["outcome"] for e in history[before:]] == ["applied"]  # once, not once per event


def test_failed_verification_rolls_back_and_blocks(node, remote, upstreams, agent_factory) -> None:
    a, _ = upstreams
    agent, first = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)})
    dead = dump_yaml({**route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": "127.0.0.1:9"}]),
                      "metadata": {"name": "app", "labels": {"hecate.io/verify": "true"}}})
    broken = remote.commit({"specs/routes/app.yaml": dead}, "points at a dead port")
    remote.push()
    assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("outcome") == "rolled_back", timeout=25)
    attempt = agent.status()["lastAttempt"]
    assert attempt["revision"] == broken
    assert attempt["outcome"] == "rolled_back" and "verification failed" in attempt["error"]
    assert agent.applied() == first and upstream_of(node) == "a"
    fixed = remote.commit({"specs/routes/app.yaml": app_route(a.dial, headers={"set": {"X-Fixed": "1"}})}, "fix")
    remote.push()
    agent.wait_applied(fixed, timeout=10)


def test_sigterm_leaves_a_consistent_node_and_restart_resumes(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    agent, _ = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)})
    second = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "second")
    remote.push()
    time.sleep(0.8)  # likely mid-fetch or mid-apply
    assert agent.stop(signal.SIGTERM) == 0
    assert "STOPPING=1" in agent.notifications()
    assert not (node.state_dir / "journal.json").exists()
    assert upstream_of(node) in ("a", "b")
    agent.start()
    agent.wait_applied(second, timeout=15)
    assert upstream_of(node) == "b"


def test_quarantine_applies_the_valid_files_and_keeps_the_last_good_invalid_one(node, remote, upstreams, agent_factory) -> None:
    a, b = upstreams
    other = dump_yaml(route("other", "other.example.com", tls=PLAIN, upstreams=[{"dial": a.dial}]))
    first = remote.commit({"specs/routes/app.yaml": app_route(a.dial), "specs/routes/other.yaml": other}, "first")
    remote.push()
    agent = agent_factory(source=git_source(remote), sync={"invalidPolicy": "quarantine"})
    agent.start()
    agent.wait_applied(first, timeout=15)
    moved = dump_yaml(route("other", "other.example.com", tls=PLAIN, upstreams=[{"dial": b.dial}]))
    mixed = remote.commit({"specs/routes/app.yaml": app_route(b.dial, middleware=["gzip"]),  # invalid
                           "specs/routes/other.yaml": moved}, "one good change, one broken file")
    remote.push()
    assert wait_until(lambda: (agent.status().get("lastAttempt") or {}).get("outcome") == "quarantined", timeout=10)
    assert agent.applied() == mixed
    assert http_get(node.caddy.http_port, "other.example.com").json()["upstream"] == "b"  # the valid change
    assert upstream_of(node) == "a"  # the invalid route keeps its last good version
    status = agent.status()
    assert status["phase"] == "Degraded" and status["lastAttempt"]["outcome"] == "quarantined"
    assert any("specs/routes/app.yaml:" in q and "gzip" in q for q in status["quarantined"])
    fixed = remote.commit({"specs/routes/app.yaml": app_route(b.dial)}, "fix")
    remote.push()
    agent.wait_applied(fixed, timeout=10)
    assert wait_until(lambda: agent.status()["quarantined"] == [] and agent.status()["phase"] == "Synced", timeout=5)
    assert upstream_of(node) == "b"


def test_nginx_reloads_are_paced_and_sighup_reloads_settings(node, remote, upstreams, agent_factory) -> None:
    from tests.helpers import stream
    from tests.support.servers import TcpEcho, free_port, serving, tcp_exchange

    echo = TcpEcho("echo")
    with serving(echo):
        ports = [free_port(), free_port()]

        def stream_file(count: int) -> dict[str, str]:
            return {f"specs/streams/s{i}.yaml": dump_yaml(stream(f"s{i}", port=None,
                    listen={"address": "127.0.0.1", "port": ports[i]}, upstreams=[{"server": f"127.0.0.1:{echo.port}"}]))
                    for i in range(count)}

        first = remote.commit(stream_file(1), "one stream")
        remote.push()
        agent = agent_factory(source=git_source(remote, interval="1s"), nginx={"minReloadInterval": "4s"})
        agent.start()
        agent.wait_applied(first, timeout=15)
        applied_at = time.monotonic()
        second = remote.commit(stream_file(2), "a second stream right away")
        remote.push()
        waited = agent.wait_applied(second, timeout=15)
        assert time.monotonic() - applied_at >= 3.5, "the second Nginx reload came sooner than minReloadInterval"
        assert waited > 1.5
        assert tcp_exchange(ports[1]) == b"echo:ping"
        assert '"pacing nginx reloads"' in agent.log.read_text()

        settings = json.loads(agent.config.read_text())
        settings["sync"]["driftInterval"] = "3s"
        agent.config.write_text(json.dumps(settings))
        agent.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: '"settings reloaded"' in agent.log.read_text(), timeout=5)
        assert agent.process.poll() is None


def test_stream_upstreams_are_probed_by_the_agent(node, remote, agent_factory) -> None:
    from tests.helpers import stream
    from tests.support.servers import TcpEcho, free_port, serving

    live, dead_port = TcpEcho("live"), free_port()
    with serving(live):
        check = {"interval": "1s", "timeout": "500ms", "unhealthyThreshold": 1}
        doc = stream("db", port=None, listen={"address": "127.0.0.1", "port": free_port()}, healthCheck=check,
                     upstreams=[{"server": f"127.0.0.1:{live.port}"}, {"server": f"127.0.0.1:{dead_port}", "backup": True}])
        other = stream("other", port=None, listen={"address": "127.0.0.1", "port": free_port()}, healthCheck=check,
                       upstreams=[{"server": f"127.0.0.1:{live.port}"}])
        first = remote.commit({"specs/streams/db.yaml": dump_yaml(doc), "specs/streams/other.yaml": dump_yaml(other)},
                              "db")
        remote.push()
        agent = agent_factory(source=git_source(remote))
        agent.start()
        agent.wait_applied(first, timeout=15)

        def health() -> dict:
            return (agent.status().get("components") or {}).get("streams", {}).get("db", {})

        assert wait_until(lambda: len(health()) == 2, timeout=12)
        assert health()[f"127.0.0.1:{live.port}"]["up"] is True
        assert health()[f"127.0.0.1:{dead_port}"]["up"] is False
        with urllib.request.urlopen(agent.url("/metrics"), timeout=5) as metrics:
            text = metrics.read().decode()
        assert f'hecate_stream_upstream_up{{stream="db",upstream="127.0.0.1:{dead_port}"}} 0.0' in text
        assert 'hecate_stream_upstream_up{stream="other"' in text

        # Stream "other" leaves the desired state and db loses its dead upstream: their series go too.
        doc["spec"]["upstreams"] = doc["spec"]["upstreams"][:1]
        second = remote.commit({"specs/streams/db.yaml": dump_yaml(doc)}, "drop other", remove=("specs/streams/other.yaml",))
        remote.push()
        agent.wait_applied(second, timeout=15)

        def metrics_text() -> str:
            with urllib.request.urlopen(agent.url("/metrics"), timeout=5) as response:
                return response.read().decode()

        assert wait_until(lambda: 'stream="other"' not in metrics_text(), timeout=12), metrics_text()
        assert f'upstream="127.0.0.1:{dead_port}"' not in metrics_text()
        assert f'hecate_stream_upstream_up{{stream="db",upstream="127.0.0.1:{live.port}"}} 1.0' in metrics_text()


def test_ready_is_sent_even_when_the_first_fetch_fails(node, tmp_path: Path, agent_factory) -> None:
    agent = agent_factory(source={"git": {"url": str(tmp_path / "missing.git"), "branch": "main", "interval": "1s"}})
    agent.start()
    notes: list[str] = []
    assert wait_until(lambda: "READY=1" in notes or bool(notes.extend(agent.notifications())), timeout=10)
    assert wait_until(lambda: agent.status().get("phase") == "Degraded", timeout=5)
    try:
        urllib.request.urlopen(agent.url("/readyz"), timeout=5)
        raise AssertionError("/readyz must not be ready before anything was applied")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
    with urllib.request.urlopen(agent.url("/healthz"), timeout=5) as health:
        assert health.status == 200  # alive, just not ready


def test_status_is_published_to_consul_and_goes_when_the_agent_dies(node, remote, upstreams, agent_factory) -> None:
    from tests.support.consul_server import FakeConsul

    a, _ = upstreams
    consul_server = FakeConsul()
    try:
        agent, first = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial)},
                                    consul={"address": f"http://127.0.0.1:{consul_server.port}", "sessionTtl": "10s"})
        key = "hecate/nodes/test-node/status"

        def published() -> dict:
            entry = consul_server.state.kv.get(key)
            import base64

            return json.loads(base64.b64decode(entry["Value"])) if entry else {}

        assert wait_until(lambda: published().get("appliedRevision") == first, timeout=5)
        assert published()["phase"] == "Synced" and published()["node"] == "test-node"
        assert wait_until(lambda: consul_server.state.checks.get("service:hecate-agent-test-node", {}).get("Status")
                          == "passing", timeout=6)
        agent.stop(signal.SIGKILL)  # no goodbye: only the session TTL can clear the entry
        assert published()
        assert wait_until(lambda: not published(), timeout=15, interval=0.5)
    finally:
        consul_server.close()


def test_vault_secrets_rotate_without_a_commit_and_vault_down_keeps_the_last_good(node, remote, upstreams,
                                                                                   agent_factory, tmp_path) -> None:
    from tests.support.vault_server import FakeVault

    a, _ = upstreams
    canary = "vault-canary-0c9d4e2f"
    vault = FakeVault()
    try:
        vault.put("apps/app", {"api_key": canary})
        token_file = tmp_path / "vault-token"
        token_file.write_text(vault.token(ttl=3600))
        headers = {"upstream": {"set": {"X-Api-Key": "${vault:apps/app#api_key}"}}}
        agent, first = start_synced(remote, agent_factory, {"specs/routes/app.yaml": app_route(a.dial, headers=headers)},
                                    vault={"address": vault.address, "tokenFile": str(token_file),
                                           "refreshInterval": "1s"})

        def key_seen() -> str:
            return http_get(node.caddy.http_port, "app.example.com").json()["headers"].get("X-Api-Key", "")

        assert key_seen() == canary
        vault.put("apps/app", {"api_key": canary + "-rotated"})  # no commit: the refresh finds it
        assert wait_until(lambda: key_seen() == canary + "-rotated", timeout=10)

        vault.down = True
        second = remote.commit({"specs/routes/app.yaml": app_route(a.dial, headers={"upstream": {"set": {
            "X-Api-Key": "${vault:apps/app#api_key}", "X-Extra": "1"}}})}, "second")
        remote.push()
        assert wait_until(lambda: agent.status().get("phase") == "Degraded", timeout=15), agent.status()
        status = agent.status()
        assert status["lastAttempt"]["outcome"] == "secret_error" and "is unavailable" in status["lastAttempt"]["error"]
        assert status["appliedRevision"] == first and key_seen() == canary + "-rotated"  # the last good serves

        vault.down = False
        agent.wait_applied(second, timeout=30)
        assert agent.status()["phase"] == "Synced"
        log = agent.log.read_text()
        assert canary not in log and "apply" in log
        assert canary not in json.dumps(agent.status())
    finally:
        vault.close()
