"""The daemon's HTTP endpoints: loopback by default, webhooks only with a valid signature, compared in
constant time, and hostile requests answered, never crashing anything."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hecate_agent.runtime.daemon import Daemon
from hecate_agent.settings import AgentSettings
from hecate_agent.targets import sockets
from tests.support.servers import free_port

SECRET = "topsecret-webhook"
BODY = b'{"ref":"refs/heads/main"}'
GOOD = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "specs").mkdir()
    (tmp_path / "secret").write_text(SECRET + "\n")
    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({
        "node": {"name": "sec"},
        "source": {"directory": str(tmp_path / "specs")},
        "stateDir": str(tmp_path / "state"),
        "caddy": {"adminUrl": f"http://127.0.0.1:{free_port()}"},
        "nginx": {"enabled": False},
        "http": {"listen": f"127.0.0.1:{free_port()}", "webhookSecretFile": str(tmp_path / "secret")},
    }))
    instance = Daemon(config, environ={})
    instance._start_http()
    yield instance
    assert instance.http is not None
    instance.http.shutdown()
    instance.http.server_close()
    instance.node.close()


def post(daemon: Daemon, headers: list[tuple[str, bytes]], body: bytes = BODY) -> int:
    """A raw request, so headers may carry any bytes (http.client would refuse some)."""
    port = int(daemon.settings.http.listen.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        lines = [b"POST /hooks/git HTTP/1.1", b"Host: x", b"Connection: close"]
        lines += [name.encode() + b": " + value for name, value in headers]
        if not any(name.lower() == "content-length" for name, _ in headers):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        reply = conn.recv(4096)
    return int(reply.split(b" ", 2)[1])


def test_the_default_listen_address_is_loopback() -> None:
    assert AgentSettings().http.listen.startswith("127.0.0.1:")


def test_endpoints_listen_on_loopback_only(daemon: Daemon) -> None:
    port = int(daemon.settings.http.listen.rsplit(":", 1)[1])
    mine = [s for s in sockets.listening_sockets() if s.port == port and s.protocol == "tcp"]
    assert [s.address for s in mine] == ["127.0.0.1"]


@pytest.mark.parametrize(("name", "headers", "expected"), [
    ("valid GitHub signature", [("X-Hub-Signature-256", f"sha256={GOOD}".encode())], 202),
    ("valid Gitea signature", [("X-Gitea-Signature", GOOD.encode())], 202),
    ("valid GitLab token", [("X-Gitlab-Token", SECRET.encode())], 202),
    ("missing signature", [], 401),
    ("wrong signature", [("X-Hub-Signature-256", b"sha256=" + b"0" * 64)], 401),
    ("signature of another body", [("X-Hub-Signature-256", b"sha256=" + hmac.new(SECRET.encode(), b"{}",
                                                                              hashlib.sha256).hexdigest().encode())], 401),
    ("truncated signature", [("X-Hub-Signature-256", f"sha256={GOOD[:32]}".encode())], 401),
    ("signature without prefix in the wrong header", [("X-Hub-Signature-256", b"sha1=" + GOOD.encode())], 401),
    ("non-hex signature", [("X-Hub-Signature-256", b"sha256=" + b"zz" * 32)], 401),
    ("non-ASCII signature", [("X-Hub-Signature-256", "sha256=é".encode("latin-1"))], 401),
    ("non-ASCII GitLab token", [("X-Gitlab-Token", "tøpsecret".encode("latin-1"))], 401),
    ("empty GitLab token", [("X-Gitlab-Token", b"")], 401),
    ("negative Content-Length", [("X-Hub-Signature-256", f"sha256={GOOD}".encode()), ("Content-Length", b"-1")], 400),
    ("garbage Content-Length", [("Content-Length", b"lots")], 400),
    ("non-ASCII digit Content-Length", [("Content-Length", "\u00b2".encode("latin-1"))], 400),
    ("oversized body", [("Content-Length", b"999999999")], 413),
])
def test_webhook_signatures(daemon: Daemon, name: str, headers: list[tuple[str, bytes]], expected: int) -> None:
    assert post(daemon, headers) == expected, name
    assert daemon.state.pending == ({"webhook"} if expected == 202 else set())


def test_signatures_are_compared_in_constant_time(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    for header, value in (("X-Hub-Signature-256", "sha256=00"), ("X-Gitea-Signature", "00"), ("X-Gitlab-Token", "x")):
        assert daemon.check_webhook({header: value}, BODY) is not None
    assert seen == [(bytes, bytes)] * 3  # every verdict went through compare_digest, on bytes


def test_status_and_metrics_answer_and_unknown_paths_are_404(daemon: Daemon) -> None:
    port = int(daemon.settings.http.listen.rsplit(":", 1)[1])
    for path, status in (("/status", 200), ("/metrics", 200), ("/../../etc/passwd", 404), ("/hooks/git", 404)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        assert conn.getresponse().status == status, path
        conn.close()
