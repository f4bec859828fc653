"""Issue 13 #9: a verification read that meets Caddy restarting its admin endpoint is retried.

A loopback relay in front of a real Caddy's admin API resets (RST) the first connections, as Caddy does
while it restarts its admin endpoint after a /load."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from hecate_agent.targets.caddy_admin import READ_RETRY_DELAYS, CaddyAdmin, CaddyError
from tests.support.caddy import CaddyInstance

pytestmark = pytest.mark.integration


class ResettingRelay:
    """Resets the first `resets` connections, then relays to Caddy's admin port (or answers `answer`)."""

    def __init__(self, target_port: int, resets: int, answer: bytes | None = None) -> None:
        self.target_port, self.resets, self.answer = target_port, resets, answer
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.resets:
                client.recv(65536)  # the request arrives; the answer is a reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client:
            request = client.recv(65536)
            if self.answer is not None:
                client.sendall(self.answer)
                return
            with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
                # Caddy checks the Host header against its admin address.
                upstream.sendall(request.replace(f"127.0.0.1:{self.port}".encode(),
                                                 f"127.0.0.1:{self.target_port}".encode()))
                while data := upstream.recv(65536):
                    client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_read_reset_by_a_restarting_admin_endpoint_is_retried(caddy: CaddyInstance) -> None:
    relay = ResettingRelay(caddy.admin_port, resets=2)
    try:
        with CaddyAdmin(f"http://127.0.0.1:{relay.port}") as admin, CaddyAdmin(caddy.admin_url) as direct:
            assert admin.get_config().config == direct.get_config().config
        assert relay.connections == 3
    finally:
        relay.close()


def test_the_retries_are_bounded_and_then_say_caddy_is_unreachable(caddy: CaddyInstance) -> None:
    relay = ResettingRelay(caddy.admin_port, resets=1000)
    try:
        with CaddyAdmin(f"http://127.0.0.1:{relay.port}") as admin, pytest.raises(CaddyError) as caught:
            admin.get_config()
        assert "cannot reach Caddy's admin API" in str(caught.value)
        assert relay.connections == len(READ_RETRY_DELAYS) + 1
    finally:
        relay.close()


def test_an_answer_from_caddy_and_a_write_are_not_retried(caddy: CaddyInstance) -> None:
    body = b'{"error":"injected"}'
    answer = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    relay = ResettingRelay(caddy.admin_port, resets=0, answer=answer)
    try:
        with CaddyAdmin(f"http://127.0.0.1:{relay.port}") as admin, pytest.raises(CaddyError) as caught:
            admin.get_config()
        assert caught.value.status == 500 and relay.connections == 1
    finally:
        relay.close()
    relay = ResettingRelay(caddy.admin_port, resets=1000)
    try:
        with CaddyAdmin(f"http://127.0.0.1:{relay.port}") as admin, pytest.raises(CaddyError):
            admin.load({})
        assert relay.connections == 1  # a write may have landed: never sent twice
    finally:
        relay.close()
