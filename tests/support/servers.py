"""Small loopback servers for integration tests: TCP/UDP echo servers that say who they are."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator


def free_port(protocol: str = "tcp", address: str = "127.0.0.1") -> int:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: TcpEcho = self.server  # type: ignore[assignment]
        self.request.settimeout(5)
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(f"{server.name}:".encode() + data)


class TcpEcho(socketserver.ThreadingTCPServer):
    """Replies to every chunk with `<name>:<chunk>`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, address: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        super().__init__((address, port), _TcpHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: UdpEcho = self.server  # type: ignore[assignment]
        data, sock = self.request
        sock.sendto(f"{server.name}:".encode() + data, self.client_address)


class UdpEcho(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, name: str, address: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        super().__init__((address, port), _UdpHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def serving(*servers: socketserver.BaseServer) -> Iterator[None]:
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def tcp_exchange(port: int, payload: bytes = b"ping", address: str = "127.0.0.1", timeout: float = 5) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as conn:
        conn.sendall(payload)
        return conn.recv(65536)


def udp_exchange(port: int, payload: bytes = b"ping", address: str = "127.0.0.1", timeout: float = 2) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (address, port))
        data, _ = sock.recvfrom(65536)
        return data


def wait_until(condition, timeout: float = 5.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
