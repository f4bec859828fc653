"""What asks for a reconcile: the scheduler's jobs (poll, drift, stream probes, secret refresh,
heartbeat) and the directory watcher. Each only calls `trigger(reason)` (or a cheap job); the
daemon's worker coalesces the requests."""

from __future__ import annotations

import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from hecate_agent.settings import AgentSettings

STREAM_PROBE_SECONDS = 5


def start_scheduler(
    settings: AgentSettings,
    trigger: Callable[[str], None],
    *,
    probe_streams: Callable[[], None],
    heartbeat: Callable[[], None],
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    )
    git_settings = settings.source.git
    if git_settings is not None:
        interval = max(1.0, git_settings.interval.seconds)
        scheduler.add_job(
            lambda: trigger("poll"), "interval", seconds=interval, jitter=max(0.0, interval / 10), id="poll"
        )
    elif settings.source.directory is not None:
        # File events are the trigger; a slow poll catches what inotify might miss.
        scheduler.add_job(lambda: trigger("poll"), "interval", seconds=60, id="poll")
    scheduler.add_job(
        lambda: trigger("drift-check"),
        "interval",
        seconds=max(1.0, settings.sync.drift_interval.seconds),
        id="drift",
    )
    scheduler.add_job(probe_streams, "interval", seconds=STREAM_PROBE_SECONDS, id="stream-probes")
    if settings.vault is not None:
        # A non-routine trigger renders again, so a secret rotated in Vault reaches the proxies
        # without a commit (an unchanged result is a no-op: same fingerprint).
        scheduler.add_job(
            lambda: trigger("secret-refresh"),
            "interval",
            seconds=max(1.0, settings.vault.refresh_interval.seconds),
            id="secret-refresh",
        )
    beat = settings.consul.session_ttl.seconds / 3 if settings.consul else 30.0
    scheduler.add_job(heartbeat, "interval", seconds=max(1.0, beat), id="heartbeat")
    scheduler.start()
    return scheduler


def start_watcher(
    settings: AgentSettings, trigger: Callable[[str], None], stopping: threading.Event
) -> threading.Thread | None:
    """Watch a directory source for changes (None for a Git source)."""
    directory = settings.source.directory
    if directory is None or settings.source.git is not None:
        return None

    def watch() -> None:
        from watchfiles import watch as watch_files

        # Watching a symlink follows it once; watch its parent so a swap (as git-sync does) is seen.
        target = directory.parent if directory.is_symlink() else directory
        for _changes in watch_files(
            target, stop_event=stopping, debounce=400, step=50, rust_timeout=1000, raise_interrupt=False
        ):
            trigger("file-change")

    watcher = threading.Thread(target=watch, name="directory-watcher", daemon=True)
    watcher.start()
    return watcher
