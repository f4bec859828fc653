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
import signal
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hecate_agent.engine.fleetwide import use_publisher
from hecate_agent.engine.outcomes import READY_OUTCOMES, Outcome
from hecate_agent.engine.reconcile import Engine, Result
from hecate_agent.engine.transaction import Node, recover
from hecate_agent.errors import HecateError
from hecate_agent.logs import get_logger
from hecate_agent.metrics import Metrics
from hecate_agent.runtime import triggers
from hecate_agent.runtime.fleet import ConsulSink, RolloutGate, make_coordinator, make_publisher
from hecate_agent.runtime.http import Surface
from hecate_agent.runtime.policy import Policy
from hecate_agent.runtime.sdnotify import Notifier
from hecate_agent.runtime.sources import DirectorySource, Source, make_source, source_label
from hecate_agent.runtime.upkeep import Upkeep
from hecate_agent.runtime.worker import Worker, WorkerState
from hecate_agent.settings import AgentSettings, load_settings
from hecate_agent.sources.git import ForcePushRefusedError, GitError, UnsignedCommitError
from hecate_agent.spec.loader import ParseCache
from hecate_agent.store.status import read_status

__all__ = ["Daemon", "DirectorySource", "Source", "WorkerState", "make_source", "run"]

ROUTINE = frozenset({"poll", "webhook", "file-change", "paced"})
BACKING_OFF = frozenset(
    {Outcome.ERROR, Outcome.SECRET_ERROR, Outcome.ROLLED_BACK, Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLOUT_ERROR}
)


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
        self.stopping = threading.Event()
        self.worker = Worker(self.notifier, self.stopping)
        self.upkeep = Upkeep(self.metrics, self.publish_status)
        self.policy = Policy(self.worker, self.metrics)
        self.scheduler: Any = None
        self.http: ThreadingHTTPServer | None = None
        self.watcher: threading.Thread | None = None
        self.surface = Surface(
            healthy=self._healthy,
            ready=lambda: self.worker.state.ready,
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
        self.node.plan_from_memory = True  # plan applies against what was applied; If-Match guards it
        self.node.explain_plans = False  # its plans are summarized, never shown field by field
        self.source: Source = make_source(settings)
        self.consul = make_publisher(settings)
        use_publisher(self.node.targets, self.consul)  # fleet-wide targets lead under the daemon's session
        # A halted node does not queue on every sync; it waits on the halt key, and this wakes it.
        coordinator = make_coordinator(
            settings, self.consul, self.stopping, on_resume=lambda: self.trigger("halt-lifted")
        )
        self.gate = (
            RolloutGate(coordinator, stopping=self.stopping, retry=self.worker.retry_soon)
            if coordinator is not None
            else None
        )
        sink = ConsulSink(self.consul, self.metrics.consul_failures) if self.consul is not None else None
        self.engine = Engine(self.node, cache=ParseCache(), sink=sink)

    def publish_status(self, status: dict[str, Any] | None = None) -> None:
        """Send the status to Consul (the newest only; retried by the heartbeat)."""
        if self.consul is None:
            return
        status = status if status is not None else read_status(self.node.store)
        if status is not None and not self.consul.publish(status):
            self.metrics.consul_failures.inc()

    @property
    def state(self) -> WorkerState:
        return self.worker.state

    def trigger(self, reason: str) -> None:
        self.worker.trigger(reason)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.log.info("starting", node=self.settings.node.name, source=source_label(self.settings))
        recovered = self.worker.guard(lambda: recover(self.node))
        if recovered:
            self.log.warning("recovered an interrupted apply", detail=recovered)
        last = self.node.store.last_applied()
        if last is not None:
            self.state.ready = True  # the last-known-good is serving while we fetch
            self.source.accept(last.revision)  # the force-push check compares with what runs
        self._start_http()
        self.scheduler = self._start_scheduler()
        self.watcher = triggers.start_watcher(self.settings, self.trigger, self.stopping)
        self.worker.start(reload_settings=self.reload_settings, check_drift=self.check_drift, reconcile=self.reconcile)
        self.trigger("start")

    def stop(self) -> None:
        self.log.info("stopping")
        self.notifier.stopping()
        self.stopping.set()
        self.worker.stop()
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
            self.settings,
            self.trigger,
            probe_streams=lambda: self.upkeep.probe_streams(self.node, self.settings, self.trigger),
            heartbeat=lambda: self.upkeep.heartbeat(self.node, self.settings, self.consul),
        )

    def _start_http(self) -> None:
        self.http = self.surface.serve(self.settings.http.listen)
        self.log.info("http endpoint", listen=self.settings.http.listen)

    def check_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
        return self.surface.check_webhook(headers, body)

    def _healthy(self) -> bool:
        return self.worker.alive() and time.monotonic() - self.state.last_tick < 30

    # --- reconcile ---------------------------------------------------------------------------

    def reconcile(self, trigger: str) -> str:
        """One reconcile; returns its outcome. Whatever happens, the status says what and why."""
        started = time.monotonic()
        try:
            result = self._reconcile(trigger)
        except Exception as exc:  # the daemon must survive anything; the status still tells
            self.log.error("reconcile failed", error=str(exc), error_type=type(exc).__name__, trigger=trigger)
            self.worker.backoff()
            result = Result(Outcome.ERROR, self._desired(), f"{type(exc).__name__}: {exc}")
            self.worker.guard(lambda: self.engine.publish(result))  # the state dir, then Consul
        self.metrics.reconciles.labels(trigger=trigger.split(",", 1)[0], outcome=str(result.outcome)).inc()
        self.metrics.reconcile_seconds.observe(time.monotonic() - started)
        self.state.reconciles += 1
        if not self.state.ready and result.outcome in READY_OUTCOMES:
            self.state.ready = True
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

    def _reconcile(self, trigger: str) -> Result:
        """Fetch, then the engine; every path writes the status once (state dir, then Consul)."""
        suspension = self.node.store.suspension()
        self.metrics.suspended.set(1 if suspension else 0)
        try:
            fetch_started = time.monotonic()
            revision = self.source.fetch()
            self.metrics.fetch_seconds.observe(time.monotonic() - fetch_started)
        except (ForcePushRefusedError, UnsignedCommitError) as exc:
            self.log.error("revision refused", error=str(exc))
            result = Result(Outcome.REFUSED, None, str(exc))
            self.engine.publish(result)
            return result
        except (GitError, HecateError, OSError) as exc:
            self.metrics.fetch_errors.inc()
            self.log.warning("source unreachable; the last-known-good keeps serving", error=str(exc))
            self.worker.backoff()
            result = Result(Outcome.SOURCE_ERROR, None, str(exc))
            self.engine.publish(result, source_error=str(exc))
            return result
        status = {"clear_source_error": True, "desired_revision": revision}
        quiet = self.policy.quiet(revision, trigger, suspension, self.engine.applied_revision)
        if quiet is not None:
            self.engine.publish(quiet, **status)
            return quiet
        files, problems = self.source.snapshot(revision)
        quarantine = self.settings.sync.invalid_policy == "quarantine"
        result, document = self.engine.reconcile(
            revision,
            files,
            problems,
            source=trigger,
            good=self.policy.good_files(self.source, self.node.store) if quarantine else None,
            admission=self.gate,
            pacing=lambda prepared: self.policy.pacing(prepared, self.settings.nginx.min_reload_interval.seconds),
            lock_wait=60,
            status=status,
        )
        self.policy.after(result, files, self.source, trigger)
        self.metrics.set_dns((document.get("components") or {}).get("dns"))
        return result

    def check_drift(self) -> list[str]:
        return self.upkeep.check_drift(self.node, self.settings)


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
