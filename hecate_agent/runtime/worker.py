"""The daemon's one worker: triggers pile up as reasons, the worker takes them all at once.

Every trigger only *asks* for a reconcile; the worker coalesces what piled up while it
was busy into one run, so there are never two reconciles at once and a burst of commits
costs one apply. The worker also feeds systemd's watchdog: if it wedges, the pings stop
and systemd restarts the agent. Failures back off exponentially (capped).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hecate_agent.logs import get_logger
from hecate_agent.runtime.sdnotify import Notifier
from hecate_agent.spec.loader import SourceFile

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
URGENT = frozenset({"webhook", "settings", "file-change"})  # not held back by a backoff


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


class Worker:
    def __init__(self, notifier: Notifier, stopping: threading.Event) -> None:
        self.notifier = notifier
        self.stopping = stopping
        self.state = WorkerState()
        self.wakeup = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.log = get_logger("hecate-agent.worker")

    def trigger(self, reason: str) -> None:
        with self.lock:
            self.state.pending.add(reason)
        self.wakeup.set()

    def retry_soon(self, seconds: float = 1.0, reason: str = "paced") -> None:
        timer = threading.Timer(seconds, self.trigger, args=(reason,))
        timer.daemon = True
        timer.start()

    def start(
        self,
        *,
        reload_settings: Callable[[], None],
        check_drift: Callable[[], Any],
        reconcile: Callable[[str], Any],
    ) -> None:
        def loop() -> None:
            self._loop(reload_settings, check_drift, reconcile)

        self.thread = threading.Thread(target=loop, name="reconcile-worker", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.wakeup.set()
        if self.thread is not None:
            self.thread.join(timeout=300)  # an apply in flight finishes or rolls back first

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _loop(
        self, reload_settings: Callable[[], None], check_drift: Callable[[], Any], reconcile: Callable[[str], Any]
    ) -> None:
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
                self.guard(reload_settings)
                reasons.discard("reload-settings")
                reasons.add("settings")
            if time.monotonic() < self.state.retry_at and not reasons & URGENT:
                with self.lock:  # backing off: keep the request for later
                    self.state.pending |= reasons
                continue
            if reasons == {"drift-check"}:
                self.guard(check_drift)
            else:
                self.guard(functools.partial(reconcile, ",".join(sorted(reasons))))

    def guard(self, action: Callable[[], Any]) -> Any:
        """Nothing a job meets may stop the worker: log, count, back off, carry on."""
        try:
            return action()
        except Exception as exc:  # the daemon must survive anything
            self.log.error("unexpected error", error=str(exc), error_type=type(exc).__name__)
            self.backoff()
            return None

    def backoff(self) -> None:
        self.state.failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE**self.state.failures) * random.uniform(0.8, 1.2)
        self.state.retry_at = time.monotonic() + delay

    def succeeded(self) -> None:
        self.state.failures, self.state.retry_at = 0, 0.0
