"""What the daemon makes of an outcome (runtime/policy.py), with a fake clock: pacing, memory of
bad revisions, backoff, and the unchanged-revision shortcut."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.reconcile import Result
from hecate_agent.engine.transaction import ApplyResult
from hecate_agent.metrics import Metrics
from hecate_agent.plan import Plan
from hecate_agent.runtime.policy import Policy
from hecate_agent.runtime.sdnotify import Notifier
from hecate_agent.runtime.worker import Worker
from tests.fakes import MemorySource


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000 + self.now


def policy(clock: FakeClock) -> Policy:
    return Policy(Worker(Notifier(), threading.Event()), Metrics(), clock)


def applied(revision: str, *, nginx: bool) -> Result:
    prepared = SimpleNamespace(needed={"caddy": True, "nginx": nginx})
    plan = Plan(revision, None, "", "", ())
    return Result(Outcome.APPLIED, revision, prepared=prepared,  # type: ignore[arg-type]
                  applied=ApplyResult(Outcome.APPLIED, revision, 0.1, plan))


def test_nginx_reloads_are_paced_by_the_clock() -> None:
    clock = FakeClock(100.0)
    p = policy(clock)
    source = MemorySource()
    p.after(applied("r1", nginx=True), [], source)
    assert p.state.last_nginx_reload == 100.0 and source.accepted == ["r1"]
    reload_again = SimpleNamespace(needed={"nginx": True})
    caddy_only = SimpleNamespace(needed={"nginx": False})
    clock.now = 103.0
    assert p.pacing(reload_again, 10.0) == 7.0  # type: ignore[arg-type]
    assert p.pacing(caddy_only, 10.0) == 0.0  # type: ignore[arg-type]
    clock.now = 111.0
    assert p.pacing(reload_again, 10.0) == 0.0  # type: ignore[arg-type]
    p.after(applied("r2", nginx=False), [], source)
    assert p.state.last_nginx_reload == 100.0  # a Caddy-only apply does not reset the pace


def test_bad_revisions_are_remembered_and_failures_back_off() -> None:
    p = policy(FakeClock(0.0))
    source = MemorySource()
    p.after(Result(Outcome.INVALID, "r2", "routes/a.yaml:1:1: bad", blocks=True), [], source)
    quiet = p.quiet("r2", "poll", None, "r1")
    assert quiet is not None and quiet.outcome is Outcome.INVALID and quiet.attempt() is None  # lastAttempt kept
    p.after(Result(Outcome.ROLLED_BACK, "r3", "verify: verification failed", blocks=True), [], source)
    blocked = p.quiet("r3", "poll", None, "r1")
    assert blocked is not None and blocked.outcome is Outcome.BLOCKED
    assert p.state.failures == 1 and p.state.retry_at > 0  # the rolled-back attempt backs off
    p.after(Result(Outcome.ERROR, "r4", "cannot reach Caddy's admin API"), [], source)
    assert p.state.failures == 2
    p.after(applied("r4", nginx=False), [], source)
    assert p.state.failures == 0 and p.state.retry_at == 0.0
    assert source.accepted == ["r4"]


def test_an_unchanged_revision_costs_no_plan_only_on_routine_triggers() -> None:
    p = policy(FakeClock(0.0))
    noop = p.quiet("r1", "poll", None, "r1")
    assert noop is not None and noop.outcome is Outcome.NOOP and noop.attempt() is None
    assert p.quiet("r1", "settings", None, "r1") is None  # settings changed: render again
    assert p.quiet("r2", "poll", None, "r1") is None
    suspended = p.quiet("r2", "poll", {"reason": "maintenance"}, "r1")
    assert suspended is not None and suspended.outcome is Outcome.SUSPENDED
