"""Benchmark: a fleet of N agents, each with its own real Caddy and Nginx, one Consul, rollouts and halts.

Every node is a real Caddy 2.6.2, a real Nginx and a `hecate-agent run` process, all following one
bare Git remote and coordinating through the Consul test server (tests/support/consul_server.py:
Consul's HTTP API with blocking queries and Consul's index rules, and a request counter).

    python bench/fleet.py [--nodes 50] [--slots 5] [--soak 2s] [--interval 2s] [--idle 60] [--halt-rounds 3]

What it needs: per node ~110 MB of memory (agent ~55 MB, Caddy ~45 MB, Nginx ~8 MB) and 6 loopback
ports, so 50 nodes take ~5.5 GB; on 2 cores the 50 agents' start-up (imports, first apply) and the
drift checks (every 2 s here) keep the CPU busy, which stretches the times below but not the request
counts. `--nodes 10` is a quick check.

Prints:
- time from start until every node reports Synced (in Consul);
- one rollout: time until every node applied it, the most nodes that held a slot at once (from the
  agents' "rollout slot taken/released" logs), and Consul requests per node;
- idle: Consul requests per node per second (default session TTL, 30 s);
- halt rounds: a revision that fails verification, pushed `--halt-rounds` times; the nodes that
  took a slot for it after its halt was written (must be 0), and the halted fleet's requests/s;
- a node whose Caddy is down while a revision arrives: its status as `status --fleet` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.conftest import PLAIN, Agent, Remote
from tests.helpers import dump_yaml, route
from tests.support.caddy import CaddyInstance
from tests.support.consul_server import FakeConsul
from tests.support.fleet import halt_written_at, max_holders, published, taken_after
from tests.support.http import Upstream
from tests.support.nginx import NginxInstance
from tests.support.node import NodeUnderTest, running
from tests.support.servers import serving

FAILED = ("halted", "blocked", "rolled_back")


def app(dial: str, mark: str, *, verify: bool = False) -> str:
    doc = route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}], headers={"set": {"X-Rev": mark}})
    if verify:
        doc["metadata"]["labels"] = {"hecate.io/verify": "true"}
    return dump_yaml(doc)


def wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"fleet: {what} did not happen within {timeout:.0f} s")


class Fleet:
    def __init__(self, root: Path, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.consul = FakeConsul()
        stack.callback(self.consul.close)
        self.remote = Remote(root / "git")
        self.agents: list[Agent] = []
        self.caddies: list[CaddyInstance] = []
        for i in range(args.nodes):
            caddy = stack.enter_context(running(CaddyInstance(root / f"caddy{i}")))
            nginx = stack.enter_context(running(NginxInstance(root / f"nginx{i}")))
            node = NodeUnderTest(root / f"node{i}", caddy, nginx)
            node.configure(node={"name": f"edge-{i:02}"})
            (root / f"agent{i}").mkdir()
            agent = Agent(node, root / f"agent{i}",
                          source={"git": {"url": str(self.remote.bare), "branch": "main", "path": "specs",
                                          "interval": args.interval}},
                          consul={"address": f"http://127.0.0.1:{self.consul.port}"},  # default session TTL
                          rollout={"maxConcurrent": args.slots, "soak": args.soak})
            stack.callback(agent.stop)
            self.agents.append(agent)
            self.caddies.append(caddy)
        stack.callback(self.signal_all)  # runs first: every agent stops at once, then each is waited for
        self.logs = {f"edge-{i:02}": a.log for i, a in enumerate(self.agents)}

    def signal_all(self) -> None:
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                agent.process.send_signal(signal.SIGTERM)

    @property
    def requests(self) -> int:
        with self.consul.state.lock:
            return self.consul.state.requests

    def push(self, text: str, message: str) -> str:
        revision = self.remote.commit({"specs/routes/app.yaml": text}, message)
        self.remote.push()
        return revision

    def all_synced(self, revision: str, nodes: list[str] | None = None) -> bool:
        statuses = published(self.consul)
        names = nodes or list(self.logs)
        return all(statuses.get(n, {}).get("appliedRevision") == revision
                   and statuses.get(n, {}).get("phase") == "Synced" for n in names)

    def all_refused(self, revision: str) -> bool:
        attempts = [(s.get("lastAttempt") or {}) for s in published(self.consul).values()]
        return len(attempts) == len(self.agents) and all(
            a.get("revision") == revision and a.get("outcome") in FAILED for a in attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--slots", type=int, default=5, help="rollout.maxConcurrent")
    parser.add_argument("--soak", default="2s", help="rollout.soak")
    parser.add_argument("--interval", default="2s", help="source.git.interval")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle to measure")
    parser.add_argument("--halt-rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.nodes
    long = 120 + 8 * n
    print(f"fleet: {n} nodes (real Caddy + Nginx + hecate-agent run each), rollout maxConcurrent {args.slots}, "
          f"soak {args.soak}, git poll {args.interval}, Consul test server")
    good, other = Upstream("good"), Upstream("other")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack, serving(good, other):
        started = time.monotonic()
        fleet = Fleet(Path(tmp), args, stack)
        print(f"  proxies started          {time.monotonic() - started:.1f} s")
        first = fleet.push(app(good.dial, "first"), "first")
        for agent in fleet.agents:
            agent.start()
        took = wait("first Synced on every node", lambda: fleet.all_synced(first), long)
        print(f"  first Synced, all nodes  {took:.1f} s after the agents started")

        time.sleep(3)  # the last soak ends, the last statuses go out
        before = fleet.requests
        second = fleet.push(app(other.dial, "second"), "second")
        took = wait("the rollout", lambda: fleet.all_synced(second), long)
        cost = (fleet.requests - before) / n
        print(f"  rollout                  {took:.1f} s, at most {max_holders(fleet.logs, second)} holders at once "
              f"(limit {args.slots}), {cost:.1f} Consul requests per node (goal <= 40)")

        time.sleep(3)
        with fleet.consul.state.lock:
            paths_before = dict(fleet.consul.state.paths)
        before = fleet.requests
        time.sleep(args.idle)
        rate = (fleet.requests - before) / n / args.idle
        with fleet.consul.state.lock:
            spent = {k: v - paths_before.get(k, 0) for k, v in fleet.consul.state.paths.items()}
        spent = {k: v for k, v in spent.items() if v}
        print(f"  idle                     {rate:.3f} Consul requests per node per second over {args.idle:.0f} s "
              f"(goal <= 0.2): {spent}")

        violations: list[str] = []
        halted_rates = []
        good_revision = second
        for round_ in range(1, args.halt_rounds + 1):
            bad = fleet.push(app("127.0.0.1:1", f"bad-{round_}", verify=True), f"bad {round_}")
            wait(f"halt round {round_}", lambda b=bad: fleet.all_refused(b), long)
            halted_at = halt_written_at(fleet.consul, bad)
            late = taken_after(fleet.logs, bad, halted_at) if halted_at is not None else ["(no halt written)"]
            violations += [f"round {round_}: {node}" for node in late]
            before = fleet.requests
            time.sleep(10)
            halted_rates.append((fleet.requests - before) / n / 10)
            good_revision = fleet.push(app(good.dial, f"fix-{round_}", verify=True), f"fix {round_}")
            wait(f"the fix of round {round_}", lambda g=good_revision: fleet.all_synced(g), long)
        print(f"  halt rounds              {args.halt_rounds}: nodes that took a halted revision after its halt: "
              f"{len(violations)} (must be 0) {violations or ''}; halted fleet "
              f"{max(halted_rates, default=0):.3f} requests per node per second")

        down = "edge-00"
        fleet.caddies[0].stop()
        third = fleet.push(app(other.dial, "third"), "third")
        rest = [name for name in fleet.logs if name != down]
        wait("the rollout around a node without Caddy", lambda: fleet.all_synced(third, rest), long)
        time.sleep(5)
        status = published(fleet.consul).get(down, {})
        attempt = status.get("lastAttempt") or {}
        print(f"  Caddy down on {down}      phase {status.get('phase')}, applied "
              f"{str(status.get('appliedRevision'))[:12]}, desired {str(status.get('desiredRevision'))[:12]} "
              f"(pushed {third[:12]}), last attempt {attempt.get('outcome')}: {attempt.get('error') or '-'}")


if __name__ == "__main__":
    main()
