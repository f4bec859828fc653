"""What the Caddy target remembers between plans in a long-running agent (`hecate-agent run`).

Two things, both only ever a shortcut to a result computed the long way:

- `AppliedMemory`: the config the agent's last apply put in Caddy, with the ETag Caddy gave
  it (read back by the apply's verification, which checked it equals what was sent). The
  daemon plans against it instead of reading 5 MB back from Caddy on every revision; the
  apply's `If-Match` precondition carries that ETag, so a change made behind the agent's
  back since then is refused by Caddy (HTTP 412), the memory is dropped, and the engine
  reads the live config and plans again (engine/reconcile.py). One-shot commands (`plan`,
  `apply`) and drift checks always read Caddy.
- `ResourceMemo`: `caddy_resources`' per-object work (splitting a route into its resource,
  checking that a group's outer route is the derived one), remembered by the identity of the
  objects it was done for. The render cache hands back the same route objects while a route's
  inputs are unchanged, so planning a one-route change redoes the work for that route only.
  Configs are never modified in place (every function here and in render/ builds new values),
  so an object seen before has the same value; each entry holds its object, so an `id` is never
  reused while remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEMO_GENERATIONS = 4  # configs whose objects stay remembered: desired, live, last-applied, and one spare


@dataclass(frozen=True)
class Applied:
    config: dict[str, Any]
    etag: str


class AppliedMemory:
    """The last config this process applied to Caddy and its ETag, or nothing."""

    def __init__(self) -> None:
        self._applied: Applied | None = None

    def remember(self, config: dict[str, Any], etag: str) -> None:
        self._applied = Applied(config, etag)

    def forget(self) -> None:
        self._applied = None

    def recall(self) -> Applied | None:
        return self._applied


class ResourceMemo:
    """Results of pure functions of config objects, by the objects' identity, for the last few configs.

    `get`/`put` hold an object with its result; `next_generation` starts a new config and drops what
    the oldest kept config used and no newer one did, so memory stays proportional to the configs
    that are live in the agent anyway."""

    def __init__(self, generations: int = MEMO_GENERATIONS) -> None:
        self.generations = generations
        self._current: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._older: list[dict[tuple[str, int], tuple[Any, Any]]] = []

    def next_generation(self) -> None:
        if self._current:
            self._older = [self._current, *self._older][: self.generations - 1]
        self._current = {}

    def get(self, kind: str, obj: Any) -> tuple[bool, Any]:
        key = (kind, id(obj))
        found = self._current.get(key)
        if found is None:
            for older in self._older:
                found = older.get(key)
                if found is not None:
                    self._current[key] = found
                    break
        if found is not None and found[0] is obj:
            return True, found[1]
        return False, None

    def put(self, kind: str, obj: Any, result: Any) -> Any:
        self._current[(kind, id(obj))] = (obj, result)
        return result
