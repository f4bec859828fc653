"""The Nginx target: the agent's stream files, one revision folder per apply behind a symlink.

Applying: stage the new folder (fsynced), flip the symlink, `nginx -t`, reload and
prove the reload took (targets/nginx_streams.py). The journal record names the old
and new folders, so a crash is resolved by pointing the link at one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hecate_agent.engine.errors import ApplyError
from hecate_agent.engine.ports import TargetLive
from hecate_agent.render.nginx import Listener
from hecate_agent.targets.nginx_streams import NginxError, NginxStreams

if TYPE_CHECKING:
    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.store.state import Snapshot

ORDER = 40


def nginx_resources(files: Mapping[str, str]) -> dict[str, Any]:
    return {f"Stream/{name[: -len('.conf')]}": text for name, text in files.items() if name.endswith(".conf")}


def listener_from(data: Mapping[str, Any]) -> Listener:
    return Listener(data["stream"], data["address"], data["port"], data["protocol"], data["upstreamName"])


def listener_dict(listener: Listener) -> dict[str, Any]:
    return {
        "stream": listener.stream,
        "address": listener.address,
        "port": listener.port,
        "protocol": listener.protocol,
        "upstreamName": listener.upstream_name,
    }


class NginxTarget:
    """Nginx's stream files, owned whole (the directory is the agent's)."""

    name = "nginx"
    order = ORDER

    def __init__(self, streams: NginxStreams) -> None:
        self.streams = streams
        self.include_checked = False  # `nginx -T` once per process, not per apply

    def read(self) -> TargetLive:
        folder = self.streams.active_folder()
        return TargetLive(self.streams.read_active(), location=str(folder) if folder else None)

    def desired(self, rendered: Rendered, live: Any) -> Any:
        del live
        return rendered.nginx_files

    def owned(self, state: Any) -> Any:
        return state

    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]:
        return nginx_resources(state), []

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return snapshot.nginx_files

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        rendered = prepared.rendered
        return {"nginx_files": rendered.nginx_files, "nginx_listeners": [listener_dict(x) for x in rendered.listeners]}

    def preflight(self, prepared: Prepared) -> list[str]:
        listeners = prepared.rendered.listeners
        try:
            if listeners and not self.include_checked:
                self.streams.check_include()
                self.include_checked = True
            self.streams.preflight(listeners)
        except NginxError as exc:
            return [str(exc)]
        return []

    def begin(self, prepared: Prepared) -> dict[str, Any]:
        return {
            "old": prepared.live.targets[self.name].location,
            "new": None,
            "listeners": [listener_dict(x) for x in prepared.rendered.listeners],
            "restoreListeners": self._restore_listeners(prepared),
        }

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        rendered = prepared.rendered
        try:
            self.switch(rendered.nginx_files, rendered.listeners, rendered.revision, record, save)
        except NginxError as exc:
            raise ApplyError("nginx", str(exc)) from None

    def switch(
        self,
        files: dict[str, str],
        listeners: Sequence[Listener],
        revision: str,
        record: dict[str, Any],
        save: Callable[[], None],
    ) -> None:
        """The one Nginx sequence: stage a revision folder (fsynced), journal it, flip the link,
        `nginx -t`, reload and prove it took. Raises NginxError; `restore(record)` undoes it."""
        folder = self.streams.stage(files, revision)
        record["new"] = str(folder)
        save()
        self.streams.activate(folder)
        self.streams.test()
        self.streams.reload_and_verify(listeners)

    @staticmethod
    def _restore_listeners(prepared: Prepared) -> list[dict[str, Any]]:
        """Listeners of the files being replaced, when the last-known-good describes them."""
        last = prepared.last
        if last is None or last.nginx_files != prepared.live.state("nginx"):
            return []
        return list(last.nginx_listeners)

    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool:
        del snapshot
        return record.get("new") is not None and live.location == record["new"]

    def finish(self, record: dict[str, Any]) -> None:
        """The new folder is active: make Nginx run it (test, reload, verify)."""
        try:
            self.streams.test()
            self.streams.reload_and_verify([listener_from(x) for x in record.get("listeners") or []])
        except NginxError as exc:
            raise ApplyError("nginx", str(exc)) from None

    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None:
        if (live or self.read()).location == record.get("old"):
            return  # never switched (or already back): Nginx runs the old files
        old = record.get("old")
        try:
            self.streams.deactivate(Path(old) if old else None)
            self.streams.reload_and_verify([listener_from(x) for x in record.get("restoreListeners") or []])
        except (NginxError, OSError) as exc:
            raise ApplyError(
                "nginx rollback",
                f"{exc}. Point {self.streams.settings.stream_dir} back at {old} and reload",
            ) from None

    def commit(self, record: dict[str, Any]) -> None:
        keep = [Path(p) for p in (record.get("new"), record.get("old")) if p]
        self.streams.prune(keep)

    def close(self) -> None:
        pass
