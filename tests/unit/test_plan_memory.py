"""The daemon plans against the Caddy config it applied (targets/caddy_memory.py), not a fresh read.

Checked here with a fake admin API that computes ETags from content and honours If-Match like
Caddy 2.6.2's `POST /config/`: a plan from memory equals a plan from a fresh read, a changed route
is planned exactly, and a change made behind the agent's back between plans is refused by the
precondition and leads to a fresh read and a fresh plan, whose apply keeps that change's
foreign parts and shows the drift.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.prepare import Prepared, prepare, read_live
from hecate_agent.engine.reconcile import Engine
from hecate_agent.render.caddy_layout import group_routes
from hecate_agent.spec.loader import DesiredState, SourceFile
from hecate_agent.store.state import Snapshot, StateStore
from hecate_agent.targets.caddy import CaddyTarget, caddy_resources
from hecate_agent.targets.caddy_admin import CaddyConflictError, CaddyError, LiveConfig
from hecate_agent.targets.caddy_memory import ResourceMemo
from tests.fakes import fake_node
from tests.helpers import dump_yaml, route

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
ROUTES = 300  # above the grouping threshold (render/caddy_layout.py): the groups are planned too


class FakeAdmin:
    """Caddy's admin API in memory: ETags from the content; `replace` honours If-Match (HTTP 412)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.gets = 0
        self.replaces = 0
        self.refused = 0
        self.pings = 0
        self.down = False

    def etag(self) -> str:
        return f'"/config/ {hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:8]}"'

    def get_config(self) -> LiveConfig:
        self.gets += 1
        return LiveConfig(json.loads(json.dumps(self.config)), self.etag())

    def replace(self, config: dict[str, Any], etag: str) -> None:
        if etag != self.etag():
            self.refused += 1
            raise CaddyConflictError("changed", status=412)
        self.replaces += 1
        self.config = json.loads(json.dumps(config))

    def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise CaddyError("cannot reach Caddy's admin API at fake: refused")

    def load(self, config: dict[str, Any]) -> None:
        self.config = json.loads(json.dumps(config))

    def close(self) -> None:
        pass


def files_with(changed: dict[int, str] | None = None) -> list[SourceFile]:
    changed = changed or {}
    return [
        SourceFile(
            f"routes/r{i}.yaml",
            dump_yaml(
                route(f"r{i}", f"r{i}.example.com", tls=PLAIN, upstreams=[{"dial": changed.get(i, "127.0.0.1:9000")}])
            ).encode(),
        )
        for i in range(ROUTES)
    ]


class Daemonish:
    """An engine over a real CaddyTarget (fake admin API), planning from memory as the daemon does."""

    def __init__(self, root: Path) -> None:
        self.admin = FakeAdmin()
        self.node = fake_node(root, [])
        self.caddy = CaddyTarget(self.admin, self.node.caddy_settings)  # type: ignore[arg-type]
        self.node.targets = [self.caddy]  # type: ignore[list-item]
        self.node.plan_from_memory = True
        self.engine = Engine(self.node)

    def state(self, files: list[SourceFile]) -> DesiredState:
        state, problem = self.engine.validate("x", files)
        assert state is not None, problem
        return state

    def reconcile(self, revision: str, files: list[SourceFile]) -> Any:
        result, _ = self.engine.reconcile(revision, files, source="test")
        return result


def changed_keys(prepared: Prepared) -> list[str]:
    return [c.key for c in prepared.plan.changes if c.action != "unchanged"]


def test_a_plan_from_memory_equals_a_plan_from_a_fresh_read_and_plans_the_one_changed_route(tmp_path: Path) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    state = world.state(files_with({7: "127.0.0.1:9007"}))
    gets = world.admin.gets
    remembered = prepare(world.node, state, "rev-2")
    assert world.admin.gets == gets  # no read of Caddy: planned against what was applied
    assert remembered.live.recalled == {"caddy"}
    fresh = prepare(world.node, state, "rev-2", fresh=True)
    assert world.admin.gets == gets + 1 and not fresh.live.recalled
    assert remembered.plan.to_dict() == fresh.plan.to_dict()
    assert remembered.desired == fresh.desired and remembered.needed == fresh.needed == {"caddy": True}
    assert changed_keys(remembered) == ["Route/r7"]
    [change] = [c for c in remembered.plan.changes if c.action != "unchanged"]
    assert [(f.path, f.before, f.after) for f in change.fields] == [
        ("spec.upstreams[0].dial", "127.0.0.1:9000", "127.0.0.1:9007")
    ]
    # ... and equals the plan of an agent that remembers nothing (a new process, fresh memo)
    other = Daemonish(tmp_path)
    other.admin.config = world.admin.config
    other.node.plan_from_memory = False
    assert prepare(other.node, other.state(files_with({7: "127.0.0.1:9007"})), "rev-2").plan.to_dict() == (
        fresh.plan.to_dict()
    )


def test_a_live_change_between_plans_is_refused_by_if_match_and_planned_again_from_a_fresh_read(
    tmp_path: Path,
) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    # Behind the agent's back: a foreign server added, one of our routes edited.
    edited = copy.deepcopy(world.admin.config)
    edited["apps"]["http"]["servers"]["theirs"] = {"listen": [":9999"], "routes": []}
    world.admin.config = edited
    gets = world.admin.gets

    result = world.reconcile("rev-2", files_with({7: "127.0.0.1:9007"}))

    assert result.outcome is Outcome.APPLIED, result.error
    assert world.admin.refused == 1  # the plan from memory was refused ...
    assert world.admin.gets > gets  # ... then Caddy was read
    assert result.prepared is not None and not result.prepared.live.recalled
    assert "Caddy server 'theirs'" in result.prepared.plan.unmanaged  # the fresh plan saw the change
    assert "theirs" in world.admin.config["apps"]["http"]["servers"]  # and the apply kept what is not ours
    assert changed_keys(result.prepared) == ["Route/r7"]
    # The next plan is from memory again, and agrees with Caddy.
    state = world.state(files_with({7: "127.0.0.1:9007", 8: "127.0.0.1:9008"}))
    assert prepare(world.node, state, "rev-3").plan.to_dict() == prepare(
        world.node, state, "rev-3", fresh=True
    ).plan.to_dict()


def test_an_edit_of_our_own_route_behind_our_back_shows_as_drift_after_the_refused_apply(tmp_path: Path) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    edited = copy.deepcopy(world.admin.config)
    server = edited["apps"]["http"]["servers"]["hecate_http"]
    group = next(r for r in server["routes"] if str(r.get("@id", "")).startswith("hecate-group."))
    group["handle"][0]["routes"][0]["terminal"] = False
    world.admin.config = edited

    result = world.reconcile("rev-2", files_with({7: "127.0.0.1:9007"}))

    assert result.outcome is Outcome.APPLIED and world.admin.refused == 1
    assert result.prepared is not None
    edited_route = next(c for c in result.prepared.plan.changes if c.drift)
    assert edited_route.action == "update" and edited_route.key != "Route/r7"


def test_a_read_that_finds_another_etag_drops_the_memory(tmp_path: Path) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    read_live(world.node)  # a drift check: same ETag, the memory stays
    assert world.caddy.recall() is not None
    world.admin.config = {**world.admin.config, "admin": {"listen": "127.0.0.1:2999"}}
    read_live(world.node)
    assert world.caddy.recall() is None
    gets = world.admin.gets
    prepare(world.node, world.state(files_with()), "rev-1")
    assert world.admin.gets == gets + 1


def test_the_resource_memo_gives_what_a_fresh_split_gives_also_for_a_changed_group(tmp_path: Path) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    config = world.admin.config
    memo = ResourceMemo()
    plain = caddy_resources(config, "hecate")
    assert caddy_resources(config, "hecate", memo) == plain
    assert caddy_resources(config, "hecate", memo) == plain  # from the memo
    changed = copy.deepcopy(config)
    server = changed["apps"]["http"]["servers"]["hecate_http"]
    group = next(r for r in server["routes"] if str(r.get("@id", "")).startswith("hecate-group."))
    group["match"][0]["host"].append("extra.example.com")
    memo.next_generation()
    got = caddy_resources(changed, "hecate", memo)
    assert got == caddy_resources(changed, "hecate") != plain
    assert any(r.get("@id") == group["@id"] for r in got[0]["Server/hecate_http"]["routes"])


def test_unchanged_groups_are_the_same_objects_from_render_to_render() -> None:
    routes = [
        {"@id": f"hecate-route-r{i}", "match": [{"host": [f"r{i}.example.com"]}], "handle": [], "terminal": True}
        for i in range(ROUTES)
    ]
    catch_all = {"@id": "hecate-not-found", "handle": [], "terminal": True}
    shells: dict[str, dict[str, Any]] = {}
    first = group_routes([*routes, catch_all], lambda *parts: "hecate-" + ".".join(parts), shells)
    again = group_routes([*routes, catch_all], lambda *parts: "hecate-" + ".".join(parts), shells)
    groups = [r for r in first if str(r["@id"]).startswith("hecate-group.")]
    assert len(groups) > 1 and all(a is b for a, b in zip(first[1:], again[1:], strict=True))
    routes[5] = copy.deepcopy(routes[5])  # equal, but a new object: its group is written anew
    third = group_routes([*routes, catch_all], lambda *parts: "hecate-" + ".".join(parts), shells)
    renewed = [new for old, new in zip(first, third, strict=True) if old is not new]
    assert third == first and len(renewed) == 2  # the host-case route (always new) and one group
    assert group_routes([*routes, catch_all], lambda *parts: "hecate-" + ".".join(parts)) == first


def test_the_recorded_last_known_good_is_what_reading_it_back_gives(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    snapshot = Snapshot("rev-1", "2026-01-01T00:00:00Z", "f", caddy_config={"apps": {"x": [1, {"y": None}]}})
    store.record(snapshot)
    kept = store.last_applied()
    assert kept is snapshot
    on_disk = Snapshot.from_dict(json.loads((tmp_path / "last-applied.json").read_text()))
    assert kept == on_disk
    assert StateStore(tmp_path).last_applied() == kept


def test_a_plan_from_memory_still_finds_a_caddy_that_is_down_before_anything_changes(tmp_path: Path) -> None:
    world = Daemonish(tmp_path)
    assert world.reconcile("rev-1", files_with()).outcome is Outcome.APPLIED
    world.admin.down = True
    before = json.dumps(world.admin.config, sort_keys=True)
    result = world.reconcile("rev-2", files_with({7: "127.0.0.1:9007"}))
    assert result.outcome is Outcome.ERROR and "cannot reach Caddy's admin API" in str(result.error)
    assert world.admin.refused == world.admin.replaces - 1 == 0  # no load was even tried
    assert json.dumps(world.admin.config, sort_keys=True) == before
    assert world.node.store.journal() is None
