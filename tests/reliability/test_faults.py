"""Faults while the daemon applies a new revision, on real Caddy and Nginx.

For each fault: the node runs revision A; the fault is injected; revision B arrives and the daemon's
reconcile fails. Then the node must be exactly at A (Caddy's owned config and the Nginx files, both),
the last-known-good must read back and describe what runs, and once the fault clears the next reconcile
takes B. Faults covered elsewhere, with the same checks: SIGKILL at 50 random points of the
transaction (tests/integration/test_apply.py), an unreachable or force-pushed Git remote
(tests/e2e/test_daemon.py), Consul down (tests/integration/test_consul_status.py, tests/e2e), Vault
down (tests/e2e/test_daemon.py, tests/integration/test_vault_secrets.py).
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.engine.transaction import Node, read_live
from hecate_agent.render.caddy import RATE_LIMIT_MODULE, CaddyCapabilities
from hecate_agent.runtime.daemon import Daemon
from hecate_agent.store import state as state_module
from hecate_agent.targets.caddy import owned_part
from tests.helpers import dump_yaml, route, stream
from tests.support.caddy import caddy_capabilities
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest
from tests.support.servers import TcpEcho, free_port, serving, tcp_exchange

pytestmark = pytest.mark.integration
PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


class FlakyAdmin:
    """A TCP relay in front of Caddy's admin API that can answer every write with a 500."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.fail_writes = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))

        def pump_back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=pump_back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if self.fail_writes and data.split(b" ", 1)[0] in (b"POST", b"PATCH", b"PUT", b"DELETE"):
                    body = b'{"error":"injected: internal server error"}'
                    client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                                   + body)
                    break
                # Caddy checks the Host header against its admin address.
                upstream.sendall(data.replace(f"127.0.0.1:{self.port}".encode(), f"127.0.0.1:{self.target_port}".encode()))
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


@pytest.fixture
def setup(node: NodeUnderTest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    a, b, echo = Upstream("a"), Upstream("b"), TcpEcho("echo")
    with serving(a, b, echo):
        yield {"node": node, "a": a, "b": b, "echo": echo, "specs": tmp_path / "specs", "port": free_port(),
               "tmp": tmp_path}


def write_revision(specs: Path, dial: str, echo_port: int, stream_port: int, **route_spec: Any) -> None:
    if specs.exists():
        shutil.rmtree(specs)
    (specs / "routes").mkdir(parents=True)
    (specs / "streams").mkdir()
    (specs / "routes" / "app.yaml").write_text(dump_yaml(route("app", "app.example.com", tls=PLAIN,
                                                               upstreams=[{"dial": dial}], **route_spec)))
    (specs / "streams" / "echo.yaml").write_text(dump_yaml(stream(
        "echo", port=None, listen={"address": "127.0.0.1", "port": stream_port},
        upstreams=[{"server": f"127.0.0.1:{echo_port}"}])))


def make_daemon(node: NodeUnderTest, specs: Path, *, admin_url: str | None = None,
                capabilities: CaddyCapabilities | None = None) -> Daemon:
    changes: dict[str, Any] = {"source": {"directory": str(specs)}}
    settings = json.loads(node.config.read_text())
    changes["nginx"] = {**settings["nginx"], "minReloadInterval": "0s"}  # no pacing between A and B here
    if admin_url is not None:
        changes["caddy"] = {**settings["caddy"], "adminUrl": admin_url}
    node.configure(**changes)
    caps = capabilities or caddy_capabilities()
    return Daemon(node.config, environ={},
                  node_factory=lambda s: Node.from_settings(s, environment={}, capabilities=caps))


def node_state(daemon: Daemon) -> tuple[Any, dict[str, str]]:
    live = read_live(daemon.node)
    return owned_part(live.state("caddy"), daemon.node.caddy_settings), live.state("nginx")


def assert_exactly_at(daemon: Daemon, expected: tuple[Any, dict[str, str]], revision: str) -> None:
    """The proxies run one whole revision, and the last-known-good reads back and describes it."""
    assert node_state(daemon) == expected
    last = daemon.node.store.last_applied()
    assert last is not None and last.revision == revision
    assert owned_part(last.caddy_config, daemon.node.caddy_settings) == expected[0]
    assert last.nginx_files == expected[1]


def run_fault(setup: dict[str, Any], daemon: Daemon, inject: Callable[[], None], clear: Callable[[], None], *,
              write_bad: Callable[[], None] | None = None, write_fixed: Callable[[], None] | None = None,
              expected_outcomes: tuple[str, ...]) -> None:
    node, specs, port = setup["node"], setup["specs"], setup["port"]
    a, b, echo = setup["a"], setup["b"], setup["echo"]

    def write_b() -> None:
        write_revision(specs, b.dial, echo.port, port)

    try:
        write_revision(specs, a.dial, echo.port, port)
        assert daemon.reconcile("start") == "applied"
        revision_a = daemon.node.store.last_applied().revision  # type: ignore[union-attr]
        at_a = node_state(daemon)

        inject()
        (write_bad or write_b)()
        outcome = daemon.reconcile("file-change")
        assert outcome in expected_outcomes, outcome
        clear()
        assert_exactly_at(daemon, at_a, revision_a)
        assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "a"
        assert tcp_exchange(port) == b"echo:ping"
        status = json.loads((node.state_dir / "status.json").read_text())
        assert status["appliedRevision"] == revision_a

        if write_fixed is not None:
            write_fixed()
        daemon.state.retry_at = 0.0  # the fault is gone: no need to wait out the backoff
        daemon.state.blocked_revision = None
        assert daemon.reconcile("settings") == "applied"
        assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "b"
        last = daemon.node.store.last_applied()
        assert last is not None and last.revision != revision_a
        assert_exactly_at(daemon, node_state(daemon), last.revision)
    finally:
        daemon.node.close()


def test_caddy_down_then_back_empty_gets_the_new_revision(setup: dict[str, Any]) -> None:
    node = setup["node"]
    daemon = make_daemon(node, setup["specs"])
    write_revision(setup["specs"], setup["a"].dial, setup["echo"].port, setup["port"])
    try:
        assert daemon.reconcile("start") == "applied"
        before = daemon.node.store.last_applied()
        nginx_before = daemon.node.nginx.read_active()  # type: ignore[union-attr]
        node.caddy.stop()
        write_revision(setup["specs"], setup["b"].dial, setup["echo"].port, setup["port"])
        assert daemon.reconcile("file-change") == "error"  # nothing read, nothing touched
        # The status says so, with the reason, and is not Synced (issue 13: it said Synced with no error).
        status = json.loads((node.state_dir / "status.json").read_text())
        assert status["phase"] == "Degraded", status
        assert status["lastAttempt"]["outcome"] == "error"
        assert "cannot reach Caddy's admin API" in status["lastAttempt"]["error"]
        assert status["desiredRevision"] == status["lastAttempt"]["revision"] != status["appliedRevision"]
        assert daemon.node.nginx.read_active() == nginx_before  # type: ignore[union-attr]
        assert tcp_exchange(setup["port"]) == b"echo:ping"  # the stream kept serving throughout
        after = daemon.node.store.last_applied()
        assert after is not None and before is not None and after.to_dict() == before.to_dict()
        node.caddy.start()  # a restarted Caddy without --resume holds nothing of ours
        daemon.state.retry_at = 0.0
        assert daemon.reconcile("settings") == "applied"
        assert http_get(node.caddy.http_port, "app.example.com").json()["upstream"] == "b"
        assert tcp_exchange(setup["port"]) == b"echo:ping"
    finally:
        daemon.node.close()


def test_caddy_answering_5xx(setup: dict[str, Any]) -> None:
    node = setup["node"]
    flaky = FlakyAdmin(int(node.caddy.admin_url.rsplit(":", 1)[1]))
    daemon = make_daemon(node, setup["specs"], admin_url=f"http://127.0.0.1:{flaky.port}")

    def inject() -> None:
        flaky.fail_writes = True

    def clear() -> None:
        flaky.fail_writes = False

    try:
        run_fault(setup, daemon, inject=inject, clear=clear, expected_outcomes=("rolled_back",))
    finally:
        flaky.close()


def test_caddy_rejecting_the_config(setup: dict[str, Any]) -> None:
    # Claim a module this Caddy lacks: the renderer emits it, and Caddy's /load refuses the config.
    real = caddy_capabilities()
    pretending = CaddyCapabilities(real.version, real.modules | {RATE_LIMIT_MODULE})
    daemon = make_daemon(setup["node"], setup["specs"], capabilities=pretending)
    specs, b, echo, port = setup["specs"], setup["b"], setup["echo"], setup["port"]
    run_fault(setup, daemon, inject=lambda: None, clear=lambda: None,
              write_bad=lambda: write_revision(specs, b.dial, echo.port, port, middleware=["rate-limit:10/second"]),
              write_fixed=lambda: write_revision(specs, b.dial, echo.port, port), expected_outcomes=("rolled_back",))


def test_nginx_t_failing(setup: dict[str, Any]) -> None:
    daemon = make_daemon(setup["node"], setup["specs"])
    specs, b, echo, port = setup["specs"], setup["b"], setup["echo"], setup["port"]

    def write_bad() -> None:
        # Nginx resolves upstream names when it loads the config: `nginx -t` fails on this one.
        write_revision(specs, b.dial, echo.port, port)
        path = specs / "streams" / "echo.yaml"
        path.write_text(path.read_text().replace(f"127.0.0.1:{echo.port}", "nowhere.invalid:5432"))

    run_fault(setup, daemon, inject=lambda: None, clear=lambda: None, write_bad=write_bad,
              write_fixed=lambda: write_revision(specs, b.dial, echo.port, port), expected_outcomes=("rolled_back",))


def test_nginx_reload_failing(setup: dict[str, Any]) -> None:
    daemon = make_daemon(setup["node"], setup["specs"])
    specs, b, echo = setup["specs"], setup["b"], setup["echo"]
    holder: list[socket.socket] = []
    busy = free_port()

    def inject() -> None:
        # B moves the stream to a port another process holds: `nginx -t` passes, the reload cannot bind.
        holder.append(socket.create_server(("127.0.0.1", busy)))

    def clear() -> None:
        for sock in holder:
            sock.close()

    run_fault(setup, daemon, inject=inject, clear=clear,
              write_bad=lambda: write_revision(specs, b.dial, echo.port, busy),
              expected_outcomes=("refused",))  # the preflight sees the busy port: nothing is changed
    assert tcp_exchange(busy) == b"echo:ping"


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS], ids=["state-dir-full", "state-dir-read-only"])
def test_state_dir_unwritable(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    daemon = make_daemon(setup["node"], setup["specs"])
    real_write_atomic = state_module.write_atomic
    broken = {"on": False}

    def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
        if broken["on"]:
            raise OSError(error, "injected")  # the syscall-level failure a full or read-only disk gives
        real_write_atomic(path, data, mode)

    monkeypatch.setattr(state_module, "write_atomic", write_atomic)

    def inject() -> None:
        broken["on"] = True

    def clear() -> None:
        broken["on"] = False

    run_fault(setup, daemon, inject=inject, clear=clear, expected_outcomes=("error", "rolled_back"))
