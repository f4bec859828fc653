"""The one reconcile, called by `hecate-agent apply` and by the daemon (`hecate-agent run`).

    revision + files ─► validate ─► quarantine ─► [targets readable? ─► admission: rollout slot]
      ─► lock ─► recover ─► render + plan ─► review (CLI: show, confirm, saved-plan check)
      ─► pacing ─► guards + targets in order + verify + record LKG (transaction.py)
      ─► status, once (state dir, then the sink: Consul)

Every step ends in an `Outcome`; every failure, whatever raised it (Caddy or Nginx
unreachable, a target refusing, a secret missing), ends in a `Result` with the
outcome and the reason, and that result is written to the status document exactly
once (`publish`). The engine never retries, sleeps or schedules: the caller (the
daemon's worker, or the CLI) decides what an outcome means for the next attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hecate_agent.engine.errors import ConflictError
from hecate_agent.engine.fleetwide import components
from hecate_agent.engine.outcomes import SUCCEEDED, Outcome
from hecate_agent.engine.ports import StatusSink
from hecate_agent.engine.transaction import (
    ApplyError,
    ApplyResult,
    Node,
    Prepared,
    RollbackError,
    apply_prepared,
    cycle_collector_paused,
    outcome_of_error,
    prepare,
    read_live,
    recover,
)
from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.render.caddy import RenderError
from hecate_agent.report import problem_line
from hecate_agent.secrets import SecretError
from hecate_agent.spec.loader import DesiredState, ParseCache, SourceFile, load_specs
from hecate_agent.store.status import update_status

SHOWN_PROBLEMS = 5
QUARANTINE_ROUNDS = 3


@dataclass
class Result:
    """How one reconcile ended, and why."""

    outcome: Outcome
    revision: str | None
    error: str | None = None
    details: list[str] = field(default_factory=list)  # render problems, one per line
    problems: list[SpecProblem] = field(default_factory=list)  # validation problems
    quarantined: list[str] = field(default_factory=list)  # files kept at their last good version
    prepared: Prepared | None = None
    applied: ApplyResult | None = None
    recovered: str | None = None  # what resolving a leftover journal did
    retry_in: float = 0.0  # PACED: when to try again
    halted_by: str | None = None
    blocks: bool = False  # do not retry this revision until a new one arrives
    attempted: bool = True  # False: ended before anything was tried (known bad, unchanged): keep lastAttempt

    @property
    def succeeded(self) -> bool:
        return self.outcome in SUCCEEDED or self.outcome is Outcome.QUARANTINED

    def attempt(self) -> dict[str, Any] | None:
        """The status document's `lastAttempt` (None for outcomes that are not an attempt)."""
        if not self.attempted or self.outcome in (Outcome.PACED, Outcome.SUSPENDED, Outcome.SOURCE_ERROR):
            return None
        attempt: dict[str, Any] = {"revision": self.revision, "outcome": self.outcome, "error": self.error}
        if self.halted_by:
            attempt["haltedBy"] = self.halted_by
        return attempt


class Admission(Protocol):
    """Who lets a new revision be applied now (the fleet's rollout slots)."""

    def enter(self, revision: str) -> Result | None:
        """None: go ahead (a slot is held); else the result that stops this reconcile."""

    def leave(self, revision: str, result: Result) -> None:
        """After the apply and after its status was written: halt, soak, give the slot back."""


Review = Callable[[Prepared], None]  # may print, ask, or exit (the CLI); raises to stop
Pacing = Callable[[Prepared], float]  # seconds until this apply may go ahead (0: now)


class Engine:
    """One node's reconcile. Holds nothing between calls but the parse cache."""

    def __init__(self, node: Node, *, cache: ParseCache | None = None, sink: StatusSink | None = None) -> None:
        self.node = node
        self.cache = cache or ParseCache()
        self.sink = sink  # where the status goes besides the state dir (Consul)

    @property
    def applied_revision(self) -> str | None:
        last = self.node.store.last_applied()
        return last.revision if last else None

    # --- validate, quarantine ------------------------------------------------------------------

    def validate(
        self,
        revision: str,
        files: Sequence[SourceFile],
        problems: Sequence[SpecProblem] = (),
        *,
        good: Mapping[str, SourceFile] | None = None,
    ) -> tuple[DesiredState | None, Result | None]:
        """The revision's desired state, or why not. With `good` (the files of the last revision
        applied whole), invalid files are quarantined: kept at their last good version, or left out."""
        with cycle_collector_paused():  # 10,000 cached documents make every collection a full scan
            loaded = load_specs(list(files), cache=self.cache)
        self.cache.retain(list(files))
        found = sorted([*problems, *loaded.problems])
        if not found and loaded.state is not None:
            return loaded.state, None
        shown = "; ".join(problem_line(p) for p in found[:SHOWN_PROBLEMS])
        if len(found) > SHOWN_PROBLEMS:
            shown += f" (and {len(found) - SHOWN_PROBLEMS} more)"
        if good is not None:
            composed = _quarantine(files, found, good)
            if composed is not None:
                state, bad = composed
                quarantined = [problem_line(p) for p in found if p.file in bad][:20]
                return state, Result(Outcome.QUARANTINED, revision, shown, problems=found, quarantined=quarantined)
        return None, Result(Outcome.INVALID, revision, shown, problems=found, blocks=True)

    # --- plan ------------------------------------------------------------------------------------

    def prepare(
        self, state: DesiredState, revision: str, *, fresh: bool = False
    ) -> tuple[Prepared | None, Result | None]:
        """Render and plan against the live proxies (see `prepare`'s `fresh`); nothing changes."""
        try:
            return prepare(self.node, state, revision, fresh=fresh), None
        except RenderError as exc:
            error = "; ".join(exc.problems)
            return None, Result(Outcome.BLOCKED, revision, error, details=list(exc.problems), blocks=True)
        except SecretError as exc:  # like an unreachable remote: nothing touched, retry later
            return None, Result(Outcome.SECRET_ERROR, revision, str(exc))
        except HecateError as exc:  # a proxy unreachable or unreadable, the state dir, ...
            return None, Result(Outcome.ERROR, revision, str(exc))

    # --- apply -----------------------------------------------------------------------------------

    def apply(
        self,
        state: DesiredState,
        revision: str,
        *,
        source: str,
        allow_mass_delete: bool = False,
        review: Review | None = None,
        pacing: Pacing | None = None,
        lock_wait: float = 0.0,
    ) -> Result:
        """Under the node's lock: resolve a leftover journal, plan, review, pace, apply, verify, record."""
        recovered = None
        try:
            with self.node.store.lock(wait=lock_wait):
                recovered = recover(self.node)
                for fresh in (False, True):
                    prepared, refused = self.prepare(state, revision, fresh=fresh)
                    if refused is not None:
                        refused.recovered = recovered
                        return refused
                    assert prepared is not None
                    if review is not None:
                        review(prepared)
                    wait = pacing(prepared) if pacing is not None else 0.0
                    if wait > 0:
                        return Result(Outcome.PACED, revision, prepared=prepared, retry_in=wait, recovered=recovered)
                    try:
                        applied = apply_prepared(
                            self.node, prepared, allow_mass_delete=allow_mass_delete, source=source
                        )
                    except ConflictError:
                        if fresh or not prepared.live.recalled:
                            raise
                        continue  # planned against what was applied, and a target changed since: read it, plan again
                    return Result(applied.outcome, revision, prepared=prepared, applied=applied, recovered=recovered)
                raise AssertionError("unreachable")  # the second round returns or raises
        except (ApplyError, RollbackError) as exc:
            blocks = isinstance(exc, ApplyError) and exc.step == "verify"  # not retried until a new revision
            return Result(outcome_of_error(exc), revision, str(exc), recovered=recovered, blocks=blocks)
        except HecateError as exc:  # the lock, a proxy unreachable during recovery, the state dir
            return Result(Outcome.ERROR, revision, str(exc), recovered=recovered)

    def reconcile(
        self,
        revision: str,
        files: Sequence[SourceFile],
        problems: Sequence[SpecProblem] = (),
        *,
        source: str,
        good: Mapping[str, SourceFile] | None = None,
        admission: Admission | None = None,
        review: Review | None = None,
        pacing: Pacing | None = None,
        allow_mass_delete: bool = False,
        lock_wait: float = 0.0,
        status: Mapping[str, Any] | None = None,
    ) -> tuple[Result, dict[str, Any]]:
        """validate → quarantine → admission → apply → status (written once). Returns the result and
        the status document; `status` adds fields the caller owns (desiredRevision, sourceError)."""
        state, early = self.validate(revision, files, problems, good=good)
        if state is None:
            assert early is not None
            return early, self.publish(early, **(status or {}))
        gate = admission if admission is not None and revision != self.applied_revision else None
        if gate is not None:
            unreachable = self._unreachable(revision)  # a node that cannot apply must not hold a fleet slot
            if unreachable is not None:
                return unreachable, self.publish(unreachable, **(status or {}))
        held = gate.enter(revision) if gate is not None else None
        if held is not None:
            return held, self.publish(held, **(status or {}))
        result = self.apply(
            state,
            revision,
            source=source,
            allow_mass_delete=allow_mass_delete,
            review=review,
            pacing=pacing,
            lock_wait=lock_wait,
        )
        if early is not None and result.outcome in SUCCEEDED:  # quarantined, but the rest is in place
            early.prepared, early.applied, early.recovered = result.prepared, result.applied, result.recovered
            result = early
        try:
            document = self.publish(result, **(status or {}))
        finally:
            if gate is not None:
                gate.leave(revision, result)
        return result, document

    def _unreachable(self, revision: str) -> Result | None:
        """Every target can be read now (else the reason, as an ERROR result)."""
        try:
            read_live(self.node)
        except HecateError as exc:
            return Result(Outcome.ERROR, revision, str(exc))
        return None

    # --- status ----------------------------------------------------------------------------------

    def publish(self, result: Result, **fields: Any) -> dict[str, Any]:
        """Write the status document for this reconcile: once, with its outcome and reason; then
        hand it to the sink (before a rollout slot is given back, so the fleet sees it first)."""
        if result.succeeded and result.attempted:
            fields.setdefault("quarantined", result.quarantined)
            fields.setdefault("drift", {"detected": False, "at": None, "resources": []})
        if result.outcome is not Outcome.SOURCE_ERROR and result.revision is not None:
            fields.setdefault("desired_revision", result.revision)
        reported = components(self.node.targets)  # fleet-wide targets' health (engine/fleetwide.py)
        if reported:
            fields["components"] = {**reported, **(fields.get("components") or {})}
        document = update_status(self.node.store, self.node.settings.node.name, last_attempt=result.attempt(), **fields)
        if self.sink is not None:
            self.sink.publish(document)
        return document


def _quarantine(
    files: Sequence[SourceFile], problems: Sequence[SpecProblem], good: Mapping[str, SourceFile]
) -> tuple[DesiredState, list[str]] | None:
    """The revision with each invalid file replaced by its last good version (or left out when it
    is new). Fixing one file can expose a conflict in another, so this narrows down a few times."""
    bad = {p.file for p in problems}
    for _ in range(QUARANTINE_ROUNDS):
        kept = [f for f in files if f.display not in bad]
        restored = [good[name] for name in sorted(bad) if name in good]
        loaded = load_specs(kept + restored)
        if loaded.state is not None and not loaded.problems:
            return loaded.state, sorted(bad)
        bad |= {p.file for p in loaded.problems}
    return None
