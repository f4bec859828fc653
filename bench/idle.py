"""Benchmark: what `hecate-agent run` costs while nothing changes.

The daemon follows a bare Git repository holding the sample specs (polling
every `--interval`), against real Caddy and Nginx; once the first revision is
applied, it is left alone for `--seconds`. Measured from /proc: resident memory
(now and peak), CPU time of the daemon and of the git processes it ran, and the
polls it made (from its own /metrics), giving CPU per poll.

    python bench/idle.py [--seconds 180] [--interval 2s]

Goals (issue 8): RSS <= 60 MB, CPU <= 20 ms per poll.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.conftest import Agent, Remote
from tests.support.node import NodeUnderTest, running_proxies

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own user+system, waited-for children's user+system) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def memory_kib(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, peak


def polls(agent: Agent) -> float:
    text = urllib.request.urlopen(agent.url("/metrics"), timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'hecate_reconciles_total\{[^}]*trigger="poll"[^}]*\} (\S+)', text))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--interval", default="2s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hecate-bench-") as tmp:
        root = Path(tmp)
        with running_proxies(root) as (caddy, nginx):
            agent: Agent | None = None
            try:
                remote = Remote(root / "git")
                specs = {}
                for path in (ROOT / "sample-repo").rglob("*.yaml"):
                    relative = path.relative_to(ROOT / "sample-repo")
                    if "streams" not in relative.parts:  # streams listen on fixed ports: not needed here
                        specs[f"specs/{relative}"] = path.read_text()
                first = remote.commit(specs, "sample")
                remote.push()
                node = NodeUnderTest(root / "node", caddy, nginx)
                (root / "agent").mkdir()
                agent = Agent(node, root / "agent",
                              source={"git": {"url": str(remote.bare), "branch": "main", "path": "specs",
                                              "interval": args.interval}},
                              sync={"driftInterval": "60s"})  # the default (the test harness checks every 2 s)
                agent.extra_env = {"AUTHENTIK_OUTPOST_URL": "http://127.0.0.1:9"}
                agent.start()
                agent.wait_applied(first, timeout=60)
                assert agent.process is not None
                pid = agent.process.pid
                time.sleep(3)  # let start-up work settle
                cpu_before, children_before = cpu_seconds(pid)
                polls_before = polls(agent)
                time.sleep(args.seconds)
                cpu_after, children_after = cpu_seconds(pid)
                polls_after = polls(agent)
                rss, peak = memory_kib(pid)
                made = polls_after - polls_before
                own, git_cpu = cpu_after - cpu_before, children_after - children_before
                print(f"idle: `hecate-agent run` following a Git remote (sample specs), polling every {args.interval}, "
                      f"{args.seconds:.0f} s of no-op polls")
                print(f"  polls made                {made:.0f}")
                print(f"  RSS now / peak            {rss / 1024:.1f} MB / {peak / 1024:.1f} MB   (goal <= 60 MB: "
                      f"{'met' if peak / 1024 <= 60 else 'not met'})")
                print(f"  CPU, agent process        {own:.2f} s  = {1000 * own / max(made, 1):.1f} ms per poll")
                print(f"  CPU, git child processes  {git_cpu:.2f} s  = {1000 * git_cpu / max(made, 1):.1f} ms per poll")
                total = 1000 * (own + git_cpu) / max(made, 1)
                print(f"  CPU per poll, all         {total:.1f} ms   (goal <= 20 ms: {'met' if total <= 20 else 'not met'})")
            finally:
                if agent is not None:
                    agent.stop(signal.SIGTERM)
                    agent.notify.close()
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
