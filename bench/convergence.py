"""Benchmark: push → serving latency of `hecate-agent run`, for polling, webhook and directory modes.

Each sample changes one route's response header in the source (a commit pushed
to a bare Git remote, or an atomic file save in directory mode) and measures
until Caddy serves the new value. Real daemon process, real Caddy and Nginx.

    python bench/convergence.py [--commits 20] [--interval 2s]

Prints p50/p95 per mode (goal: p50 <= 1 s for webhook and directory).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.conftest import Agent, Remote
from tests.helpers import dump_yaml, route, write_repo
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest, running_proxies
from tests.support.servers import serving

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def route_text(dial: str, value: int) -> str:
    return dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}],
                           headers={"set": {"X-Rev": str(value)}}))


def serving_value(node: NodeUnderTest) -> str | None:
    try:
        return http_get(node.caddy.http_port, "app.example.com").headers.get("X-Rev")
    except OSError:
        return None


def wait_for(node: NodeUnderTest, value: int, timeout: float = 120) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if serving_value(node) == str(value):
            return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit(f"value {value} not served within {timeout} s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_mode(mode: str, commits: int, interval: str, root: Path, dial: str) -> list[float]:
    with running_proxies(root) as (caddy, nginx):
        node = NodeUnderTest(root / "node", caddy, nginx)
        samples = []
        agent: Agent | None = None
        try:
            if mode == "directory":
                specs = write_repo(root / "specs", {"routes/app.yaml": route_text(dial, 0)})
                agent = Agent(node, root, source={"directory": str(specs)})
            else:
                remote = Remote(root / "git")
                remote.commit({"specs/routes/app.yaml": route_text(dial, 0)}, "0")
                remote.push()
                poll = interval if mode == "polling" else "1h"
                agent = Agent(node, root, source={"git": {"url": str(remote.bare), "branch": "main", "path": "specs",
                                                          "interval": poll}})
            agent.start()
            wait_for(node, 0)
            for value in range(1, commits + 1):
                time.sleep(0.3)
                if mode == "directory":
                    temporary = specs / "routes" / ".app.yaml.tmp"
                    temporary.write_text(route_text(dial, value))
                    started = time.perf_counter()
                    temporary.replace(specs / "routes" / "app.yaml")
                else:
                    remote.commit({"specs/routes/app.yaml": route_text(dial, value)}, str(value))
                    remote.push()
                    started = time.perf_counter()
                    if mode == "webhook":
                        body = json.dumps({"ref": "refs/heads/main"}).encode()
                        signature = hmac.new(b"s3cret-webhook", body, hashlib.sha256).hexdigest()
                        request = urllib.request.Request(agent.url("/hooks/git"), data=body, method="POST",
                                                         headers={"X-Hub-Signature-256": f"sha256={signature}"})
                        urllib.request.urlopen(request, timeout=5).close()
                wait_for(node, value)
                samples.append(time.perf_counter() - started)
        finally:
            if agent is not None:
                agent.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--interval", default="2s", help="poll interval for the polling mode")
    args = parser.parse_args()
    backend = Upstream("backend")
    print(f"convergence: {args.commits} changes per mode, push (or save) -> Caddy serving it; polling every "
          f"{args.interval}")
    with serving(backend):
        for mode in ("polling", "webhook", "directory"):
            with tempfile.TemporaryDirectory() as tmp:
                samples = run_mode(mode, args.commits, args.interval, Path(tmp), backend.dial)
            print(f"  {mode:<10} p50 {statistics.median(samples):.3f} s   p95 {percentile(samples, 0.95):.3f} s   "
                  f"max {max(samples):.3f} s")


if __name__ == "__main__":
    main()
