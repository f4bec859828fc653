"""Benchmark: cold `hecate-agent render --target caddy` of 10,000 routes + 1,000 streams vs `caddy adapt`.

The repository and the equivalent Caddyfile are bench/validate.py's. Both sides are
fresh processes writing their JSON to /dev/null: ours reads and validates every spec,
asks `caddy` for its modules and renders the owned config (indented); `caddy adapt`
parses the Caddyfile and prints Caddy's JSON. Also reports the peak RSS of the render
process (the largest of it and its parse workers), i.e. the agent with 10,000 routes
loaded and rendered.

    python bench/render.py [--routes N] [--streams N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validate import generate  # bench/validate.py, next to this file


def run(command: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        sys.exit(f"{command[:4]} exited {process.returncode}: {stderr[-800:]}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    repo, caddyfile = generate(args.routes, args.streams)
    caddy = shutil.which("caddy")
    if caddy is None:
        sys.exit("caddy is not installed: nothing to compare with")
    ours_cmd = [sys.executable, "-m", "hecate_agent", "render", "--target", "caddy", str(repo)]
    caddy_cmd = [caddy, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"]
    run(ours_cmd)  # warm the page cache for both sides alike
    run(caddy_cmd)
    ours, theirs, rss = [], [], []
    for _ in range(args.runs):  # interleaved so machine noise hits both sides
        elapsed, peak = run(ours_cmd)
        ours.append(elapsed)
        rss.append(peak)
        theirs.append(run(caddy_cmd)[0])
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"render: {args.routes:,} routes + {args.streams:,} streams, {args.runs} runs each, cold processes")
    print(f"  hecate-agent render --target caddy  median {statistics.median(ours):.3f} s  "
          f"(min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"  caddy adapt                         median {statistics.median(theirs):.3f} s  "
          f"(min {min(theirs):.3f}, max {max(theirs):.3f})")
    print(f"  ratio hecate/caddy                  {ratio:.2f}  (goal <= 1.00: {'met' if ratio <= 1.0 else 'missed'})")
    print(f"  peak RSS of the render              {statistics.median(rss) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
