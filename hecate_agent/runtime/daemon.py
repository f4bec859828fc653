"""`hecate-agent run`: follow the source, apply through the transaction, watch for drift, report.

Shape (Flux's split of source and reconcile, in one process):

    triggers ──► one worker thread ──► reconcile (fetch → validate → plan → apply → verify)
    (poll job, webhook, file events, drift job, SIGHUP)

Every trigger only *asks* for a reconcile; the worker coalesces what piled up
while it was busy into one run, so there are never two reconciles at once and
a burst of commits costs one apply. The worker also feeds systemd's watchdog:
if it wedges, the pings stop and systemd restarts the agent.

Failures back off exponentially (capped). An invalid revision is never
applied and never retried until a new revision arrives; a revision whose
verification probes fail is rolled back and blocked the same way. While
suspended, nothing is applied (drift is still reported).
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import hashlib
import hmac
import json
import random
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from hecate_agent.engine.transaction import (
    ApplyError,
    Node,
    RollbackError,
    apply_prepared,
    cycle_collector_paused,
    owned_part,
    prepare,
    prepare_rendered,
    read_live,
    recover,
    resources_of,
    snapshot_rendered,
)
from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.logs import get_logger
from hecate_agent.metrics import Metrics
from hecate_agent.render.bundle import fingerprint
from hecate_agent.render.caddy import RenderError, parse_listen
from hecate_agent.render.nginx import listeners_of
from hecate_agent.report import problem_line
from hecate_agent.runtime.rollout import RolloutCoordinator, RolloutError, RolloutHaltedError
from hecate_agent.runtime.sdnotify import Notifier
from hecate_agent.secrets import SecretError
from hecate_agent.settings import AgentSettings, load_settings
from hecate_agent.sources.directory import read_directory
from hecate_agent.sources.git import ForcePushRefusedError, GitError, GitSource, UnsignedCommitError
from hecate_agent.spec.loader import DesiredState, ParseCache, SourceFile, load_specs, snapshot_digest
from hecate_agent.spec.models import PRESET_PORTS
from hecate_agent.spec.types import Duration
from hecate_agent.store.consul_status import ConsulPublisher
from hecate_agent.store.state import Snapshot, utc_now
from hecate_agent.store.status import read_status, update_status

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
VERIFY_LABEL = "hecate.io/verify"
VERIFY_SECONDS = 5.0
MAX_WEBHOOK_BODY = 1 << 20


class Source(Protocol):
    def fetch(self) -> str: ...
    def snapshot(self, revision: str) -> tuple[list[SourceFile], list[SpecProblem]]: ...
    def accept(self, revision: str) -> None: ...


class DirectorySource:
    """A spec folder on this node; its revision is the content hash of what it holds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._last: tuple[str, list[SourceFile], list[SpecProblem]] | None = None

    def fetch(self) -> str:
        if not self.directory.exists():
            raise HecateError(f"source.directory {self.directory} does not exist")
        files, problems = read_directory(self.directory)
        # Files the reader refused (too big, a symlink, a FIFO) are not in `files`: they must still
        # make a new revision, or adding one would look like "nothing changed" and go unreported.
        refused = [SourceFile(f"\0refused/{p.file}", p.message.encode()) for p in problems]
        revision = f"sha256:{snapshot_digest(files + refused)}"
        self._last = (revision, files, problems)
        return revision

    def snapshot(self, revision: str) -> tuple[list[SourceFile], list[SpecProblem]]:
        if self._last is None or self._last[0] != revision:
            self.fetch()
        assert self._last is not None
        return self._last[1], self._last[2]

    def accept(self, revision: str) -> None:
        del revision


def make_source(settings: AgentSettings) -> Source:
    git_settings = settings.source.git
    if git_settings is not None:
        return GitSource(
            git_settings.url,
            git_settings.branch,
            settings.state_dir / "git-mirror",
            path=git_settings.path,
            ssh_key_file=git_settings.ssh_key_file,
            token_file=git_settings.token_file,
            allow_force_push=git_settings.allow_force_push,
            allowed_signers_file=git_settings.verify.allowed_signers_file,
        )
    if settings.source.directory is not None:
        return DirectorySource(settings.source.directory)
    raise HecateError("no source configured: set source.git or source.directory in agent.yaml")


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
    stream_health: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


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
        self.cache = ParseCache()
        self.settings = load_settings(config_path, environ)
        self.node = self.node_factory(self.settings)
        self.node.store.ensure()  # 0700 before anything (the Git mirror) creates it more loosely
        self.source = make_source(self.settings)
        self.consul = self._make_consul(self.settings)
        self.rollout = self._make_rollout()
        self.scheduler: BackgroundScheduler | None = None
        self.http: ThreadingHTTPServer | None = None
        self.worker: threading.Thread | None = None
        self.watcher: threading.Thread | None = None

    @staticmethod
    def _make_consul(settings: AgentSettings) -> ConsulPublisher | None:
        if settings.consul is None:
            return None
        return ConsulPublisher(
            settings.consul.address,
            settings.node.name,
            prefix=settings.consul.prefix,
            token_file=settings.consul.token_file,
            session_ttl=settings.consul.session_ttl.seconds,
        )

    def _make_rollout(self) -> RolloutCoordinator | None:
        rollout = self.settings.rollout
        if rollout is None or self.consul is None:
            return None
        return RolloutCoordinator(
            self.consul,
            max_concurrent=rollout.max_concurrent,
            soak=rollout.soak.seconds,
            wait_timeout=rollout.wait_timeout.seconds,
            stopping=self.stopping,
        )

    def publish_status(self) -> None:
        """Send the current status to Consul (the newest only; retried by the heartbeat)."""
        if self.consul is None:
            return
        status = read_status(self.node.store)
        if status is not None and not self.consul.publish(status):
            self.metrics.consul_failures.inc()

    # --- triggers --------------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        with self.lock:
            self.state.pending.add(reason)
        self.wakeup.set()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.log.info("starting", node=self.settings.node.name, source=self._source_label())
        recovered = self._guard(lambda: recover(self.node))
        if recovered:
            self.log.warning("recovered an interrupted apply", detail=recovered)
        last = self.node.store.last_applied()
        if last is not None:
            self.state.ready = True  # the last-known-good is serving while we fetch
            # The force-push check must compare with what runs, also after a restart.
            self.source.accept(last.revision)
        self._start_http()
        self._start_scheduler()
        self._start_watcher()
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
        node = self.node_factory(settings)
        self.node.close()
        self.settings, self.node, self.source = settings, node, make_source(settings)
        if self.consul is not None:
            self.consul.close()
        self.consul = self._make_consul(settings)
        self.rollout = self._make_rollout()
        self.cache = ParseCache()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        self._start_scheduler()
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

    def _source_label(self) -> str:
        git_settings = self.settings.source.git
        if git_settings is not None:
            return f"git {git_settings.branch}"
        return f"directory {self.settings.source.directory}"

    def _start_scheduler(self) -> None:
        scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
        )
        git_settings = self.settings.source.git
        if git_settings is not None:
            interval = max(1.0, git_settings.interval.seconds)
            scheduler.add_job(
                lambda: self.trigger("poll"), "interval", seconds=interval, jitter=max(0.0, interval / 10), id="poll"
            )
        elif self.settings.source.directory is not None:
            # File events are the trigger; a slow poll catches what inotify might miss.
            scheduler.add_job(lambda: self.trigger("poll"), "interval", seconds=60, id="poll")
        scheduler.add_job(
            lambda: self.trigger("drift-check"),
            "interval",
            seconds=max(1.0, self.settings.sync.drift_interval.seconds),
            id="drift",
        )
        scheduler.add_job(self._probe_streams, "interval", seconds=5, id="stream-probes")
        if self.settings.vault is not None:
            # A non-routine trigger renders again, so a secret rotated in Vault reaches the proxies
            # without a commit (an unchanged result is a no-op: same fingerprint).
            scheduler.add_job(
                lambda: self.trigger("secret-refresh"),
                "interval",
                seconds=max(1.0, self.settings.vault.refresh_interval.seconds),
                id="secret-refresh",
            )
        heartbeat = self.settings.consul.session_ttl.seconds / 3 if self.settings.consul else 30.0
        scheduler.add_job(self._heartbeat, "interval", seconds=max(1.0, heartbeat), id="heartbeat")
        scheduler.start()
        self.scheduler = scheduler

    def _start_watcher(self) -> None:
        directory = self.settings.source.directory
        if directory is None or self.settings.source.git is not None:
            return

        def watch() -> None:
            from watchfiles import watch as watch_files

            # Watching a symlink follows it once; watch its parent so a swap (as git-sync does) is seen.
            target = directory.parent if directory.is_symlink() else directory
            for _changes in watch_files(
                target, stop_event=self.stopping, debounce=400, step=50, rust_timeout=1000, raise_interrupt=False
            ):
                self.trigger("file-change")

        self.watcher = threading.Thread(target=watch, name="directory-watcher", daemon=True)
        self.watcher.start()

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
        """Nothing a reconcile meets may stop the worker: log, count, back off, carry on."""
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
        started = time.monotonic()
        try:
            outcome = self._reconcile(trigger)
        except Exception as exc:  # the daemon must survive anything; READY and metrics still follow
            self.log.error("reconcile failed", error=str(exc), error_type=type(exc).__name__, trigger=trigger)
            self._backoff()
            outcome = "error"
        self.metrics.reconciles.labels(trigger=trigger.split(",", 1)[0], outcome=outcome).inc()
        self.metrics.reconcile_seconds.observe(time.monotonic() - started)
        self.state.reconciles += 1
        if not self.state.ready and outcome in ("applied", "noop", "invalid", "blocked", "suspended", "quarantined"):
            self.state.ready = True
        self.publish_status()
        summary = f"{outcome}: {self._applied_revision() or 'nothing applied yet'}"
        if self.state.reconciles == 1:
            # systemd's READY means "started", whatever the first attempt found (an unreachable
            # remote must not get the agent killed at TimeoutStartSec); /readyz tells traffic apart.
            self.notifier.ready(summary)
        else:
            self.notifier.status(summary)
        return outcome

    def _applied_revision(self) -> str | None:
        last = self.node.store.last_applied()
        return last.revision if last else None

    def _reconcile(self, trigger: str) -> str:
        store, name = self.node.store, self.settings.node.name
        suspension = store.suspension()
        self.metrics.suspended.set(1 if suspension else 0)
        try:
            fetch_started = time.monotonic()
            revision = self.source.fetch()
            self.metrics.fetch_seconds.observe(time.monotonic() - fetch_started)
        except (ForcePushRefusedError, UnsignedCommitError) as exc:
            self.log.error("revision refused", error=str(exc))
            update_status(store, name, last_attempt={"revision": None, "outcome": "refused", "error": str(exc)})
            return "refused"
        except (GitError, HecateError, OSError) as exc:
            self.metrics.fetch_errors.inc()
            self.log.warning("source unreachable; the last-known-good keeps serving", error=str(exc))
            update_status(store, name, source_error=str(exc))
            self._backoff()
            return "source_error"
        update_status(store, name, clear_source_error=True, desired_revision=revision)
        if suspension:
            self.log.info("suspended; not applying", revision=revision, reason=suspension.get("reason"))
            return "suspended"
        if revision in (self.state.invalid_revision, self.state.blocked_revision):
            return "blocked" if revision == self.state.blocked_revision else "invalid"
        routine = set(trigger.split(",")) <= {"poll", "webhook", "file-change", "paced"}
        if routine and revision == self._applied_revision():
            return "noop"  # an unchanged revision costs a fetch, not a plan; drift checks watch the live side

        files, problems = self.source.snapshot(revision)
        with cycle_collector_paused():  # 10,000 cached documents make every collection a full scan
            result = load_specs(files, cache=self.cache)
        self.cache.retain(files)
        problems = sorted(problems + result.problems)
        if not problems and result.state is not None:
            outcome = self._apply(result.state, revision, trigger)
            if outcome in ("applied", "noop"):
                self.state.good_files = {f.display: f for f in files}
                update_status(store, name, quarantined=[])
            return outcome
        shown = "; ".join(problem_line(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        if self.settings.sync.invalid_policy == "quarantine":
            composed = self._quarantine(files, problems)
            if composed is not None:
                state, quarantined = composed
                self.log.warning(
                    "quarantined invalid files; applying the rest",
                    revision=revision,
                    quarantined=quarantined,
                    first=shown,
                )
                outcome = self._apply(state, revision, trigger)
                if outcome in ("applied", "noop"):
                    details = [problem_line(p) for p in problems if p.file in quarantined][:20]
                    update_status(
                        store,
                        name,
                        quarantined=details,
                        last_attempt={"revision": revision, "outcome": "quarantined", "error": shown + more},
                    )
                    return "quarantined"
                return outcome
        self.state.invalid_revision = revision
        self.log.error("invalid revision; not applied", revision=revision, problems=len(problems), first=shown)
        update_status(store, name, last_attempt={"revision": revision, "outcome": "invalid", "error": shown + more})
        return "invalid"

    def _quarantine(
        self, files: list[SourceFile], problems: list[SpecProblem]
    ) -> tuple[DesiredState, list[str]] | None:
        """The revision with each invalid file replaced by its last good version (or left out when it
        is new). Fixing one file can expose a conflict in another, so this narrows down a few times."""
        good = self._good_files()
        bad = {p.file for p in problems}
        for _ in range(3):
            kept = [f for f in files if f.display not in bad]
            restored = [good[name] for name in sorted(bad) if name in good]
            result = load_specs(kept + restored)
            if result.state is not None and not result.problems:
                return result.state, sorted(bad)
            bad |= {p.file for p in result.problems}
        return None

    def _good_files(self) -> dict[str, SourceFile]:
        if self.state.good_files:
            return self.state.good_files
        last = self.node.store.last_applied()
        if last is not None and isinstance(self.source, GitSource):
            with contextlib.suppress(GitError):
                files, _ = self.source.snapshot(last.revision)  # after a restart: read it back from Git
                self.state.good_files = {f.display: f for f in files}
        return self.state.good_files

    def _apply(self, state: DesiredState, revision: str, trigger: str) -> str:
        """Apply, within a rollout slot when the fleet coordinates a revision this node does not run yet."""
        rollout = self.rollout
        if rollout is None or revision == self._applied_revision():
            return self._apply_now(state, revision, trigger)
        store, name = self.node.store, self.settings.node.name
        try:
            if not rollout.acquire(revision):
                if not self.stopping.is_set():
                    self.log.info("no rollout slot yet; trying again", revision=revision)
                    update_status(
                        store,
                        name,
                        last_attempt={
                            "revision": revision,
                            "outcome": "waiting",
                            "error": "waiting for a rollout slot",
                        },
                    )
                    threading.Timer(1.0, self.trigger, args=("paced",)).start()
                return "waiting"
        except RolloutHaltedError as exc:
            self.log.warning("revision halted by the fleet; not applied", revision=revision, detail=str(exc))
            update_status(
                store,
                name,
                last_attempt={
                    "revision": revision,
                    "outcome": "halted",
                    "error": str(exc),
                    "haltedBy": exc.halt.get("node"),
                },
            )
            return "halted"
        except RolloutError as exc:
            self.log.warning("rollout coordination unavailable; not applying yet", revision=revision, error=str(exc))
            update_status(
                store, name, last_attempt={"revision": revision, "outcome": "rollout_error", "error": str(exc)}
            )
            self._backoff()
            return "rollout_error"
        self.log.info("rollout slot taken", revision=revision)
        try:
            outcome = self._apply_now(state, revision, trigger)
            if outcome in ("blocked", "rolled_back", "failed"):
                error = ((read_status(store) or {}).get("lastAttempt") or {}).get("error") or outcome
                rollout.halt(revision, f"{outcome}: {error}")
                self.log.error("revision failed here; halting it for the fleet", revision=revision)
            elif outcome == "applied" and rollout.soak > 0:
                self.publish_status()  # the fleet sees "applied" now, not after the soak
                rollout.soak_wait()  # a bad revision shows itself here before others take it
            return outcome
        finally:
            rollout.release(revision)
            self.log.info("rollout slot released", revision=revision)

    def _apply_now(self, state: DesiredState, revision: str, trigger: str) -> str:
        store, name = self.node.store, self.settings.node.name
        try:
            with store.lock(wait=60):
                recover(self.node)
                previous = store.last_applied()
                prepared = prepare(self.node, state, revision)
                wait = self._reload_pacing(prepared)
                if wait > 0:
                    self.log.info("pacing nginx reloads", revision=revision, retry_in=round(wait, 2))
                    threading.Timer(wait, self.trigger, args=("paced",)).start()
                    return "paced"
                result = apply_prepared(self.node, prepared, source=trigger)
                if prepared.live.nginx_files != prepared.rendered.nginx_files:
                    self.state.last_nginx_reload = time.monotonic()
                self.log.info(
                    "apply",
                    revision=revision,
                    outcome=result.outcome,
                    plan=prepared.plan.summary(),
                    seconds=round(result.seconds, 3),
                    trigger=trigger,
                )
                if result.outcome == "applied":
                    failed = self.verify(prepared.plan.changes, state)
                    if failed:
                        self._undo(previous, revision, failed)
                        return "blocked"
        except RenderError as exc:
            self.state.blocked_revision = revision
            error = "; ".join(exc.problems)
            self.log.error("revision cannot be rendered for this node; blocked", revision=revision, error=error)
            update_status(store, name, last_attempt={"revision": revision, "outcome": "blocked", "error": error})
            return "blocked"
        except SecretError as exc:
            # Like an unreachable remote: nothing was touched, the last-known-good serves, retry later.
            self.metrics.secret_errors.inc()
            error = str(exc)
            self.log.warning("secrets unavailable; the last-known-good keeps serving", revision=revision, error=error)
            update_status(store, name, last_attempt={"revision": revision, "outcome": "secret_error", "error": error})
            self._backoff()
            return "secret_error"
        except (ApplyError, RollbackError) as exc:
            self.log.error("apply failed", revision=revision, error=str(exc), rolled_back=isinstance(exc, ApplyError))
            self._backoff()
            return "rolled_back" if isinstance(exc, ApplyError) else "failed"
        self.state.failures = 0
        self.state.retry_at = 0.0
        self.source.accept(revision)
        self.metrics.applied.info({"revision": revision})
        self.metrics.last_success.set(time.time())
        self._record_drift([])
        return result.outcome

    def _reload_pacing(self, prepared: Any) -> float:
        """Seconds to wait before this apply may reload Nginx again (0: go ahead)."""
        if prepared.live.nginx_files == prepared.rendered.nginx_files:
            return 0.0
        due = self.state.last_nginx_reload + self.settings.nginx.min_reload_interval.seconds
        return max(0.0, due - time.monotonic())

    def _undo(self, previous: Snapshot | None, revision: str, failed: list[str]) -> None:
        """Verification failed: put the previous last-known-good back and block the revision."""
        self.state.blocked_revision = revision
        error = "verification failed: " + "; ".join(failed)
        self.log.error("verification failed; rolling back", revision=revision, failed=failed)
        if previous is not None:
            prepared = prepare_rendered(self.node, snapshot_rendered(previous, self.node.caddy_settings))
            apply_prepared(self.node, prepared, allow_mass_delete=True, source="verify-rollback")
        update_status(
            self.node.store,
            self.settings.node.name,
            last_attempt={"revision": revision, "outcome": "rolled_back", "error": error},
        )

    # --- verification probes -----------------------------------------------------------------

    def verify(self, changes: Any, state: DesiredState) -> list[str]:
        """Probe what changed: routes labelled `hecate.io/verify: "true"` must answer through Caddy
        (no 5xx), and every changed stream's listeners must accept connections."""
        changed = {(c.kind, c.name) for c in changes if c.action in ("create", "update")}
        failures = []
        for located in state.routes:
            if ("Route", located.name) in changed and located.doc.metadata.labels.get(VERIFY_LABEL) == "true":
                problem = self._probe_route(located.doc)
                if problem:
                    failures.append(f"Route/{located.name}: {problem}")
        for stream_doc in state.streams:
            if ("Stream", stream_doc.name) not in changed:
                continue
            for listener in listeners_of(stream_doc):
                if listener.protocol != "tcp":
                    continue
                host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.address, listener.address)
                try:
                    socket.create_connection((host, listener.port), timeout=3).close()
                except OSError as exc:
                    failures.append(f"Stream/{stream_doc.name}: {listener.describe()} does not accept ({exc})")
        return failures

    def _probe_route(self, route: Any) -> str | None:
        spec = route.spec
        path = spec.health_check.path if spec.health_check else "/"
        host = spec.domain.replace("*", "verify")
        listen = self.settings.caddy.https_listen if spec.tls.auto_https else self.settings.caddy.http_listen
        if not listen:
            return None
        address, port = parse_listen(listen[0])
        address = address or "127.0.0.1"
        if port is None:
            return None
        deadline = time.monotonic() + VERIFY_SECONDS  # a new backend may need a moment
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection((address, port), timeout=3)
                if spec.tls.auto_https:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE  # probing the route, not the certificate
                    sock = context.wrap_socket(sock, server_hostname=host)
                with sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    head = sock.recv(64).decode(errors="replace")
                status = int(head.split(" ")[1]) if head.startswith("HTTP/") else 0
                if 0 < status < 500:
                    return None
                last = f"answered {status}"
            except (OSError, ValueError, IndexError) as exc:
                last = str(exc)
            time.sleep(0.5)
        return last

    # --- drift -------------------------------------------------------------------------------

    def check_drift(self) -> list[str]:
        last = self.node.store.last_applied()
        if last is None:
            return []
        live = read_live(self.node)
        settings = self.node.caddy_settings
        if fingerprint(owned_part(live.caddy.config, settings), live.nginx_files) == fingerprint(
            owned_part(last.caddy_config, settings), last.nginx_files
        ):
            self._record_drift([])
            return []
        have, _ = resources_of(live.caddy.config, live.nginx_files, settings.server)
        want, _ = resources_of(last.caddy_config, last.nginx_files, settings.server)
        drifted = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        self._record_drift(drifted)
        self.log.warning(
            "drift: live config differs from the applied revision",
            resources=drifted,
            self_heal=self.settings.sync.self_heal,
        )
        if self.settings.sync.self_heal and not self.node.store.suspension():
            self.heal(last)
        return drifted

    def heal(self, last: Snapshot) -> None:
        with self.node.store.lock(wait=60):
            prepared = prepare_rendered(self.node, snapshot_rendered(last, self.node.caddy_settings))
            apply_prepared(self.node, prepared, allow_mass_delete=True, source="self-heal")
        self.log.info("drift healed", revision=last.revision)
        self._record_drift([])

    def _record_drift(self, resources: list[str]) -> None:
        self.metrics.drift.set(len(resources))
        drift = {"detected": bool(resources), "at": utc_now() if resources else None, "resources": resources}
        update_status(self.node.store, self.settings.node.name, drift=drift)

    # --- stream upstream probes --------------------------------------------------------------

    def _probe_streams(self) -> None:
        last = self.node.store.last_applied()
        if last is None:
            return
        health: dict[str, dict[str, dict[str, Any]]] = {}
        specs = {k.split("/", 1)[1]: v for k, v in last.specs.items() if k.startswith("Stream/")}
        now = time.monotonic()
        for name, spec in specs.items():
            check = spec["spec"].get("healthCheck")
            if not check or spec["spec"].get("protocol", "tcp") != "tcp":
                continue
            previous = self.state.stream_health.get(name, {})
            timeout = Duration.parse(check["timeout"]).seconds
            interval = Duration.parse(check["interval"]).seconds
            ports = PRESET_PORTS.get(spec["spec"].get("preset") or "", ())
            for upstream in spec["spec"]["upstreams"]:
                targets = [f"{upstream['server']}:{p}" for p in ports] if ports else [upstream["server"]]
                for target in targets:
                    entry = dict(previous.get(target, {"up": True, "failures": 0, "checked": 0.0}))
                    if now - entry["checked"] < interval:
                        health.setdefault(name, {})[target] = entry
                        continue
                    host, _, port = target.rpartition(":")
                    try:
                        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
                        entry.update(up=True, failures=0)
                    except OSError:
                        entry["failures"] += 1
                        entry["up"] = entry["failures"] < check.get("unhealthyThreshold", 3)
                    entry["checked"] = now
                    health.setdefault(name, {})[target] = entry
                    self.metrics.upstream_up.labels(stream=name, upstream=target).set(1 if entry["up"] else 0)
        self.state.stream_health = health
        streams = {n: {t: {"up": e["up"], "failures": e["failures"]} for t, e in h.items()} for n, h in health.items()}
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

    # --- HTTP -------------------------------------------------------------------------------------

    def _start_http(self) -> None:
        host, port = parse_listen(self.settings.http.listen)
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "hecate-agent"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    alive = daemon.worker is not None and daemon.worker.is_alive()
                    fresh = time.monotonic() - daemon.state.last_tick < 30
                    healthy = alive and fresh
                    self._send(200 if healthy else 503, b'{"ok": true}' if healthy else b'{"ok": false}')
                elif self.path == "/readyz":
                    self._send(200 if daemon.state.ready else 503, json.dumps({"ready": daemon.state.ready}).encode())
                elif self.path == "/status":
                    status = read_status(daemon.node.store) or {"phase": "Progressing"}
                    self._send(200, json.dumps(status, indent=2, sort_keys=True).encode())
                elif self.path == "/metrics":
                    self._send(200, daemon.metrics.render(), "text/plain; version=0.0.4")
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if self.path != "/hooks/git":
                    self._send(404, b'{"error": "not found"}')
                    return
                declared = (self.headers.get("Content-Length") or "0").strip()
                if not declared.isdigit():  # negative or garbage: never read "until the peer closes"
                    self._send(400, b'{"error": "bad Content-Length"}')
                    return
                length = int(declared)
                if length > MAX_WEBHOOK_BODY:
                    self._send(413, b'{"error": "payload too large"}')
                    return
                body = self.rfile.read(length)
                verdict = daemon.check_webhook(dict(self.headers.items()), body)
                if verdict is not None:
                    self._send(verdict[0], json.dumps({"error": verdict[1]}).encode())
                    return
                daemon.trigger("webhook")
                self._send(202, b'{"accepted": true}')

        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        attributes = {"address_family": address_family, "daemon_threads": True}
        server_class = type("Server", (ThreadingHTTPServer,), attributes)
        self.http = server_class((host or "127.0.0.1", port or 9469), Handler)
        threading.Thread(target=self.http.serve_forever, name="http", daemon=True).start()
        self.log.info("http endpoint", listen=self.settings.http.listen)

    def check_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
        """None when the request is authentic; else (status, reason). Constant-time comparisons."""
        secret_file = self.settings.http.webhook_secret_file
        if secret_file is None:
            return 404, "webhooks are disabled (http.webhookSecretFile is not set)"
        try:
            secret = secret_file.read_text().strip().encode()
        except OSError:
            return 500, "cannot read the webhook secret"
        lower = {k.lower(): v for k, v in headers.items()}
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if "x-hub-signature-256" in lower:
            given = lower["x-hub-signature-256"].removeprefix("sha256=")
            return None if _same(given, expected) else (401, "bad signature")
        if "x-gitea-signature" in lower:
            return None if _same(lower["x-gitea-signature"], expected) else (401, "bad signature")
        if "x-gitlab-token" in lower:
            return None if _same(lower["x-gitlab-token"], secret) else (401, "bad token")
        return 401, "missing signature"


def _same(given: str, expected: bytes) -> bool:
    """Constant-time comparison of a header value with the expected bytes. Bytes, not str:
    `hmac.compare_digest` raises on non-ASCII text, and a header can hold anything."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


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
