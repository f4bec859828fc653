"""plan / apply / rollback on a real node (Caddy 2.6.2 + Nginx): all or nothing, always one command back."""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hecate_agent.engine.transaction import ApplyError, apply_prepared, prepare, read_live, recover
from hecate_agent.render.bundle import fingerprint, render_all
from hecate_agent.render.caddy import RATE_LIMIT_MODULE, CaddyCapabilities
from hecate_agent.sources.directory import read_directory
from hecate_agent.spec.loader import load_specs
from hecate_agent.targets.caddy import owned_part
from tests.helpers import dump_yaml, route, stream, write_repo
from tests.support.caddy import caddy_capabilities
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest
from tests.support.servers import TcpEcho, free_port, serving, tcp_exchange

pytestmark = pytest.mark.integration
PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def make_repo(root: Path, upstream: str, echo_port: int, stream_port: int, *, extra_routes: int = 2,
              second_dial: str | None = None) -> Path:
    files = {
        "routes/app.yaml": dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": upstream}])),
        "streams/echo.yaml": dump_yaml(stream("echo", port=None, listen={"address": "127.0.0.1", "port": stream_port},
                                              upstreams=[{"server": f"127.0.0.1:{echo_port}"}])),
    }
    for i in range(extra_routes):
        files[f"routes/r{i}.yaml"] = dump_yaml(route(f"r{i}", f"r{i}.example.com", tls=PLAIN,
                                                      upstreams=[{"dial": second_dial or upstream}]))
    if root.exists():
        shutil.rmtree(root)
    return write_repo(root, files)


@pytest.fixture
def backends():
    a, b, echo = Upstream("a"), Upstream("b"), TcpEcho("echo")
    with serving(a, b, echo):
        yield a, b, echo


def test_apply_serves_then_plan_says_no_changes_and_one_field_edit_is_planned_exactly(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, b, echo = backends
    stream_port = free_port()
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, stream_port)
    # An operator's own server that the agent must never touch.
    with node.caddy.admin() as admin:
        live = admin.get_config().config
        live.setdefault("apps", {})["http"] = {"servers": {"operator": {"listen": [f"127.0.0.1:{free_port()}"],
            "routes": [{"handle": [{"handler": "static_response", "body": "mine"}]}]}}}
        admin.load(live)
        operator_before = admin.get_config().config["apps"]["http"]["servers"]["operator"]

    result = node.cli("apply", str(repo), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Applied" in result.stdout
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"
    assert tcp_exchange(stream_port) == b"echo:ping"

    again = node.cli("plan", str(repo))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout

    (repo / "routes" / "app.yaml").write_text(
        dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": b.dial}])))
    planned = node.cli("plan", str(repo))
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert f"~ Route/app  (update)\n      spec.upstreams[0].dial: \"{a.dial}\" → \"{b.dial}\"" in planned.stdout
    assert "Plan: 0 to create, 1 to update, 0 to delete" in planned.stdout
    assert "Caddy server 'operator'" in planned.stdout

    applied = node.cli("apply", str(repo), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "b"
    with node.caddy.admin() as admin:
        assert admin.get_config().config["apps"]["http"]["servers"]["operator"] == operator_before
    status = json.loads((node.state_dir / "status.json").read_text())
    assert status["phase"] == "Synced" and status["appliedRevision"].startswith("sha256:")
    history = node.cli("history")
    assert history.stdout.count("applied") == 2


def snapshot_of(node: NodeUnderTest) -> tuple[dict, dict]:
    with node.caddy.admin() as admin:
        caddy = admin.get_config().config
    return caddy, node.nginx.adapter.read_active()


def test_caddy_rejecting_the_config_changes_nothing(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    lkg = (node.state_dir / "last-applied.json").read_bytes()
    before = snapshot_of(node)
    (repo / "routes" / "app.yaml").write_text(dump_yaml(route("app", "app.example.com", tls=PLAIN,
        upstreams=[{"dial": a.dial}], middleware=["rate-limit:10/second"])))
    (repo / "streams" / "echo2.yaml").write_text(dump_yaml(stream("echo2", port=None,
        listen={"address": "127.0.0.1", "port": free_port()}, upstreams=[{"server": f"127.0.0.1:{echo.port}"}])))
    # This agent believes Caddy has the rate-limit module; the real Caddy does not and refuses.
    fooled = CaddyCapabilities(caddy_capabilities().version, caddy_capabilities().modules | {RATE_LIMIT_MODULE})
    n = node.node(capabilities=fooled)
    with n.store.lock():
        state = load_specs(read_directory(repo)[0]).state
        prepared = prepare(n, state, "bad")
        with pytest.raises(ApplyError) as caught:
            apply_prepared(n, prepared)
    assert caught.value.step == "caddy"
    assert "unknown module: http.handlers.rate_limit" in str(caught.value)
    assert snapshot_of(node) == before
    assert (node.state_dir / "last-applied.json").read_bytes() == lkg
    assert not (node.state_dir / "journal.json").exists()


def test_nginx_t_failure_rolls_caddy_back(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, b, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    before = snapshot_of(node)
    (repo / "routes" / "app.yaml").write_text(dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": b.dial}])))
    (repo / "streams" / "bad.yaml").write_text(dump_yaml(stream("bad", port=None,
        listen={"address": "127.0.0.1", "port": free_port()}, upstreams=[{"server": "no-such-host.invalid:80"}])))
    result = node.cli("apply", str(repo), "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nginx" in result.stderr and "host not found in upstream" in result.stderr
    assert snapshot_of(node) == before
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"
    assert json.loads((node.state_dir / "status.json").read_text())["lastAttempt"]["outcome"] == "rolled_back"


def test_reload_that_cannot_bind_rolls_caddy_back(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, b, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    before = snapshot_of(node)
    late_port = free_port()
    (repo / "routes" / "app.yaml").write_text(dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": b.dial}])))
    (repo / "streams" / "late.yaml").write_text(dump_yaml(stream("late", port=None,
        listen={"address": "127.0.0.1", "port": late_port}, upstreams=[{"server": f"127.0.0.1:{echo.port}"}])))
    squatter = socket.socket()
    stop = threading.Event()

    def squat_after_preflight() -> None:
        journal = node.state_dir / "journal.json"
        while not stop.is_set():
            try:
                if ((json.loads(journal.read_text()).get("targets") or {}).get("nginx") or {}).get("new"):
                    squatter.bind(("127.0.0.1", late_port))
                    squatter.listen()
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.002)

    thread = threading.Thread(target=squat_after_preflight, daemon=True)
    thread.start()
    n = node.node()
    try:
        with n.store.lock():
            prepared = prepare(n, load_specs(read_directory(repo)[0]).state, "late")
            with pytest.raises(ApplyError) as caught:
                apply_prepared(n, prepared)
    finally:
        stop.set()
        thread.join()
        squatter.close()
    assert caught.value.step == "nginx"
    assert f"127.0.0.1:{late_port}" in str(caught.value)
    assert snapshot_of(node) == before
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"


def test_a_concurrent_caddy_edit_is_refused(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    n = node.node()
    with n.store.lock():
        prepared = prepare(n, load_specs(read_directory(repo)[0]).state, "r1")
        with node.caddy.admin() as admin:  # someone else edits Caddy between plan and apply
            config = admin.get_config().config
            config.setdefault("apps", {})["http"] = {"servers": {"sneaky": {"listen": [f"127.0.0.1:{free_port()}"]}}}
            admin.load(config)
        with pytest.raises(ApplyError) as caught:
            apply_prepared(n, prepared)
    assert "changed by someone else" in str(caught.value) and "ETag" in str(caught.value)
    with node.caddy.admin() as admin:
        assert "sneaky" in admin.get_config().config["apps"]["http"]["servers"]


def test_saved_plan_is_refused_when_live_changed(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    saved = tmp_path / "plan.json"
    planned = node.cli("plan", str(repo), "--out", str(saved))
    assert planned.returncode == 2 and saved.stat().st_mode & 0o777 == 0o600
    with node.caddy.admin() as admin:
        config = admin.get_config().config
        config.setdefault("apps", {})["http"] = {"servers": {"other": {"listen": [f"127.0.0.1:{free_port()}"]}}}
        admin.load(config)
    stale = node.cli("apply", str(saved))
    assert stale.returncode == 1 and "stale" in stale.stderr
    fresh = tmp_path / "plan2.json"
    assert node.cli("plan", str(repo), "--out", str(fresh)).returncode == 2
    applied = node.cli("apply", str(fresh))
    assert applied.returncode == 0, applied.stderr
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"


def test_rollback_previous_is_exact_and_suspends(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, b, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    first = snapshot_of(node)
    first_owned = owned_part(first[0], node.node().caddy_settings)
    (repo / "routes" / "app.yaml").write_text(dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": b.dial}])))
    (repo / "streams" / "echo.yaml").unlink()
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "b"
    # Revisions as prefixes, Git-style: both stored revisions start "sha256:", so that prefix is refused.
    ambiguous = node.cli("rollback", "sha256:", "--yes")
    assert ambiguous.returncode == 1 and "is ambiguous: it starts sha256:" in ambiguous.stderr
    short = node.cli("rollback", "sha", "--yes")
    assert short.returncode == 1 and "too short" in short.stderr
    result = node.cli("rollback", "--previous", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "suspended" in result.stdout
    now = snapshot_of(node)
    assert json.dumps(owned_part(now[0], node.node().caddy_settings), sort_keys=True) == json.dumps(first_owned, sort_keys=True)
    assert now[1] == first[1]  # the Nginx files, byte for byte
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"
    assert "suspended" in node.cli("status").stdout
    assert node.cli("resume").stdout.strip() == "Automatic sync resumed."
    assert "suspended" not in node.cli("status").stdout


def test_mass_deletion_is_refused(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port(), extra_routes=4)
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    before = snapshot_of(node)
    for path in (repo / "routes").glob("*.yaml"):
        path.unlink()
    refused = node.cli("apply", str(repo), "--yes")
    assert refused.returncode == 1
    assert "deletes 5 of 6 managed resources" in refused.stderr and "--allow-mass-delete" in refused.stderr
    assert snapshot_of(node) == before
    allowed = node.cli("apply", str(repo), "--yes", "--allow-mass-delete")
    assert allowed.returncode == 0, allowed.stderr
    assert http_get(node.caddy.http_port, "app.example.com").status == 404


def test_apply_without_a_terminal_needs_yes(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    result = node.cli("apply", str(repo))
    assert result.returncode == 1 and "Pass --yes" in result.stderr
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    nothing = node.cli("apply", str(repo), "--yes")
    assert nothing.returncode == 0 and "Nothing to do." in nothing.stdout


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_mix(node: NodeUnderTest, backends, tmp_path: Path) -> None:
    a, b, echo = backends
    stream_a, stream_b = free_port(), free_port()
    repo_a = make_repo(tmp_path / "a", a.dial, echo.port, stream_a, extra_routes=3)
    repo_b = make_repo(tmp_path / "b", b.dial, echo.port, stream_b, extra_routes=5, second_dial=a.dial)
    n = node.node()
    settings = n.caddy_settings

    def rendered_fingerprint(repo: Path) -> str:
        state = load_specs(read_directory(repo)[0]).state
        r = render_all(state, "x", caddy=settings, capabilities=n.capabilities, environment={})
        return fingerprint(r.caddy_owned, r.nginx_files)

    expected = {rendered_fingerprint(repo_a): "a", rendered_fingerprint(repo_b): "b"}
    assert node.cli("apply", str(repo_a), "--yes").returncode == 0
    rng = random.Random(20261126)
    seen = {"a": 0, "b": 0}
    interrupted = 0
    for round_number in range(50):
        repo = repo_b if round_number % 2 == 0 else repo_a
        process = subprocess.Popen(
            [sys.executable, "-m", "hecate_agent", "--config", str(node.config), "apply", str(repo), "--yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.25, 0.9))  # interpreter start-up is ~0.25 s; the apply itself follows
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            interrupted += 1
        process.wait()
        recover(n)  # what the next start does first
        live = read_live(n)
        found = fingerprint(owned_part(live.state("caddy"), settings), live.state("nginx"))
        assert found in expected, f"round {round_number}: live state is a mix of revisions"
        seen[expected[found]] += 1
        assert not (node.state_dir / "journal.json").exists()
    assert interrupted >= 10, "the kill never landed inside an apply; widen the window"
    # Whatever the live revision is, the proxies serve it.
    which = "a" if http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a" else "b"
    assert tcp_exchange(stream_a if which == "a" else stream_b) == b"echo:ping"


def test_plan_against_a_git_revision_offline(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    write_repo(work, {"specs/routes/app.yaml": dump_yaml(route("app", upstreams=[{"dial": "10.0.0.1:80"}])),
                      "specs/routes/old.yaml": dump_yaml(route("old", "old.example.com"))})
    git = ["git", "-C", str(work), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    write_repo(work, {"specs/routes/app.yaml": dump_yaml(route("app", upstreams=[{"dial": "10.0.0.2:80"}])),
                      "specs/routes/new.yaml": dump_yaml(route("new", "new.example.com"))})
    (work / "specs" / "routes" / "old.yaml").unlink()
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "two"], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(origin)], check=True)
    subprocess.run([*git, "push", "-q", "origin", "main"], check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "hecate_agent", "plan", str(clone / "specs"), "--against", "HEAD~1", "--format", "markdown"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "HECATE_AGENT_CONFIG": str(tmp_path / "none.yaml")},
    )
    assert result.returncode == 2, result.stderr
    out = result.stdout
    assert "| create | update | delete | unchanged | drift |" in out
    assert "| + | `Route/new` | create |" in out
    assert "| - | `Route/old` | delete |" in out
    assert "`Route/app` | update; `spec.upstreams[0].dial`" in out
    assert '- spec.upstreams[0].dial: "10.0.0.1:80"\n+ spec.upstreams[0].dial: "10.0.0.2:80"' in out


def test_apply_of_a_revision_failing_its_verify_probe_exits_1_and_the_previous_serves_again(
        node: NodeUnderTest, backends, tmp_path: Path) -> None:
    """The CLI runs the daemon's verification: a `hecate.io/verify` route answering 502 is rolled back,
    the last-known-good is untouched, and history and status say why."""
    a, _, echo = backends
    repo = make_repo(tmp_path / "repo", a.dial, echo.port, free_port())
    assert node.cli("apply", str(repo), "--yes").returncode == 0
    lkg = json.loads((node.state_dir / "last-applied.json").read_text())
    before = snapshot_of(node)
    dead = route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": "127.0.0.1:9"}])
    dead["metadata"]["labels"] = {"hecate.io/verify": "true"}
    (repo / "routes" / "app.yaml").write_text(dump_yaml(dead))
    result = node.cli("apply", str(repo), "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verification failed: Route/app: GET / (Host app.example.com) answered 502" in result.stderr
    assert "Everything was put back as it was." in result.stderr
    assert snapshot_of(node) == before
    assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"
    assert json.loads((node.state_dir / "last-applied.json").read_text()) == lkg  # never recorded
    assert not (node.state_dir / "journal.json").exists()
    last = node.cli("history").stdout.strip().splitlines()[-1]
    assert "rolled_back" in last and "verification failed: Route/app:" in last and "answered 502" in last
    status = json.loads((node.state_dir / "status.json").read_text())
    assert status["phase"] == "Degraded" and status["appliedRevision"] == lkg["revision"]
    assert status["lastAttempt"]["outcome"] == "rolled_back" and "answered 502" in status["lastAttempt"]["error"]
