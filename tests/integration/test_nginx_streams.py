"""Stream specs rendered to Nginx and proven with real TCP/UDP traffic through a real Nginx."""

from __future__ import annotations

import collections
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hecate_agent.render.nginx import all_listeners, render_nginx
from hecate_agent.spec.loader import DesiredState
from hecate_agent.targets.nginx import NginxTarget
from hecate_agent.targets.nginx_streams import (
    NginxError,
    NginxReloadError,
    NginxSetupError,
    NginxStreams,
    PortConflictError,
)
from tests.helpers import SAMPLE_REPO, desired_state, stream
from tests.support.nginx import NginxInstance
from tests.support.servers import TcpEcho, UdpEcho, free_port, serving, tcp_exchange, udp_exchange, wait_until

pytestmark = pytest.mark.integration


def state_of(*docs: dict, global_config: dict | None = None) -> DesiredState:
    return desired_state(*docs, global_config=global_config)


def apply(nginx: NginxInstance, state: DesiredState, revision: str = "test") -> None:
    """The agent's Nginx sequence (NginxTarget.switch), undone on failure as the engine does."""
    target = NginxTarget(nginx.adapter)
    listeners = all_listeners(state)
    nginx.adapter.preflight(listeners)
    record = {"old": target.read().location, "restoreListeners": []}
    try:
        target.switch(render_nginx(state), listeners, revision, record, lambda: None)
    except NginxError:
        target.restore(record)
        raise
    target.commit(record)


def listen(port: int, protocol: str = "tcp", address: str = "127.0.0.1") -> dict:
    return {"address": address, "port": port}


def test_tcp_carries_bytes_both_ways_and_udp_answers(nginx: NginxInstance) -> None:
    tcp_up, udp_up = TcpEcho("tcp-a"), UdpEcho("udp-a")
    tcp_port, udp_port = free_port(), free_port("udp")
    with serving(tcp_up, udp_up):
        apply(nginx, state_of(
            stream("app", port=None, listen=listen(tcp_port), upstreams=[{"server": f"127.0.0.1:{tcp_up.port}"}]),
            stream("dns", port=None, protocol="udp", listen=listen(udp_port),
                   upstreams=[{"server": f"127.0.0.1:{udp_up.port}"}]),
        ))
        payload = bytes(range(256)) * 64  # 16 KiB, every byte value
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as conn:
            conn.sendall(payload)
            received = b""
            expected = b"tcp-a:" + payload
            while len(received) < len(expected):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk.replace(b"tcp-a:", b"") if received else chunk
            assert received.startswith(b"tcp-a:") and received.endswith(payload[-100:])
        assert udp_exchange(udp_port, b"query") == b"udp-a:query"


def test_weights_hold(nginx: NginxInstance) -> None:
    heavy, light = TcpEcho("heavy"), TcpEcho("light")
    port = free_port()
    with serving(heavy, light):
        apply(nginx, state_of(stream("weighted", port=None, listen=listen(port), upstreams=[
            {"server": f"127.0.0.1:{heavy.port}", "weight": 3},
            {"server": f"127.0.0.1:{light.port}", "weight": 1},
        ])))
        counts = collections.Counter(tcp_exchange(port).split(b":")[0] for _ in range(200))
    # With a shared zone Nginx runs one smooth weighted round robin for all workers:
    # 3:1 within 5 points (150/50 exactly when nothing else interferes).
    assert abs(counts[b"heavy"] / 200 - 0.75) <= 0.05, counts


def test_backup_only_when_primary_is_down_and_back_when_it_recovers(nginx: NginxInstance) -> None:
    primary_port = free_port()
    backup = TcpEcho("backup")
    port = free_port()
    with serving(backup):
        apply(nginx, state_of(stream("ha", port=None, listen=listen(port), upstreams=[
            {"server": f"127.0.0.1:{primary_port}", "maxFails": 1, "failTimeout": "1s"},
            {"server": f"127.0.0.1:{backup.port}", "backup": True},
        ])))
        primary = TcpEcho("primary", port=primary_port)
        with serving(primary):
            assert {tcp_exchange(port).split(b":")[0] for _ in range(10)} == {b"primary"}
        # primary is down: the backup answers (the first attempt fails over inside Nginx)
        assert {tcp_exchange(port).split(b":")[0] for _ in range(10)} == {b"backup"}
        primary = TcpEcho("primary", port=primary_port)
        with serving(primary):
            time.sleep(1.2)  # fail_timeout: the primary is tried again after it
            assert wait_until(lambda: tcp_exchange(port).split(b":")[0] == b"primary", timeout=5)
            assert {tcp_exchange(port).split(b":")[0] for _ in range(10)} == {b"primary"}


@pytest.mark.parametrize("preset", ["mailcow", "jenkins", "wazuh"])
def test_preset_opens_every_port(nginx: NginxInstance, preset: str) -> None:
    from hecate_agent.spec.base import PRESET_PORTS

    # Listen on 127.0.0.2 and forward to 127.0.0.3 (both loopback): the same port on both sides.
    upstreams = [TcpEcho(f"{preset}-{p}", address="127.0.0.3", port=p) for p in PRESET_PORTS[preset]]
    with serving(*upstreams):
        apply(nginx, state_of(stream(preset, port=None, preset=preset, listen={"address": "127.0.0.2"},
                                     upstreams=[{"server": "127.0.0.3"}])))
        for port in PRESET_PORTS[preset]:
            assert tcp_exchange(port, address="127.0.0.2") == f"{preset}-{port}:ping".encode()


def test_nginx_t_accepts_the_sample_repo(nginx: NginxInstance, tmp_path: Path) -> None:
    result = subprocess.run(
        [*_cli(), "render", str(SAMPLE_REPO), "--target", "nginx", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    files = {p.name: p.read_text() for p in (tmp_path / "out").glob("*.conf")}
    assert sorted(files) == ["dns.conf", "postgres.conf", "siem.conf"]
    folder = nginx.adapter.stage(files, "sample")
    nginx.adapter.activate(folder)
    nginx.adapter.test()


def test_nginx_t_accepts_a_thousand_streams(nginx: NginxInstance) -> None:
    docs = [
        stream(f"s{i}", port=None, protocol="udp" if i % 3 == 0 else "tcp",
               listen={"address": "127.0.0.1", "port": 30000 + i},
               upstreams=[{"server": f"10.1.{i // 250}.{i % 250}:{9000 + i}", "weight": 1 + i % 5,
                           "maxFails": 2, "failTimeout": "30s"},
                          {"server": f"[fd00::{i:x}]:{9000 + i}", "backup": i % 3 != 0}])
        for i in range(1000)
    ]
    state = state_of(*docs)
    files = render_nginx(state)
    assert len(files) == 1000
    nginx.adapter.activate(nginx.adapter.stage(files, "big"))
    nginx.adapter.test()


def test_taken_port_is_refused_before_reload(nginx: NginxInstance) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        before = nginx.adapter.read_active()
        with pytest.raises(PortConflictError) as caught:
            apply(nginx, state_of(stream("squatted", port=None, listen=listen(port),
                                         upstreams=[{"server": "127.0.0.1:9"}])))
        message = str(caught.value)
        assert f"Stream/squatted: tcp 127.0.0.1:{port} is already in use by python" in message
        assert nginx.adapter.read_active() == before
    finally:
        squatter.close()


def test_a_reload_that_cannot_bind_is_noticed_and_rolled_back(nginx: NginxInstance) -> None:
    good_port, taken_port = free_port(), free_port()
    echo = TcpEcho("echo")
    with serving(echo):
        apply(nginx, state_of(stream("good", port=None, listen=listen(good_port),
                                     upstreams=[{"server": f"127.0.0.1:{echo.port}"}])), "r1")
        assert wait_until(lambda: len(nginx.adapter.workers(nginx.process.pid)) == 2)  # old generation gone
        workers = nginx.adapter.workers(nginx.process.pid)
        files_before = nginx.adapter.read_active()
        state = state_of(
            stream("good", port=None, listen=listen(good_port), upstreams=[{"server": f"127.0.0.1:{echo.port}"}]),
            stream("late", port=None, listen=listen(taken_port), upstreams=[{"server": f"127.0.0.1:{echo.port}"}]),
        )
        # Skip the preflight, as if the port were taken between the check and the reload.
        adapter: NginxStreams = nginx.adapter
        folder = adapter.stage(render_nginx(state), "r2")
        previous = adapter.activate(folder)
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen()
        try:
            adapter.test()  # -t cannot see the conflict
            started = time.monotonic()
            with pytest.raises(NginxReloadError) as caught:
                adapter.reload_and_verify(all_listeners(state))
            assert time.monotonic() - started < 8
            assert "kept the old one" in str(caught.value) or "Stream/late" in str(caught.value)
            assert f"127.0.0.1:{taken_port}" in str(caught.value)
        finally:
            squatter.close()
        adapter.deactivate(previous)
        assert adapter.read_active() == files_before
        assert adapter.workers(nginx.process.pid) == workers  # the master kept its old generation
        assert tcp_exchange(good_port) == b"echo:ping"


def test_missing_include_is_a_setup_error_with_the_lines_to_add(tmp_path: Path) -> None:
    instance = NginxInstance(tmp_path / "noinclude", include=False)
    with pytest.raises(NginxSetupError) as caught:
        instance.adapter.check_include()
    assert f"include {instance.stream_dir}/*.conf;" in str(caught.value)
    NginxInstance(tmp_path / "with").adapter.check_include()


def test_switching_revisions_is_a_symlink_flip_and_old_folders_are_pruned(nginx: NginxInstance) -> None:
    echo = TcpEcho("v")
    port = free_port()
    with serving(echo):
        for revision in ("r1", "r2", "r3"):
            apply(nginx, state_of(stream("s", port=None, listen=listen(port),
                                         upstreams=[{"server": f"127.0.0.1:{echo.port}"}])), revision)
            assert nginx.stream_dir.is_symlink()
            assert nginx.adapter.active_folder().name.startswith(f"{revision}-")
        # the active folder and the one before it are kept for rollback
        assert len(list(nginx.adapter.revisions_dir.iterdir())) == 2
        assert tcp_exchange(port) == b"v:ping"


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "hecate_agent"]


def test_netlink_and_proc_agree_on_who_listens() -> None:
    """The fast sock_diag path and the /proc fallback see the same listeners, v4 and v6, TCP and UDP."""
    import socket as socket_module

    from hecate_agent.targets import sockets

    opened = []
    try:
        for family, address, kind in ((socket_module.AF_INET, "127.0.0.1", socket_module.SOCK_STREAM),
                                      (socket_module.AF_INET6, "::1", socket_module.SOCK_STREAM),
                                      (socket_module.AF_INET, "127.0.0.1", socket_module.SOCK_DGRAM),
                                      (socket_module.AF_INET6, "::", socket_module.SOCK_DGRAM)):
            sock = socket_module.socket(family, kind)
            sock.bind((address, 0))
            if kind == socket_module.SOCK_STREAM:
                sock.listen()
            opened.append(sock)
        fast, slow = sockets.listening_sockets(), sockets._from_proc("/proc")
        assert sorted(fast, key=repr) == sorted(slow, key=repr)
        for sock in opened:
            port = sock.getsockname()[1]
            protocol = "tcp" if sock.type == socket_module.SOCK_STREAM else "udp"
            assert any(s.port == port and s.protocol == protocol for s in fast), (protocol, port)
    finally:
        for sock in opened:
            sock.close()
