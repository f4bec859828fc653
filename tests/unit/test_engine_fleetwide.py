"""The engine's phases for fleet-wide targets, with fakes: additions in ascending order, removals a
target defers (`retire`) in descending order after the later targets let go, rollback newest first."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hecate_agent.engine.errors import ApplyError
from hecate_agent.engine.fleetwide import FleetRole, Retiring, components, use_publisher, wait_until
from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.prepare import Prepared
from hecate_agent.engine.reconcile import Engine
from hecate_agent.store.state import Snapshot
from tests.fakes import MemorySource, MemoryTarget, Verifier, fake_node
from tests.helpers import dump_yaml, route

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


class RetiringTarget(MemoryTarget):
    """Like Authentik: `apply` only adds (old keys stay), `retire` removes what is no longer desired."""

    def __init__(self, events: list[str]) -> None:
        super().__init__("authentik", 20, pick=lambda r: {k: {"host": k} for k in r.specs if k.startswith("Route/")},
                         keyed=lambda s: {f"AuthentikProvider/{k}": v for k, v in s.items()}, key=None,
                         events=events)
        self.fail_retire = False
        self.plan_whole = True

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return snapshot.parts.get(self.name, {})

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        return {"parts": {self.name: prepared.desired[self.name]}}

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        if self.fail_apply is not None:
            raise ApplyError(self.name, self.fail_apply)
        self.events.append(f"apply {self.name}")
        self.state = {**self.state, **prepared.desired[self.name]}

    def retire(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        if self.fail_retire:
            self.events.append(f"fail retire {self.name}")
            raise ApplyError(self.name, "Authentik refused a delete")
        self.events.append(f"retire {self.name}")
        self.state = dict(prepared.desired[self.name])

    def component(self) -> dict[str, Any] | None:
        return {"healthy": True, "detail": "in memory"}


class Fleet:
    def __init__(self, root: Path) -> None:
        self.events: list[str] = []
        self.authentik = RetiringTarget(self.events)
        self.caddy = MemoryTarget("caddy", 30, pick=lambda r: r.caddy_owned, keyed=lambda s: {"Caddy/all": s} if s
                                  else {}, key="caddy_config", events=self.events)
        self.root = root
        self.node = fake_node(root, [self.caddy, self.authentik], verifier=Verifier())
        self.engine = Engine(self.node)
        self.source = MemorySource()

    def reconcile(self, names: list[str]) -> Any:
        files = {f"routes/{n}.yaml": dump_yaml(route(n, f"{n}.example.com", tls=PLAIN,
                                                     upstreams=[{"dial": "127.0.0.1:9"}])) for n in names}
        revision = self.source.push(files)
        found, problems = self.source.snapshot(revision)
        self.events.clear()
        result, status = self.engine.reconcile(revision, found, problems, source="test")
        return result, status


def test_additions_go_authentik_first_and_removals_caddy_first(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    assert isinstance(fleet.authentik, Retiring)
    result, status = fleet.reconcile(["a", "b"])
    assert result.outcome is Outcome.APPLIED, result.error
    assert fleet.events == ["apply authentik", "apply caddy", "retire authentik"]
    assert result.applied.steps == ["authentik", "caddy", "retire:authentik", "verify"]
    assert fleet.authentik.state == {"Route/a": {"host": "Route/a"}, "Route/b": {"host": "Route/b"}}
    assert status["components"]["authentik"] == {"healthy": True, "detail": "in memory"}
    # The LKG holds the target's part under `parts`, and the next plan compares against it.
    last = fleet.node.store.last_applied()
    assert last is not None and last.parts == {"authentik": {"Route/a": {"host": "Route/a"}, "Route/b": {"host": "Route/b"}}}

    result, _ = fleet.reconcile(["a"])  # route b removed: Caddy lets go before Authentik deletes
    assert result.outcome is Outcome.APPLIED, result.error
    assert fleet.events == ["apply authentik", "apply caddy", "retire authentik"]
    assert fleet.authentik.state == {"Route/a": {"host": "Route/a"}}
    deleted = [c for c in result.prepared.plan.changes if c.action == "delete"]
    assert [f"{c.kind}/{c.name}" for c in deleted] == ["AuthentikProvider/Route/b"]
    assert [(f.path, f.before, f.after) for f in deleted[0].fields] == [("host", "Route/b", None)]  # field by field


def test_small_resources_show_every_field_on_create(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    result, _ = fleet.reconcile(["a"])
    created = {f"{c.kind}/{c.name}": c for c in result.prepared.plan.changes if c.action == "create"}
    assert [(f.path, f.before, f.after) for f in created["AuthentikProvider/Route/a"].fields] == [
        ("host", None, "Route/a")]
    assert created["Caddy/all"].fields == ()  # other targets keep one line per created resource


def test_a_failed_removal_rolls_back_caddy_then_authentik(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.reconcile(["a", "b"])
    before = (json.dumps(fleet.caddy.state, sort_keys=True), dict(fleet.authentik.state))
    fleet.authentik.fail_retire = True
    result, status = fleet.reconcile(["a"])
    assert result.outcome is Outcome.ROLLED_BACK
    assert "Authentik refused a delete" in (result.error or "")
    assert fleet.events == ["apply authentik", "apply caddy", "fail retire authentik", "restore caddy"]
    assert (json.dumps(fleet.caddy.state, sort_keys=True), fleet.authentik.state) == before
    assert status["phase"] == "Degraded"


def test_a_failing_caddy_restores_authentik(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.reconcile(["a"])
    fleet.caddy.fail_apply = "Caddy refused"
    result, _ = fleet.reconcile(["a", "c"])
    assert result.outcome is Outcome.ROLLED_BACK
    assert fleet.events == ["apply authentik", "fail caddy", "restore authentik"]
    assert fleet.authentik.state == {"Route/a": {"host": "Route/a"}}


def test_without_consul_the_static_setting_decides_who_acts() -> None:
    assert FleetRole("authentik", static=True).acts() is True
    follower = FleetRole("authentik")
    assert follower.acts() is False
    assert follower.describe() == "read-only (manage: false)"


def test_wait_until_is_bounded_and_returns_the_last_reason() -> None:
    calls: list[int] = []

    def never() -> str | None:
        calls.append(1)
        return "provider hecate-a missing"

    assert wait_until(never, 0.05, step=0.01) == "provider hecate-a missing"
    assert calls
    assert wait_until(lambda: None, 10) is None


def test_components_only_from_targets_that_report() -> None:
    events: list[str] = []
    plain = MemoryTarget("caddy", 30, pick=lambda r: {}, keyed=lambda s: {}, key=None, events=events)
    assert components([plain, RetiringTarget(events)]) == {"authentik": {"healthy": True, "detail": "in memory"}}


class _Publisher:
    prefix, node, session = "fleet", "edge-1", None

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_daemon_shares_its_publisher_with_fleet_wide_targets() -> None:
    own, daemons = _Publisher(), _Publisher()
    role = FleetRole("authentik", publisher=own, owns_publisher=True)  # type: ignore[arg-type]

    class Target:
        def __init__(self) -> None:
            self.role = role

    use_publisher([Target(), object()], daemons)  # type: ignore[arg-type]
    assert role.publisher is daemons and not role.owns_publisher
    assert own.closed and not daemons.closed  # the CLI's own session is not left behind
    assert role.key == "fleet/leaders/authentik"
    role.release()  # no session: nothing to release, and the daemon's publisher stays open
    assert not daemons.closed
