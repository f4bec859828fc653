"""Benchmark: what a request costs through real Caddy 2.6.2 for the first, middle and last of 10,000 hosts.

Caddy matches a server's routes in order, so with one route per host the last host
pays for every host before it. The repository holds plain-HTTP routes
(`autoHTTPS: false`, no certificates): 90% exact hosts `rNNNNN.example.com` and 10%
wildcards `*.wNNNNN.example.com` (rendered after every exact host, as Caddy needs).
Each route proxies to one of a few loopback upstreams and sets its own response
header `X-Route`, which every answer is checked against (a wrong route fails the run).

Measured in the same run, alternating:
- grouped: the config the agent renders (hecate_agent/render/caddy_layout.py);
- flat:    the same routes rendered one after the other (grouping off: the layout before it);
- direct:  the same client straight to an upstream (client + upstream, no Caddy).

One keep-alive connection per measured host (http.client), many requests per host,
median latency per host and the ratio last/first.

    python bench/routing.py [--routes 10000] [--requests 400] [--passes 2]
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hecate_agent.render import caddy_layout
from hecate_agent.render.caddy import merge, render_caddy
from hecate_agent.sources.directory import read_directory
from hecate_agent.spec.loader import DesiredState, load_specs
from tests.support.caddy import CaddyInstance, caddy_capabilities
from tests.support.node import running

WORK = Path(__file__).resolve().parent / ".work"
UPSTREAMS = 4


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

    def do_GET(self) -> None:
        body = self.server.server_port.to_bytes(2, "big").hex().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def start_upstreams(count: int) -> list[http.server.ThreadingHTTPServer]:
    servers = []
    for _ in range(count):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        servers.append(server)
    return servers


def route_name(i: int, routes: int) -> str:
    return f"w{i:05d}" if i >= exact_count(routes) else f"r{i:05d}"


def exact_count(routes: int) -> int:
    return routes - routes // 10


def domain(i: int, routes: int) -> str:
    return f"*.w{i:05d}.example.com" if i >= exact_count(routes) else f"r{i:05d}.example.com"


def request_host(i: int, routes: int) -> str:
    return domain(i, routes).replace("*", "x")


def generate(routes: int, ports: list[int]) -> Path:
    """A spec folder (rewritten when the upstream ports differ) of `routes` plain-HTTP routes."""
    repo = WORK / f"routing-{routes}"
    (repo / "routes").mkdir(parents=True, exist_ok=True)
    for i in range(routes):
        (repo / "routes" / f"{route_name(i, routes)}.yaml").write_text(f"""apiVersion: hecate.io/v1
kind: Route
metadata: {{name: {route_name(i, routes)}}}
spec:
  domain: "{domain(i, routes)}"
  tls: {{autoHTTPS: false, forceHTTPS: false}}
  upstreams:
    - dial: 127.0.0.1:{ports[i % len(ports)]}
  headers:
    set: {{X-Route: {route_name(i, routes)}}}
""")
    return repo


def load(repo: Path) -> DesiredState:
    files, problems = read_directory(repo)
    result = load_specs(files)
    if problems or result.problems or result.state is None:
        sys.exit(f"specs do not load: {(problems + result.problems)[:3]}")
    return result.state


def render_flat(state: DesiredState, caddy: CaddyInstance) -> dict[str, Any]:
    """The same routes rendered one after the other (grouping off): the layout before grouping."""
    saved = caddy_layout.GROUP_MIN_ROUTES
    caddy_layout.GROUP_MIN_ROUTES = sys.maxsize
    try:
        return render_caddy(state, caddy.settings, caddy_capabilities())
    finally:
        caddy_layout.GROUP_MIN_ROUTES = saved


def timed_requests(port: int, host: str, count: int, expect: str | None) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", "/", headers={"Host": host})
            response = conn.getresponse()
            response.read()
            samples.append(time.perf_counter() - started)
            if expect is not None and response.getheader("X-Route") != expect:
                sys.exit(f"{host}: answered by route {response.getheader('X-Route')!r} ({response.status}), not {expect}")
            if expect is None and response.status != 404:
                sys.exit(f"{host}: expected the catch-all's 404, got {response.status}")
    finally:
        conn.close()
    return samples


def measure(caddy: CaddyInstance, config: dict[str, Any], probes: list[tuple[str, str, str | None]],
            requests: int) -> dict[str, list[float]]:
    with caddy.admin() as admin:
        live = admin.get_config()
        admin.replace(merge(live.config, config, caddy.settings), live.etag)
    out: dict[str, list[float]] = {}
    for _, host, expect in probes:
        timed_requests(caddy.http_port, host, 20, expect)  # warm: connection, Caddy's upstream pool
    for _ in range(4):  # rounds, so machine noise spreads over all hosts
        for label, host, expect in probes:
            out.setdefault(label, []).extend(timed_requests(caddy.http_port, host, requests // 4, expect))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=400, help="per host, per layout and pass")
    parser.add_argument("--passes", type=int, default=2, help="alternations of the layouts")
    args = parser.parse_args()
    n, exact = args.routes, exact_count(args.routes)
    upstreams = start_upstreams(UPSTREAMS)
    ports = [s.server_port for s in upstreams]
    state = load(generate(n, ports))
    picks: list[tuple[str, int]] = [
        ("exact first", 0), ("exact middle", exact // 2), ("exact last", exact - 1),
        ("wildcard first", exact), ("wildcard middle", (exact + n) // 2), ("wildcard last", n - 1),
    ]
    probes: list[tuple[str, str, str | None]] = [(lbl, request_host(i, n), route_name(i, n)) for lbl, i in picks]
    probes.append(("exact last, mixed case", request_host(exact - 1, n).upper(), route_name(exact - 1, n)))
    probes.append(("unknown host (404)", "nowhere.example.net", None))
    results: dict[str, dict[str, list[float]]] = {"grouped": {}, "flat": {}}
    with tempfile.TemporaryDirectory() as tmp, running(CaddyInstance(Path(tmp) / "caddy")) as caddy:
        grouped = render_caddy(state, caddy.settings, caddy_capabilities())
        flat = render_flat(state, caddy)
        layouts = {"grouped": grouped, "flat": flat}
        for _ in range(args.passes):
            for name, config in layouts.items():
                for label, samples in measure(caddy, config, probes, args.requests).items():
                    results[name].setdefault(label, []).extend(samples)
    direct: list[float] = []
    for _ in range(args.passes * 4):
        direct += _direct(ports[0], args.requests // 4)
    for server in upstreams:
        server.shutdown()
    print(f"routing: {n:,} plain-HTTP routes ({exact:,} exact, {n - exact:,} wildcard) on real Caddy 2.6.2, "
          f"one keep-alive connection per host, {args.requests * args.passes} requests per host and layout, median ms")
    print(f"  {'host':<26} {'grouped':>9} {'flat':>9}")
    for label, _, _ in probes:
        g, f = (statistics.median(results[k][label]) * 1000 for k in ("grouped", "flat"))
        print(f"  {label:<26} {g:9.3f} {f:9.3f}")
    print(f"  {'direct to upstream':<26} {statistics.median(direct) * 1000:9.3f}  (client + upstream, no Caddy)")
    for kind in ("exact", "wildcard"):
        g = statistics.median(results["grouped"][f"{kind} last"]) / statistics.median(results["grouped"]["exact first"])
        f = statistics.median(results["flat"][f"{kind} last"]) / statistics.median(results["flat"]["exact first"])
        print(f"  ratio {kind} last / first    grouped {g:.2f}   flat {f:.2f}   (goal <= 2.00: "
              f"{'met' if g <= 2.0 else 'missed'})")
    cost = statistics.median(results["grouped"]["exact first"]) / statistics.median(results["flat"]["exact first"])
    print(f"  grouped first / flat first  {cost:.2f}  (what grouping costs the host that was already first)")


def _direct(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", "/")
            conn.getresponse().read()
            samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    return samples


if __name__ == "__main__":
    main()
