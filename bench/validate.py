"""Benchmark: cold `hecate-agent validate` of 10,000 routes + 1,000 streams vs `caddy adapt`.

Both sides start a fresh process each run, as a CI job or an operator would.
The Caddyfile holds the same 10,000 sites (reverse proxy to the same upstreams
with the same health checks and headers); Caddy has no equivalent of the 1,000
Nginx streams, so our side does strictly more work.

    python bench/validate.py [--routes N] [--streams N] [--runs N]

Prints the median of each side and the ratio ours / caddy (goal <= 1.0).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / ".work"


def route_yaml(i: int) -> str:
    return f"""apiVersion: hecate.io/v1
kind: Route
metadata:
  name: route-{i}
  labels: {{team: team-{i % 20}}}
spec:
  domain: r{i}.example.com
  upstreams:
    - dial: 10.{i // 250 % 250}.{i % 250}.1:8080
      weight: 2
    - dial: 10.{i // 250 % 250}.{i % 250}.2:8080
  healthCheck:
    path: /healthz
    interval: 10s
    timeout: 2s
  headers:
    set:
      X-Frame-Options: DENY
  middleware: [compression]
"""


def stream_yaml(i: int) -> str:
    return f"""apiVersion: hecate.io/v1
kind: Stream
metadata:
  name: stream-{i}
spec:
  protocol: {"udp" if i % 4 == 0 else "tcp"}
  listen: {{address: 0.0.0.0, port: {20000 + i}}}
  upstreams:
    - server: 10.200.{i // 250}.{i % 250}:{20000 + i}
      maxFails: 3
      failTimeout: 30s
    - server: 10.201.{i // 250}.{i % 250}:{20000 + i}
      backup: true
"""


def caddy_site(i: int) -> str:
    a, b = i // 250 % 250, i % 250
    return f"""r{i}.example.com {{
\treverse_proxy 10.{a}.{b}.1:8080 10.{a}.{b}.1:8080 10.{a}.{b}.2:8080 {{
\t\tlb_policy round_robin
\t\thealth_uri /healthz
\t\thealth_interval 10s
\t\thealth_timeout 2s
\t}}
\theader X-Frame-Options DENY
\tencode zstd gzip
}}
"""


def generate(routes: int, streams: int) -> tuple[Path, Path]:
    repo = WORK / f"repo-{routes}-{streams}"
    caddyfile = WORK / f"Caddyfile-{routes}"
    if not repo.exists():
        tmp = repo.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "routes").mkdir(parents=True)
        (tmp / "streams").mkdir()
        for i in range(routes):
            (tmp / "routes" / f"route-{i}.yaml").write_text(route_yaml(i))
        for i in range(streams):
            (tmp / "streams" / f"stream-{i}.yaml").write_text(stream_yaml(i))
        tmp.rename(repo)
    if not caddyfile.exists():
        caddyfile.write_text("{\n\tadmin off\n}\n" + "".join(caddy_site(i) for i in range(routes)))
    return repo, caddyfile


def timed(command: list[str], expect_rc: int = 0) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != expect_rc:
        sys.exit(f"{command[:3]} exited {result.returncode}: {result.stdout[-500:]}{result.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    repo, caddyfile = generate(args.routes, args.streams)
    ours_cmd = [sys.executable, "-m", "hecate_agent", "validate", str(repo)]
    caddy = shutil.which("caddy")
    caddy_cmd = [caddy, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"] if caddy else None

    timed(ours_cmd)  # warm the page cache for both sides alike
    if caddy_cmd:
        timed(caddy_cmd)
    ours, theirs = [], []
    for _ in range(args.runs):  # interleaved so machine noise hits both sides
        ours.append(timed(ours_cmd))
        if caddy_cmd:
            theirs.append(timed(caddy_cmd))

    print(f"validate: {args.routes:,} routes + {args.streams:,} streams, {args.runs} runs each, cold processes")
    print(f"  hecate-agent validate  median {statistics.median(ours):.3f} s  (min {min(ours):.3f}, max {max(ours):.3f})")
    if theirs:
        print(f"  caddy adapt            median {statistics.median(theirs):.3f} s  (min {min(theirs):.3f}, max {max(theirs):.3f})")
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"  ratio hecate/caddy     {ratio:.2f}  (goal <= 1.00: {'met' if ratio <= 1.0 else 'missed'})")
    else:
        print("  caddy not installed: no comparison")


if __name__ == "__main__":
    main()
