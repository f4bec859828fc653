"""Benchmark: `hecate-agent apply` vs a raw `curl -X POST /load` of the same JSON, on real Caddy + Nginx.

For each repository (the sample, and a generated one with N routes) two
revisions that differ in every route are applied alternately, so each apply
really changes Caddy. Measured in the same run:

- cli:   `hecate-agent apply PATH --yes` as a fresh process (what an operator waits for);
- core:  the apply transaction in-process, as the daemon runs it (render, plan against the config it
         applied, guards, journal, load under If-Match, verify, record);
- raw:   `curl -X POST /load` of the exact merged JSON the agent sent (Caddy's own cost).

    python bench/apply.py [--routes 10000] [--runs 5]

Prints medians and the ratios cli/raw and core/raw (goal for the core: <= 1.3).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hecate_agent.engine.transaction import apply_prepared, prepare
from hecate_agent.sources.directory import read_directory
from hecate_agent.spec.loader import load_specs
from tests.support.node import NodeUnderTest, running_proxies

ROOT = Path(__file__).resolve().parent.parent


def generated_repo(root: Path, routes: int, variant: int) -> Path:
    repo = root / f"repo-{routes}-{variant}"
    if repo.exists():
        return repo
    (repo / "routes").mkdir(parents=True)
    for i in range(routes):
        (repo / "routes" / f"r{i}.yaml").write_text(f"""apiVersion: hecate.io/v1
kind: Route
metadata: {{name: r{i}}}
spec:
  domain: r{i}.example.com
  tls: {{autoHTTPS: false, forceHTTPS: false}}
  upstreams:
    - dial: 127.0.0.1:{9000 + variant}
    - dial: 127.0.0.1:{9100 + i % 50}
  headers:
    set: {{X-Variant: v{variant}}}
""")
    return repo


def sample_variant(root: Path, variant: int) -> Path:
    repo = root / f"sample-{variant}"
    if not repo.exists():
        shutil.copytree(ROOT / "sample-repo", repo)
        if variant:
            for path in (repo / "routes").glob("*.yaml"):
                path.write_text(path.read_text().replace("127.0.0.1:91", "127.0.0.1:92"))
    return repo


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(
    node: NodeUnderTest, repos: list[Path], runs: int, env: dict[str, str], *, profile: bool = False
) -> dict[str, float]:
    cli, core, raw = [], [], []
    bodies: list[bytes] = []
    n = node.node(environment=env)
    # As the daemon plans (`hecate-agent run`): against the config it applied (If-Match guards it), without
    # field-level explanations. The CLI reads Caddy and explains every change (`cli` above).
    n.plan_from_memory = True
    n.explain_plans = False
    states = [load_specs(read_directory(repo)[0]).state for repo in repos]
    for i in range(runs * 2):
        repo = repos[i % 2]
        started = time.perf_counter()
        result = node.cli("apply", str(repo), "--yes", env=env, timeout=600)
        cli.append(time.perf_counter() - started)
        if result.returncode != 0:
            sys.exit(f"apply failed: {result.stderr[-2000:]}")
    for i in range(runs * 2):
        state = states[i % 2]
        profiler = cProfile.Profile() if profile and i == runs * 2 - 1 else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        with n.store.lock():
            prepared = prepare(n, state, f"core-{i}")
            apply_prepared(n, prepared, source="bench")
        core.append(time.perf_counter() - started)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        if len(bodies) < 2:
            bodies.append(json.dumps(prepared.desired["caddy"]).encode())
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        for index, body in enumerate(bodies):
            path = Path(scratch) / f"{index}.json"
            path.write_bytes(body)
            files.append(path)
        for i in range(runs * 2):
            started = time.perf_counter()
            subprocess.run(
                ["curl", "-sf", "-X", "POST", "-H", "Content-Type: application/json",
                 "--data-binary", f"@{files[i % 2]}", f"{node.caddy.admin_url}/load"],
                check=True, capture_output=True,
            )
            raw.append(time.perf_counter() - started)
    n.close()
    return {"cli": median(cli), "core": median(core), "raw": median(raw), "size": len(bodies[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the last core apply of each case")
    parser.add_argument("--skip-sample", action="store_true", help="only the generated repository")
    args = parser.parse_args()
    work = ROOT / "bench" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    env = {"AUTHENTIK_OUTPOST_URL": "http://127.0.0.1:9000"}
    cases = [
        ("sample-repo", [sample_variant(work, 0), sample_variant(work, 1)]),
        (f"{args.routes:,} routes", [generated_repo(work, args.routes, 0), generated_repo(work, args.routes, 1)]),
    ]
    print(f"apply: {args.runs * 2} alternating applies per case, real Caddy 2.6.2 + Nginx, medians")
    for label, repos in cases[1:] if args.skip_sample else cases:
        with tempfile.TemporaryDirectory() as tmp, running_proxies(Path(tmp)) as (caddy, nginx):
            under_test = NodeUnderTest(Path(tmp) / "node", caddy, nginx)
            figures = measure(under_test, repos, args.runs, env, profile=args.profile)
        print(f"  {label:<14} config {figures['size'] / 1e6:6.2f} MB   cli {figures['cli']:.3f} s   core "
              f"{figures['core']:.3f} s   raw POST /load {figures['raw']:.3f} s   cli/raw "
              f"{figures['cli'] / figures['raw']:.2f}   core/raw {figures['core'] / figures['raw']:.2f}")


if __name__ == "__main__":
    main()
