"""Who is listening where: /proc/net tables and process file descriptors (Linux).

Nginx and Caddy both use SO_REUSEPORT in places, so the kernel does not always
refuse a second listener on a port (shared/research/proxy-brief.md, fact 44);
and an Nginx reload that cannot bind reports success. The agent therefore
looks at the sockets themselves.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

_TABLES = {"tcp": ("tcp", "tcp6"), "udp": ("udp", "udp6")}
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class SocketEntry:
    protocol: str  # tcp | udp
    address: str  # canonical IP text
    port: int
    inode: int


def _decode_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc prints each 32-bit word in host byte order (little endian here).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), int(port_hex, 16)


# sock_diag over netlink: the kernel filters by state, so thousands of TIME_WAIT rows cost
# nothing (reading /proc/net/tcp with 20,000 of them takes ~0.14 s; this takes ~1 ms).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_STATE_LISTEN, _TCP_STATE_CLOSE = 10, 7  # an unconnected UDP socket reports "close"
_DIAG_MSG = struct.Struct("=BBBB HH 16s 16s I 8s IIIII")  # inet_diag_msg (ports big-endian)


def _diag_dump(family: int, protocol: int, state: int) -> list[tuple[str, int, int]]:
    """(address, port, inode) of this family's sockets in `state`, from the kernel's sock_diag."""
    request = struct.pack("=BBBBI", family, protocol, 0, 0, 1 << state) + bytes(48)  # inet_diag_req_v2
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    found: list[tuple[str, int, int]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as link:
        link.settimeout(5)
        link.sendall(header + request)
        while True:
            data = link.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag request refused")
                fields = _DIAG_MSG.unpack_from(data, offset + 16)
                sport, raw, inode = socket.ntohs(fields[4]), fields[6], fields[14]
                packed = raw[:4] if family == socket.AF_INET else raw
                address = ipaddress.ip_address(packed)
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                    address = address.ipv4_mapped
                found.append((str(address), sport, inode))
                offset += (length + 3) & ~3


def _from_proc(proc: str) -> list[SocketEntry]:
    found = []
    for protocol, tables in _TABLES.items():
        wanted_state = _TCP_LISTEN if protocol == "tcp" else _UDP_UNCONNECTED
        for table in tables:
            try:
                with open(f"{proc}/net/{table}", encoding="ascii") as handle:
                    next(handle)
                    for line in handle:
                        fields = line.split()
                        if fields[3] != wanted_state:
                            continue
                        address, port = _decode_address(fields[1])
                        found.append(SocketEntry(protocol, address, port, int(fields[9])))
            except FileNotFoundError:
                continue
    return found


def listening_sockets(proc: str = "/proc") -> list[SocketEntry]:
    """Every listening TCP socket and unconnected (bound) UDP socket on this host's network namespace."""
    if proc != "/proc":
        return _from_proc(proc)
    try:
        return [
            SocketEntry(name, address, port, inode)
            for name, protocol, state in (
                ("tcp", socket.IPPROTO_TCP, _TCP_STATE_LISTEN),
                ("udp", socket.IPPROTO_UDP, _TCP_STATE_CLOSE),
            )
            for family in (socket.AF_INET, socket.AF_INET6)
            for address, port, inode in _diag_dump(family, protocol, state)
        ]
    except OSError:
        return _from_proc(proc)  # netlink not allowed here (a sandbox): the slower, equivalent path


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    """Inodes of the sockets process `pid` holds open."""
    inodes: set[int] = set()
    fd_dir = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def process_holding(inode: int, proc: str = "/proc") -> tuple[int, str] | None:
    """(pid, command name) of a process that holds the socket, if we may look."""
    wanted = f"socket:[{inode}]"
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"{proc}/{entry}/fd"):
                if os.readlink(f"{proc}/{entry}/fd/{fd}") == wanted:
                    with open(f"{proc}/{entry}/comm", encoding="utf-8", errors="replace") as handle:
                        return int(entry), handle.read().strip()
        except OSError:
            continue
    return None


def _covers(bound: str, wanted: str) -> bool:
    """Does a socket bound to `bound` take connections meant for `wanted` (same family wildcard)?"""
    if bound == wanted:
        return True
    wildcard_v4, wildcard_v6 = "0.0.0.0", "::"
    if bound in (wildcard_v4, wildcard_v6) or wanted in (wildcard_v4, wildcard_v6):
        return (":" in bound) == (":" in wanted) or wildcard_v6 in (bound, wanted)
    return False


def holders(protocol: str, address: str, port: int, sockets: list[SocketEntry]) -> list[SocketEntry]:
    """Sockets that already serve `protocol address:port` (exactly or through a wildcard)."""
    return [s for s in sockets if s.protocol == protocol and s.port == port and _covers(s.address, address)]


def can_bind(protocol: str, address: str, port: int) -> bool:
    """Try the bind Nginx will do (no SO_REUSEPORT). True when the port is free."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Nginx does: TIME_WAIT is no conflict
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
