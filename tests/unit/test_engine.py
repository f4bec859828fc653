"""The engine with fakes: targets in memory, a scripted verifier, a store that can die at any journal step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.reconcile import Engine, Result
from hecate_agent.engine.transaction import recover
from hecate_agent.errors import HecateError
from hecate_agent.runtime.apply_commands import saved_plan_moved
from hecate_agent.spec.loader import SourceFile
from hecate_agent.store.migrations import migrate_journal
from tests.fakes import (
    Crash,
    CrashingStore,
    MemorySink,
    MemorySource,
    MemoryTarget,
    Verifier,
    fake_node,
    fake_targets,
)
from tests.helpers import dump_yaml, route, stream

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
STEPS = ["prepared", "dns", "caddy", "nginx", "applied", "verified"]


def files_of(upstream: str, *, routes: int = 2, stream_port: int = 7000) -> dict[str, str]:
    files = {
        f"routes/r{i}.yaml": dump_yaml(route(f"r{i}", f"r{i}.example.com", tls=PLAIN, upstreams=[{"dial": upstream}]))
        for i in range(routes)
    }
    files["streams/db.yaml"] = dump_yaml(stream("db", port=stream_port))
    return files


class World:
    """One fake node and its source."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.events: list[str] = []
        self.targets = fake_targets(self.events)
        self.verifier = Verifier()
        self.settings = settings
        self.source = MemorySource()
        self.sink = MemorySink()
        self.engine = self.restart()

    def restart(self) -> Engine:
        """A new process: the same targets (their live state) and state dir, nothing else."""
        self.node = fake_node(self.root, self.targets, verifier=self.verifier, settings=self.settings)
        self.engine = Engine(self.node, sink=self.sink)
        return self.engine

    @property
    def store(self) -> CrashingStore:
        assert isinstance(self.node.store, CrashingStore)
        return self.node.store

    def target(self, name: str) -> MemoryTarget:
        return next(t for t in self.targets if t.name == name)

    def states(self) -> dict[str, Any]:
        return {t.name: json.dumps(t.state, sort_keys=True) for t in self.targets}

    def reconcile(self, files: dict[str, str], **options: Any) -> Result:
        revision = self.source.push(files)
        found, problems = self.source.snapshot(revision)
        result, _ = self.engine.reconcile(revision, found, problems, source="test", **options)
        return result

    def status(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "status.json").read_text()))

    def lkg(self) -> str | None:
        last = self.node.store.last_applied()
        return last.revision if last else None


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "state")


def test_targets_apply_in_declared_order_and_the_lkg_is_recorded_after_verification(world: World) -> None:
    seen_lkg: list[str | None] = []
    world.verifier.failures = []
    original = world.verifier.__call__

    def verifier(probes: Any) -> list[str]:
        seen_lkg.append(world.lkg())  # what is recorded while verification runs
        return original(probes)

    world.node.verifier = verifier
    result = world.reconcile(files_of("10.0.0.1:80"))
    assert result.outcome is Outcome.APPLIED, result.error
    assert world.events == ["apply dns", "apply caddy", "apply nginx"]
    assert seen_lkg == [None]  # not before verification passed
    assert world.lkg() == "rev-1"
    status = world.status()
    assert status["phase"] == "Synced" and status["lastAttempt"]["outcome"] == "applied"
    again = world.reconcile(files_of("10.0.0.1:80"))
    assert again.outcome is Outcome.NOOP and world.events == ["apply dns", "apply caddy", "apply nginx"]


def test_a_target_failing_midway_rolls_the_earlier_ones_back_in_reverse_order(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    before = world.states()
    world.events.clear()
    world.target("nginx").fail_apply = "nginx -t rejected the configuration"
    result = world.reconcile(files_of("10.0.0.2:80", stream_port=7001, routes=3))
    assert result.outcome is Outcome.ROLLED_BACK
    assert world.events == ["apply dns", "apply caddy", "fail nginx", "restore caddy", "restore dns"]
    assert world.states() == before and world.lkg() == "rev-1"
    assert not (world.root / "journal.json").exists()
    status = world.status()
    assert status["phase"] == "Degraded" and "nginx -t rejected" in status["lastAttempt"]["error"]
    assert world.store.history()[-1]["outcome"] == "rolled_back"


def test_failed_verification_restores_every_target_and_blocks_the_revision(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    before = world.states()
    world.events.clear()
    world.verifier.failures = ["Route/r0: GET / (Host r0.example.com) answered 502"]
    result = world.reconcile(files_of("10.0.0.2:80", stream_port=7001, routes=3))
    assert result.outcome is Outcome.ROLLED_BACK and result.blocks
    assert world.events == ["apply dns", "apply caddy", "apply nginx", "restore nginx", "restore caddy", "restore dns"]
    assert world.states() == before and world.lkg() == "rev-1"
    assert "verification failed: Route/r0" in (result.error or "")
    assert "answered 502" in world.store.history()[-1]["error"]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("verifies", [True, False], ids=["verifies", "fails-verification"])
def test_a_crash_after_any_journal_step_recovers_to_exactly_one_revision(world: World, step: str,
                                                                           verifies: bool) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    old = world.states()
    world.store.crash_at = step
    with pytest.raises(Crash):
        world.reconcile(files_of("10.0.0.2:80", stream_port=7001, routes=3))
    assert world.lkg() == "rev-1"  # even `verified` is journaled before the record
    journal = json.loads((world.root / "journal.json").read_text())
    new = {name: json.dumps(record["new"], sort_keys=True) for name, record in journal["targets"].items()}
    new = {**old, **new}
    world.restart()
    world.verifier.failures = [] if verifies else ["Stream/db: tcp 0.0.0.0:7001 does not accept"]
    assert recover(world.node) is not None
    assert not (world.root / "journal.json").exists()
    now = world.states()
    assert now in (old, new), "a mix of revisions"
    assert (world.lkg() == "rev-2") == (now == new)  # recorded exactly when it is what runs
    if now == new:
        assert verifies  # and only once verified
    if step in ("applied", "verified"):  # every target had changed: verify again decides
        assert (world.lkg() == "rev-2") == verifies
        assert world.store.history()[-1]["outcome"] == ("recovered" if verifies else "rolled_back")


def test_the_mass_deletion_guard_refuses_before_anything_changes(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80", routes=5)).outcome is Outcome.APPLIED
    world.events.clear()
    result = world.reconcile(files_of("10.0.0.1:80", routes=1))
    assert result.outcome is Outcome.REFUSED and "--allow-mass-delete" in (result.error or "")
    assert world.events == [] and world.lkg() == "rev-1"
    assert world.status()["phase"] == "OutOfSync"
    allowed = world.reconcile(files_of("10.0.0.1:80", routes=1), allow_mass_delete=True)
    assert allowed.outcome is Outcome.APPLIED


def test_a_saved_plan_is_stale_when_the_live_state_or_the_lkg_moved(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    revision = world.source.push(files_of("10.0.0.2:80"))
    state, _ = world.engine.validate(revision, *world.source.snapshot(revision))
    assert state is not None
    planned, _ = world.engine.prepare(state, revision)
    assert planned is not None
    saved = {"desiredFingerprint": planned.rendered.fingerprint, "liveFingerprint": planned.live.fingerprint,
             "lastApplied": "rev-1"}
    same, _ = world.engine.prepare(state, revision)
    assert same is not None and saved_plan_moved(saved, same) is None
    world.target("caddy").state = {"apps": {"http": {"servers": {"someone-elses": {}}}}}
    moved, _ = world.engine.prepare(state, revision)
    assert moved is not None and "stale" in (saved_plan_moved(saved, moved) or "")
    assert "applied" in (saved_plan_moved({**saved, "lastApplied": "rev-0",
                                           "liveFingerprint": moved.live.fingerprint}, moved) or "")


def test_pacing_defers_without_touching_anything_or_the_last_attempt(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    world.events.clear()
    result = world.reconcile(files_of("10.0.0.2:80", stream_port=7001), pacing=lambda prepared: 4.0)
    assert result.outcome is Outcome.PACED and result.retry_in == 4.0
    assert world.events == [] and world.status()["lastAttempt"]["revision"] == "rev-1"


def test_quarantine_keeps_an_invalid_file_at_its_last_good_version_and_applies_the_rest(world: World) -> None:
    good = files_of("10.0.0.1:80")
    assert world.reconcile(good).outcome is Outcome.APPLIED
    last_good = {f.display: f for f in world.source.snapshot("rev-1")[0]}
    changed = {**good, "routes/r0.yaml": "apiVersion: hecate.io/v1\nkind: Route\nmetadata: {name: r0}\nspec: {}\n",
               "routes/r1.yaml": dump_yaml(route("r1", "r1.example.com", tls=PLAIN, upstreams=[{"dial": "10.9.9.9:80"}]))}
    result = world.reconcile(changed, good=last_good)
    assert result.outcome is Outcome.QUARANTINED, result.error
    assert result.quarantined and result.quarantined[0].startswith("routes/r0.yaml")
    caddy = json.dumps(world.target("caddy").state)
    assert "10.9.9.9:80" in caddy and "10.0.0.1:80" in caddy  # r1 changed, r0 kept at its last good version
    status = world.status()
    assert status["phase"] == "Degraded" and status["quarantined"]
    without = world.reconcile(changed)  # no quarantine: the whole revision is refused
    assert without.outcome is Outcome.INVALID and without.blocks


class Halted:
    def __init__(self) -> None:
        self.left: list[Result] = []

    def enter(self, revision: str) -> Result | None:
        return Result(Outcome.HALTED, revision, "halted by node edge-3", halted_by="edge-3")

    def leave(self, revision: str, result: Result) -> None:
        self.left.append(result)


def test_an_admission_that_refuses_stops_before_the_lock_and_says_who(world: World) -> None:
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    world.events.clear()
    gate = Halted()
    result = world.reconcile(files_of("10.0.0.2:80"), admission=gate)
    assert result.outcome is Outcome.HALTED and world.events == [] and gate.left == []
    assert world.status()["phase"] == "Halted" and world.status()["lastAttempt"]["haltedBy"] == "edge-3"


class Counting:
    def __init__(self) -> None:
        self.entered = 0

    def enter(self, revision: str) -> Result | None:
        self.entered += 1
        return None

    def leave(self, revision: str, result: Result) -> None:
        pass


class Unreachable(MemoryTarget):
    def read(self) -> Any:
        raise HecateError("cannot reach Caddy's admin API at http://127.0.0.1:2019: connection refused")


def test_an_unreachable_target_ends_in_a_status_with_the_reason_not_synced(tmp_path: Path) -> None:
    world = World(tmp_path / "state")
    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    caddy = world.target("caddy")
    down = Unreachable("caddy", 30, pick=caddy.pick, keyed=caddy.keyed, key="caddy_config", events=world.events,
                       state=caddy.state)
    world.targets[world.targets.index(caddy)] = down
    world.restart()
    result = world.reconcile(files_of("10.0.0.2:80"))
    assert result.outcome is Outcome.ERROR
    status = world.status()
    assert status["phase"] == "Degraded" and status["appliedRevision"] == "rev-1"
    assert status["desiredRevision"] == "rev-2" and "cannot reach Caddy's admin API" in status["lastAttempt"]["error"]
    assert world.sink.published[-1] == status  # and the same document went to Consul
    gate = Counting()
    again = world.reconcile(files_of("10.0.0.3:80"), admission=gate)
    assert again.outcome is Outcome.ERROR and gate.entered == 0  # no rollout slot taken while Caddy is down


def test_an_old_journal_is_migrated_to_per_target_records() -> None:
    old = {"revision": "r", "oldCaddy": {"apps": {}}, "oldNginxFolder": "/x/a", "newNginxFolder": "/x/b",
           "nginxNeeded": True, "snapshot": {"nginx_listeners": [{"stream": "s"}]}}
    migrated = migrate_journal(old)
    assert migrated["targets"] == {
        "caddy": {"old": {"apps": {}}},
        "nginx": {"old": "/x/a", "new": "/x/b", "listeners": [{"stream": "s"}], "restoreListeners": []},
    }
    assert migrate_journal(migrated) == migrated


def test_source_files_are_what_the_engine_validates(world: World) -> None:
    result, _ = world.engine.reconcile("rev-x", [SourceFile("routes/bad.yaml", b"kind: [")], [], source="test")
    assert result.outcome is Outcome.INVALID and result.problems
    assert world.status()["lastAttempt"]["outcome"] == "invalid"


@pytest.mark.parametrize("case", ["applied", "rolled_back", "invalid", "noop"])
def test_a_reconcile_writes_the_status_exactly_once(world: World, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    from hecate_agent.store import status as status_module

    assert world.reconcile(files_of("10.0.0.1:80")).outcome is Outcome.APPLIED
    writes: list[str] = []
    real = status_module.write_atomic

    def counting(path: Path, data: bytes, mode: int = 0o600) -> None:
        writes.append(path.name)
        real(path, data, mode)

    monkeypatch.setattr(status_module, "write_atomic", counting)
    files = {"applied": files_of("10.0.0.2:80"), "rolled_back": files_of("10.0.0.3:80"),
             "invalid": {"routes/bad.yaml": "kind: ["}, "noop": files_of("10.0.0.1:80")}[case]
    if case == "rolled_back":
        world.target("nginx").fail_apply = "boom"
        files = {**files, "streams/db.yaml": dump_yaml(stream("db", port=7002))}
    result = world.reconcile(files)
    assert result.outcome == case
    assert writes == ["status.json"]
