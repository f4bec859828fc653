"""What an outcome means for the next reconcile: the worker's memory of bad revisions, its
backoff, Nginx reload pacing, the files quarantine falls back to, and the logs and metrics."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from hecate_agent.engine.outcomes import SUCCEEDED, Outcome
from hecate_agent.engine.ports import Clock, StateStorePort
from hecate_agent.engine.prepare import Prepared
from hecate_agent.engine.reconcile import Result
from hecate_agent.logs import get_logger
from hecate_agent.metrics import Metrics
from hecate_agent.runtime.sources import Source
from hecate_agent.runtime.worker import Worker, WorkerState
from hecate_agent.sources.git import GitError, GitSource
from hecate_agent.spec.loader import SourceFile


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK: Clock = _SystemClock()
ROUTINE = frozenset({"poll", "webhook", "file-change", "paced"})
BACKING_OFF = frozenset(
    {Outcome.ERROR, Outcome.SECRET_ERROR, Outcome.ROLLED_BACK, Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLOUT_ERROR}
)


class Policy:
    def __init__(self, worker: Worker, metrics: Metrics, clock: Clock = SYSTEM_CLOCK) -> None:
        self.worker = worker
        self.metrics = metrics
        self.clock = clock
        self.log = get_logger("hecate-agent.daemon")

    @property
    def state(self) -> WorkerState:
        return self.worker.state

    def quiet(
        self, revision: str, trigger: str, suspension: dict[str, Any] | None, applied: str | None
    ) -> Result | None:
        """A reconcile that ends before the engine: suspended, known bad, or unchanged."""
        if suspension:
            self.log.info("suspended; not applying", revision=revision, reason=suspension.get("reason"))
            return Result(Outcome.SUSPENDED, revision)
        if revision == self.state.blocked_revision:
            return Result(Outcome.BLOCKED, revision, attempted=False)
        if revision == self.state.invalid_revision:
            return Result(Outcome.INVALID, revision, attempted=False)
        if set(trigger.split(",")) <= ROUTINE and revision == applied:
            # An unchanged revision costs a fetch, not a plan; drift checks watch the live side.
            return Result(Outcome.NOOP, revision, attempted=False)
        return None

    def after(self, result: Result, files: list[SourceFile], source: Source, trigger: str = "") -> None:
        """What an outcome means for the next reconcile: memo, backoff, pacing, metrics, logs."""
        outcome, revision = result.outcome, result.revision
        if result.recovered:
            self.log.warning("recovered an interrupted apply", detail=result.recovered)
        if outcome is Outcome.INVALID:
            self.state.invalid_revision = revision
            self.log.error(
                "invalid revision; not applied", revision=revision, problems=len(result.problems), first=result.error
            )
        elif result.blocks:
            self.state.blocked_revision = revision
            self.log.error("revision blocked until a new one arrives", revision=revision, error=result.error)
        elif outcome is Outcome.PACED:
            self.log.info("pacing nginx reloads", revision=revision, retry_in=round(result.retry_in, 2))
            # A health mark keeps its trigger: a plain "paced" retry of the same revision would be a no-op.
            again = "paced,stream-health" if "stream-health" in trigger.split(",") else "paced"
            self.worker.retry_soon(result.retry_in, again)
        elif outcome is Outcome.QUARANTINED:
            self.log.warning(
                "quarantined invalid files; applied the rest",
                revision=revision,
                quarantined=result.quarantined,
                first=result.error,
            )
        if outcome is Outcome.SECRET_ERROR:
            self.metrics.secret_errors.inc()
        if outcome in BACKING_OFF:
            self.log.error("reconcile did not apply", revision=revision, outcome=str(outcome), error=result.error)
            self.worker.backoff()
            return
        applied = result.applied
        if applied is not None and result.prepared is not None:
            self.log.info(
                "apply",
                revision=revision,
                outcome=str(applied.outcome),
                plan=applied.plan.summary(),
                seconds=round(applied.seconds, 3),
            )
            if _nginx_changed(result.prepared) and applied.outcome is Outcome.APPLIED:
                self.state.last_nginx_reload = self.clock.monotonic()
        if outcome in SUCCEEDED or outcome is Outcome.QUARANTINED:
            self.worker.succeeded()
            if revision is not None:
                source.accept(revision)
                self.metrics.applied.info({"revision": revision})
            self.metrics.last_success.set(self.clock.time())
            self.metrics.drift.set(0)
            if outcome in SUCCEEDED:
                self.state.good_files = {f.display: f for f in files}

    def pacing(self, prepared: Prepared, min_interval: float) -> float:
        """Seconds to wait before this apply may reload Nginx again (0: go ahead)."""
        if not _nginx_changed(prepared):
            return 0.0
        due = self.state.last_nginx_reload + min_interval
        return max(0.0, due - self.clock.monotonic())

    def good_files(self, source: Source, store: StateStorePort) -> dict[str, SourceFile]:
        """The files of the last revision applied whole (what quarantine falls back to)."""
        if self.state.good_files:
            return self.state.good_files
        last = store.last_applied()
        if last is not None and isinstance(source, GitSource):
            with contextlib.suppress(GitError):
                files, _ = source.snapshot(last.revision)  # after a restart: read it back from Git
                self.state.good_files = {f.display: f for f in files}
        return self.state.good_files


def _nginx_changed(prepared: Prepared) -> bool:
    return bool(prepared.needed.get("nginx"))
