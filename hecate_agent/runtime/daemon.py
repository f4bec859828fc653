"""`hecate-agent run`: follow the source and hand each revision to the engine.

Shape (Flux's split of source and reconcile, in one process):

    triggers ──► one worker thread ──► fetch ──► engine.reconcile ──► status (once) ──► Consul
    (poll job, webhook, file events, drift job, SIGHUP)

Every trigger only *asks* for a reconcile; the worker coalesces what piled up
while it was busy into one run, so there are never two reconciles at once and
a burst of commits costs one apply. The worker also feeds systemd's watchdog:
if it wedges, the pings stop and systemd restarts the agent.

Failures back off exponentially (capped). An invalid revision is never
applied and never retried until a new revision arrives; a revision whose
verification probes fail is rolled back and blocked the same way. While
suspended, nothing is applied (drift is still reported). Whatever happens, the
reconcile ends in a status that says what and why.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hecate_agent.engine.outcomes import READY_OUTCOMES, SUCCEEDED, Outcome
from hecate_agent.engine.reconcile import Engine, Result
from hecate_agent.engine.transaction import Node, Prepared, recover
from hecate_agent.errors import HecateError
from hecate_agent.logs import get_logger
from hecate_agent.metrics import Metrics
from hecate_agent.runtime import drift, triggers
from hecate_agent.runtime.fleet import RolloutGate, make_coordinator, make_publisher
from hecate_agent.runtime.http import Surface
from hecate_agent.runtime.probes import StreamProbes
from hecate_agent.runtime.sdnotify import Notifier
from hecate_agent.runtime.sources import DirectorySource, Source, make_source, source_label
from hecate_agent.secrets import SecretError
from hecate_agent.settings import AgentSettings, load_settings
from hecate_agent.sources.git import ForcePushRefusedError, GitError, GitSource, UnsignedCommitError
from hecate_agent.spec.loader import ParseCache, SourceFile
from hecate_agent.store.status import read_status, update_status

__all__ = ["Daemon", "DirectorySource", "Source", "make_source", "run"]

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
ROUTINE = frozenset({"poll", "webhook", "file-change", "paced"})
BACKING_OFF = frozenset(
    {Outcome.ERROR, Outcome.SECRET_ERROR, Outcome.ROLLED_BACK, Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLOUT_ERROR}
)


@dataclass
class WorkerState:
    pending: set[str] = field(default_factory=set)
    failures: int = 0
    retry_at: float = 0.0
    invalid_revision: str | None = None
    blocked_revision: str | None = None
    reconciles: int = 0
    ready: bool = False
    last_tick: float = field(default_factory=time.monotonic)
    last_nginx_reload: float = -1e9
    good_files: dict[str, SourceFile] = field(default_factory=dict)  # of the last revision applied whole


class Daemon:
    def __init__(
        self,
        config_path: Path | None,
        *,
        environ: dict[str, str] | None = None,
        notifier: Notifier | None = None,
        node_factory: Callable[[AgentSettings], Node] | None = None,
    ) -> None:
        self.config_path = config_path
        self.environ = environ
        self.notifier = notifier or Notifier()
        self.node_factory = node_factory or (lambda s: Node.from_settings(s, environment=self.environ))
        self.log = get_logger("hecate-agent.daemon")
        self.metrics = Metrics()
        self.state = WorkerState()
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.probes = StreamProbes(self.metrics)
        self.scheduler: Any = None
        self.http: ThreadingHTTPServer | None = None
        self.worker: threading.Thread | None = None
        self.watcher: threading.Thread | None = None
        self.surface = Surface(
            healthy=self._healthy,
            ready=lambda: self.state.ready,
            status=lambda: read_status(self.node.store) or {"phase": "Progressing"},
            metrics=self.metrics.render,
            webhook_secret_file=lambda: self.settings.http.webhook_secret_file,
            on_webhook=lambda: self.trigger("webhook"),
        )
        self._configure(load_settings(config_path, environ))
        self.node.store.ensure()  # 0700 before anything (the Git mirror) creates it more loosely

    def _configure(self, settings: AgentSettings) -> None:
        """Build everything that follows from the settings (at start and on SIGHUP)."""
        self.settings = settings
        self.node = self.node_factory(settings)
        self.source: Source = make_source(settings)
        self.consul = make_publisher(settings)
        coordinator = make_coordinator(settings, self.consul, self.stopping)
        self.gate = (
            RolloutGate(coordinator, stopping=self.stopping, retry=self._retry_soon, published=self.publish_status)
            if coordinator is not None
            else None
        )
        self.engine = Engine(self.node, cache=ParseCache())

    def publish_status(self, status: dict[str, Any] | None = None) -> None:
        """Send the status to Consul (the newest only; retried by the heartbeat)."""
        if self.consul is None:
            return
        status = status if status is not None else read_status(self.node.store)
        if status is not None and not self.consul.publish(status):
            self.metrics.consul_failures.inc()

    def trigger(self, reason: str) -> None:
        with self.lock:
            self.state.pending.add(reason)
        self.wakeup.set()

    def _retry_soon(self, seconds: float = 1.0) -> None:
        timer = threading.Timer(seconds, self.trigger, args=("paced",))
        timer.daemon = True
        timer.start()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.log.info("starting", node=self.settings.node.name, source=source_label(self.settings))
        recovered = self._guard(lambda: recover(self.node))
        if recovered:
            self.log.warning("recovered an interrupted apply", detail=recovered)
        last = self.node.store.last_applied()
        if last is not None:
            self.state.ready = True  # the last-known-good is serving while we fetch
            self.source.accept(last.revision)  # the force-push check compares with what runs
        self._start_http()
        self.scheduler = self._start_scheduler()
        self.watcher = triggers.start_watcher(self.settings, self.trigger, self.stopping)
        self.worker = threading.Thread(target=self._work, name="reconcile-worker", daemon=True)
        self.worker.start()
        self.trigger("start")

    def stop(self) -> None:
        self.log.info("stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.wakeup.set()
        if self.worker is not None:
            self.worker.join(timeout=300)  # an apply in flight finishes or rolls back first
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if self.consul is not None:
            self.consul.close()  # the entry goes now, not after the session TTL
        self.node.close()

    def reload_settings(self) -> None:
        settings = load_settings(self.config_path, self.environ)
        self.node.close()
        if self.consul is not None:
            self.consul.close()
        self._configure(settings)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        self.scheduler = self._start_scheduler()
        self.log.info("settings reloaded")

    def run_forever(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.trigger("reload-settings"))
        self.start()
        while not self.stopping.wait(1.0):
            pass
        self.stop()
        return 0

    def _start_scheduler(self) -> Any:
        return triggers.start_scheduler(
            self.settings, self.trigger, probe_streams=self._probe_streams, heartbeat=self._heartbeat
        )

    def _start_http(self) -> None:
        self.http = self.surface.serve(self.settings.http.listen)
        self.log.info("http endpoint", listen=self.settings.http.listen)

    def check_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
        return self.surface.check_webhook(headers, body)

    def _healthy(self) -> bool:
        alive = self.worker is not None and self.worker.is_alive()
        return alive and time.monotonic() - self.state.last_tick < 30

    # --- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        tick = min(1.0, (self.notifier.watchdog_seconds or 2.0) / 2)
        while not self.stopping.is_set():
            self.wakeup.wait(tick)
            self.wakeup.clear()
            self.state.last_tick = time.monotonic()
            self.notifier.watchdog()
            with self.lock:
                reasons = set(self.state.pending)
                self.state.pending.clear()
            if not reasons or self.stopping.is_set():
                continue
            if "reload-settings" in reasons:
                self._guard(self.reload_settings)
                reasons.discard("reload-settings")
                reasons.add("settings")
            if time.monotonic() < self.state.retry_at and not reasons & {"webhook", "settings", "file-change"}:
                with self.lock:  # backing off: keep the request for later
                    self.state.pending |= reasons
                continue
            if reasons == {"drift-check"}:
                self._guard(self.check_drift)
            else:
                self._guard(functools.partial(self.reconcile, ",".join(sorted(reasons))))

    def _guard(self, action: Callable[[], Any]) -> Any:
        """Nothing a job meets may stop the worker: log, count, back off, carry on."""
        try:
            return action()
        except Exception as exc:  # the daemon must survive anything
            self.log.error("unexpected error", error=str(exc), error_type=type(exc).__name__)
            self._backoff()
            return None

    def _backoff(self) -> None:
        self.state.failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE**self.state.failures) * random.uniform(0.8, 1.2)
        self.state.retry_at = time.monotonic() + delay

    # --- reconcile ---------------------------------------------------------------------------

    def reconcile(self, trigger: str) -> str:
        """One reconcile; returns its outcome. Whatever happens, the status says what and why."""
        started = time.monotonic()
        try:
            result, document = self._reconcile(trigger)
        except Exception as exc:  # the daemon must survive anything; the status still tells
            self.log.error("reconcile failed", error=str(exc), error_type=type(exc).__name__, trigger=trigger)
            self._backoff()
            result = Result(Outcome.ERROR, self._desired(), f"{type(exc).__name__}: {exc}")
            document = self._guard(lambda: self.engine.publish(result))
        self.metrics.reconciles.labels(trigger=trigger.split(",", 1)[0], outcome=str(result.outcome)).inc()
        self.metrics.reconcile_seconds.observe(time.monotonic() - started)
        self.state.reconciles += 1
        if not self.state.ready and result.outcome in READY_OUTCOMES:
            self.state.ready = True
        self.publish_status(document)
        summary = f"{result.outcome}: {self.engine.applied_revision or 'nothing applied yet'}"
        if self.state.reconciles == 1:
            # systemd's READY means "started", whatever the first attempt found (an unreachable
            # remote must not get the agent killed at TimeoutStartSec); /readyz tells traffic apart.
            self.notifier.ready(summary)
        else:
            self.notifier.status(summary)
        return str(result.outcome)

    def _desired(self) -> str | None:
        return ((read_status(self.node.store) or {}).get("desiredRevision")) or None

    def _reconcile(self, trigger: str) -> tuple[Result, dict[str, Any]]:
        suspension = self.node.store.suspension()
        self.metrics.suspended.set(1 if suspension else 0)
        try:
            fetch_started = time.monotonic()
            revision = self.source.fetch()
            self.metrics.fetch_seconds.observe(time.monotonic() - fetch_started)
        except (ForcePushRefusedError, UnsignedCommitError) as exc:
            self.log.error("revision refused", error=str(exc))
            result = Result(Outcome.REFUSED, None, str(exc))
            return result, self.engine.publish(result)
        except (GitError, HecateError, OSError) as exc:
            self.metrics.fetch_errors.inc()
            self.log.warning("source unreachable; the last-known-good keeps serving", error=str(exc))
            self._backoff()
            result = Result(Outcome.SOURCE_ERROR, None, str(exc))
            return result, self.engine.publish(result, source_error=str(exc))
        status = {"clear_source_error": True, "desired_revision": revision}
        quiet = self._quiet(revision, trigger, suspension)
        if quiet is not None:
            return quiet, self.engine.publish(quiet, **status)
        files, problems = self.source.snapshot(revision)
        quarantine = self.settings.sync.invalid_policy == "quarantine"
        result, document = self.engine.reconcile(
            revision,
            files,
            problems,
            source=trigger,
            good=self._good_files() if quarantine else None,
            admission=self.gate,
            pacing=self._reload_pacing,
            lock_wait=60,
            status=status,
        )
        self._after(result, files)
        return result, document

    def _quiet(self, revision: str, trigger: str, suspension: dict[str, Any] | None) -> Result | None:
        """A reconcile that ends before the engine: suspended, known bad, or unchanged."""
        if suspension:
            self.log.info("suspended; not applying", revision=revision, reason=suspension.get("reason"))
            return Result(Outcome.SUSPENDED, revision)
        if revision == self.state.blocked_revision:
            return Result(Outcome.BLOCKED, revision, attempted=False)
        if revision == self.state.invalid_revision:
            return Result(Outcome.INVALID, revision, attempted=False)
        if set(trigger.split(",")) <= ROUTINE and revision == self.engine.applied_revision:
            # An unchanged revision costs a fetch, not a plan; drift checks watch the live side.
            return Result(Outcome.NOOP, revision, attempted=False)
        return None

    def _after(self, result: Result, files: list[SourceFile]) -> None:
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
            self._retry_soon(result.retry_in)
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
            self._backoff()
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
                self.state.last_nginx_reload = time.monotonic()
        if outcome in SUCCEEDED or outcome is Outcome.QUARANTINED:
            self.state.failures, self.state.retry_at = 0, 0.0
            if revision is not None:
                self.source.accept(revision)
                self.metrics.applied.info({"revision": revision})
            self.metrics.last_success.set(time.time())
            self.metrics.drift.set(0)
            if outcome in SUCCEEDED:
                self.state.good_files = {f.display: f for f in files}

    def _reload_pacing(self, prepared: Prepared) -> float:
        """Seconds to wait before this apply may reload Nginx again (0: go ahead)."""
        if not _nginx_changed(prepared):
            return 0.0
        due = self.state.last_nginx_reload + self.settings.nginx.min_reload_interval.seconds
        return max(0.0, due - time.monotonic())

    def _good_files(self) -> dict[str, SourceFile]:
        if self.state.good_files:
            return self.state.good_files
        last = self.node.store.last_applied()
        if last is not None and isinstance(self.source, GitSource):
            with contextlib.suppress(GitError):
                files, _ = self.source.snapshot(last.revision)  # after a restart: read it back from Git
                self.state.good_files = {f.display: f for f in files}
        return self.state.good_files

    # --- drift, stream probes, heartbeat -------------------------------------------------------

    def check_drift(self) -> list[str]:
        last = self.node.store.last_applied()
        if last is None:
            return []
        drifted = drift.detect(self.node, last)
        self.metrics.drift.set(len(drifted))
        if drifted:
            self.log.warning(
                "drift: live config differs from the applied revision",
                resources=drifted,
                self_heal=self.settings.sync.self_heal,
            )
            if self.settings.sync.self_heal and not self.node.store.suspension():
                drift.heal(self.node, last)
                self.log.info("drift healed", revision=last.revision)
                self.metrics.drift.set(0)
                drifted = []
        current = (read_status(self.node.store) or {}).get("drift") or {}
        if drifted or current.get("detected"):
            report = {"detected": bool(drifted), "at": _now() if drifted else None, "resources": drifted}
            self.publish_status(update_status(self.node.store, self.settings.node.name, drift=report))
        return drifted

    def _probe_streams(self) -> None:
        streams = self.probes.run(self.node.store.last_applied())
        if streams is not None:
            update_status(self.node.store, self.settings.node.name, components={"streams": streams})

    def _heartbeat(self) -> None:
        vault = self.node.resolver.vault
        if vault is not None:
            try:
                vault.ensure_token()  # renew at 2/3 of the TTL even when nothing needs reading
            except SecretError as exc:
                self.log.warning("vault token upkeep failed; retrying on the next heartbeat", error=str(exc))
        status = update_status(self.node.store, self.settings.node.name)
        if self.consul is not None and not self.consul.heartbeat(status):
            self.metrics.consul_failures.inc()


def _nginx_changed(prepared: Prepared) -> bool:
    return bool(prepared.needed.get("nginx"))


def _now() -> str:
    from hecate_agent.store.state import utc_now

    return utc_now()


def run(config_path: Path | None) -> int:
    from hecate_agent.logs import configure

    configure()
    # `kill -USR1 <pid>` writes every thread's stack to the journal: what a wedged agent is waiting on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with contextlib.suppress(ImportError):
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call]
    daemon = Daemon(config_path)
    return daemon.run_forever()
