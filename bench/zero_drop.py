"""Benchmark: requests lost while the agent applies, on real Caddy 2.6.2 + Nginx.

A bounded Python load generator on loopback keeps HTTP requests flowing through
Caddy (new connections and keep-alive ones) and TCP exchanges flowing through an
Nginx stream, first at rest, then while the agent applies 100 revisions that
alternate the route's upstream and the stream's upstream (every apply changes
Caddy's config and reloads Nginx). Prints requests sent, errors, and latency
percentiles at rest vs during the applies.

    python bench/zero_drop.py [--applies 100] [--clients 4]

Goal (issue 8): 0 errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from hecate_agent.engine.transaction import apply_prepared, prepare
from hecate_agent.spec.loader import SourceFile, load_specs
from tests.helpers import dump_yaml, route, stream
from tests.support.http import Upstream
from tests.support.node import NodeUnderTest, running_proxies
from tests.support.servers import TcpEcho, free_port, serving

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0  # idle keep-alive connections the server closed, retried as clients do
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def failed(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def http_client(port: int, stop: threading.Event, tally: list[Tally], keep_alive: bool) -> None:
    """Like a browser, curl or Go's client: a request that fails on a *reused* keep-alive
    connection before any response byte is retried once on a fresh one (the server may close
    an idle connection at any moment: RFC 9112 section 9.3.1). Such retries are counted, and a
    failure on a fresh connection is an error."""
    conn: http.client.HTTPConnection | None = None
    used = 0
    while not stop.is_set():
        started = time.perf_counter()
        for attempt in (1, 2):
            reused = conn is not None and used > 0
            try:
                if conn is None:
                    conn, used = http.client.HTTPConnection("127.0.0.1", port, timeout=5), 0
                conn.request("GET", "/", headers={"Host": "app.example.com"})
                response = conn.getresponse()
                response.read()
                used += 1
                if response.status != 200:
                    tally[0].failed(f"HTTP {response.status}")
                else:
                    tally[0].ok(time.perf_counter() - started)
                if not keep_alive or response.will_close:
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                if reused and attempt == 1 and isinstance(exc, ConnectionError | http.client.RemoteDisconnected):
                    with tally[0].lock:
                        tally[0].retries += 1
                    continue
                tally[0].failed(f"{type(exc).__name__} ({'keep-alive' if keep_alive else 'new'} connection, "
                                f"{'reused' if reused else 'fresh'}, attempt {attempt})")
                break


def tcp_client(port: int, stop: threading.Event, tally: list[Tally]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"ping")
                reply = sock.recv(64)
            if not reply.endswith(b":ping"):
                tally[0].failed(f"bad reply {reply!r}")
            else:
                tally[0].ok(time.perf_counter() - started)
        except OSError as exc:
            tally[0].failed(type(exc).__name__)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def line(name: str, tally: Tally, seconds: float) -> str:
    n = len(tally.latencies)
    return (f"  {name:<24} {n + len(tally.errors):>7} sent  {len(tally.errors):>3} errors  "
            f"{(n + len(tally.errors)) / seconds:>7.0f}/s  p50 {statistics.median(tally.latencies) * 1000:6.2f} ms  "
            f"p99 {percentile(tally.latencies, 0.99) * 1000:6.2f} ms"
            + (f"  ({tally.retries} keep-alive retries)" if tally.retries else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--applies", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4, help="HTTP clients (half keep-alive); TCP clients: half")
    parser.add_argument("--rest", type=float, default=5.0, help="seconds of load at rest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hecate-bench-") as tmp:
        root = Path(tmp)
        with running_proxies(root) as (caddy, nginx):
            a, b, echo_a, echo_b = Upstream("a"), Upstream("b"), TcpEcho("ea"), TcpEcho("eb")
            stream_port = free_port()
            with serving(a, b, echo_a, echo_b):
                node = NodeUnderTest(root / "node", caddy, nginx).node()
                states = []
                for dial, echo in ((a.dial, echo_a), (b.dial, echo_b)):
                    files = [
                        SourceFile("routes/app.yaml", dump_yaml(route("app", "app.example.com", tls=PLAIN,
                                                                      upstreams=[{"dial": dial}])).encode()),
                        SourceFile("streams/echo.yaml", dump_yaml(stream(
                            "echo", port=None, listen={"address": "127.0.0.1", "port": stream_port},
                            upstreams=[{"server": f"127.0.0.1:{echo.port}"}])).encode()),
                    ]
                    state = load_specs(files).state
                    assert state is not None
                    states.append(state)
                apply_prepared(node, prepare(node, states[0], "rev-0"))

                def run_load(seconds: float | None, during: list[float]) -> tuple[Tally, Tally, float]:
                    stop = threading.Event()
                    web, tcp = [Tally()], [Tally()]
                    workers = [threading.Thread(target=http_client, args=(caddy.http_port, stop, web, i % 2 == 0))
                               for i in range(args.clients)]
                    workers += [threading.Thread(target=tcp_client, args=(stream_port, stop, tcp))
                                for _ in range(max(1, args.clients // 2))]
                    started = time.perf_counter()
                    for worker in workers:
                        worker.start()
                    if seconds is not None:
                        time.sleep(seconds)
                    elif raw_configs:
                        for i in range(1, args.applies + 1):
                            began = time.perf_counter()
                            body = raw_configs[i % 2]
                            reply = httpx.post(f"{caddy.admin_url}/load", content=body,
                                               headers={"Content-Type": "application/json"}, timeout=60)
                            assert reply.status_code == 200, reply.text
                            during.append(time.perf_counter() - began)
                    else:
                        for i in range(1, args.applies + 1):
                            began = time.perf_counter()
                            prepared = prepare(node, states[i % 2], f"rev-{i}")
                            result = apply_prepared(node, prepared)
                            assert result.outcome == "applied"
                            merged.setdefault(i % 2, json.dumps(prepared.desired["caddy"]).encode())
                            during.append(time.perf_counter() - began)
                    elapsed = time.perf_counter() - started
                    stop.set()
                    for worker in workers:
                        worker.join(timeout=10)
                    return web[0], tcp[0], elapsed

                merged: dict[int, bytes] = {}
                raw_configs: list[bytes] = []
                rest_web, rest_tcp, rest_seconds = run_load(args.rest, [])
                apply_times: list[float] = []
                busy_web, busy_tcp, busy_seconds = run_load(None, apply_times)
                # The peer: the same Caddy config changes as raw POST /load requests (no Nginx).
                raw_configs = [merged[0], merged[1]]
                raw_times: list[float] = []
                raw_web, _, raw_seconds = run_load(None, raw_times)
                print(f"zero-drop: {args.clients} HTTP clients through Caddy (half keep-alive), "
                      f"{max(1, args.clients // 2)} TCP clients through an Nginx stream")
                print(f"  at rest for {rest_seconds:.1f} s; then {args.applies} alternating applies in "
                      f"{busy_seconds:.1f} s (each: new Caddy config + Nginx reload; apply median "
                      f"{statistics.median(apply_times):.3f} s)")
                print(line("HTTP at rest", rest_web, rest_seconds))
                print(line("HTTP during applies", busy_web, busy_seconds))
                print(line("HTTP during raw /load", raw_web, raw_seconds)
                      + f"  [peer: {args.applies} raw POST /load of the same two configs]")
                print(line("TCP at rest", rest_tcp, rest_seconds))
                print(line("TCP during applies", busy_tcp, busy_seconds))
                errors = busy_web.errors + busy_tcp.errors + rest_web.errors + rest_tcp.errors
                if raw_web.errors:
                    print(f"  the raw /load peer lost {len(raw_web.errors)} too: "
                          + ", ".join(sorted(set(raw_web.errors))))
                print(f"  goal 0 errors: {'met' if not errors else 'not met: ' + ', '.join(sorted(set(errors)))}")
                node.close()


if __name__ == "__main__":
    main()
