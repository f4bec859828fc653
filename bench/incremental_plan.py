"""Benchmark: plan one changed file in a 10,000-route repository, daemon-warm.

What the daemon does when a push changes one route: read the new commit's tree
(blob cache warm: only the changed blob is read), load the specs (parse cache
warm: only the changed file is parsed), render, read the live Caddy and Nginx
state, and plan against it. Real Git (a bare remote), real Caddy 2.6.2 and
Nginx with the 10,000 routes applied. The fetch is reported separately: it is
the network's, not the plan's.

    python bench/incremental_plan.py [--routes 10000] [--runs 15]

Goal (issue 8): median plan <= 0.1 s.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hecate_agent.engine.transaction import apply_prepared, cycle_collector_paused, prepare
from hecate_agent.sources.git import GitSource
from hecate_agent.spec.loader import ParseCache, load_specs
from tests.support.node import NodeUnderTest, running_proxies


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def route_text(i: int, port: int) -> str:
    return f"""apiVersion: hecate.io/v1
kind: Route
metadata: {{name: r{i}}}
spec:
  domain: r{i}.example.com
  tls: {{autoHTTPS: false, forceHTTPS: false}}
  upstreams:
    - dial: 127.0.0.1:{port}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="cProfile the last run's load + plan")
    parser.add_argument("--peer", action="store_true", help="also plan each revision from a fresh read, explained")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hecate-bench-") as tmp:
        root = Path(tmp)
        bare, work = root / "remote.git", root / "work"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        git(root, "init", "-q", "-b", "main", str(work))
        git(work, "config", "user.email", "bench@example.com")
        git(work, "config", "user.name", "bench")
        (work / "routes").mkdir()
        for i in range(args.routes):
            (work / "routes" / f"r{i}.yaml").write_text(route_text(i, 9100 + i % 50))
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "routes")
        git(work, "remote", "add", "origin", str(bare))
        git(work, "push", "-q", "origin", "main")

        with running_proxies(root) as (caddy, nginx):
            node_under_test = NodeUnderTest(root / "node", caddy, nginx)
            node = node_under_test.node()
            node.plan_from_memory = True  # as the daemon does (`hecate-agent run`)
            node.explain_plans = False
            source = GitSource(str(bare), "main", root / "mirror")
            cache = ParseCache()
            revision = source.fetch()
            files, _ = source.snapshot(revision)
            state = load_specs(files, cache=cache).state
            assert state is not None
            apply_prepared(node, prepare(node, state, revision))  # the 10,000 routes are live
            print(f"incremental plan: {args.routes:,} routes live in Caddy, one route changed per push, "
                  f"{args.runs} pushes, daemon-warm")
            fetch_times, read_times, load_times, plan_times, peer_times = [], [], [], [], []
            for run in range(args.runs):
                (work / "routes" / "r0.yaml").write_text(route_text(0, 9200 + run))
                git(work, "commit", "-q", "-am", f"change {run}")
                git(work, "push", "-q", "origin", "main")
                started = time.perf_counter()
                revision = source.fetch()
                fetched = time.perf_counter()
                files, _ = source.snapshot(revision)
                read = time.perf_counter()
                profiler = cProfile.Profile() if args.profile and run == args.runs - 1 else None
                if profiler is not None:
                    profiler.enable()
                with cycle_collector_paused():  # as the daemon does
                    result = load_specs(files, cache=cache)
                cache.retain(files)
                loaded = time.perf_counter()
                assert result.state is not None
                prepared = prepare(node, result.state, revision)
                planned = time.perf_counter()
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
                assert [c.key for c in prepared.plan.changes if c.action != "unchanged"] == ["Route/r0"]
                # The peer, in the same run: what a one-shot `hecate-agent plan` does after the same load
                # (reads Caddy, explains every change); the daemon planned this way before.
                if args.peer:
                    node.explain_plans = True
                    peer_started = time.perf_counter()
                    peer = prepare(node, result.state, revision, fresh=True)
                    peer_times.append(time.perf_counter() - peer_started + (loaded - read))
                    node.explain_plans = False
                    assert peer.plan.to_dict()["summary"] == prepared.plan.to_dict()["summary"]
                fetch_times.append(fetched - started)
                read_times.append(read - fetched)
                load_times.append(loaded - read)
                plan_times.append(planned - read)
            total = statistics.median(plan_times)
            print(f"  git fetch (loopback)      median {statistics.median(fetch_times):.3f} s  (not part of the plan)")
            print(f"  read tree (blob cache)    median {statistics.median(read_times):.3f} s")
            print(f"  load specs (parse cache)  median {statistics.median(load_times):.3f} s")
            print(f"  load + render + live + plan  median {total:.3f} s  (min {min(plan_times):.3f}, "
                  f"max {max(plan_times):.3f})")
            if peer_times:
                print(f"  peer: load + render + live read + explained plan (the CLI's way)  median "
                      f"{statistics.median(peer_times):.3f} s")
            print(f"  goal <= 0.100 s: {'met' if total <= 0.1 else 'not met'}")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  peak RSS of this process  {peak:.0f} MiB  (10,000 routes loaded, rendered, applied once, planned)")
            node.close()


if __name__ == "__main__":
    main()
