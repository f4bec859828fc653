"""The values that must never be shown, and the one step that hides them.

Every value resolved from a `${VAR}` or `${vault:…}` reference is registered
here the moment it is resolved (and the values held by the last-known-good
snapshot when it is read back). Every output path runs its text through
`scrub`: plans, the log processor, the status document, history entries and
error messages. The registry only grows within a process: a rotated secret's
old value still lives in the proxies' live config and in snapshots, so it must
stay hidden too.

Values shorter than `MIN_LENGTH` are not scrubbed from free text (replacing
"on" or "1" everywhere would mangle every line); plans still hide them, because
they compare the fields that hold secrets, not just the text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "<redacted>"
SENSITIVE_CHANGE = "(sensitive value changed)"
MIN_LENGTH = 4
_LIMIT = 10_000  # a bound, not a policy: rotations add values, nothing else does


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def register(self, values: Iterable[str]) -> None:
        fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH} - self.values
        if not fresh:
            return
        with self.lock:
            self.values.update(fresh)
            while len(self.values) > _LIMIT:
                self.values.pop()
            # Longest first, so a secret that contains another is hidden whole.
            ordered = sorted(self.values, key=lambda v: (-len(v), v))
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        with self.lock:
            self.values.clear()
            self.pattern = None


_registry = _Registry()


def register(values: Iterable[str]) -> None:
    _registry.register(values)


def known() -> frozenset[str]:
    return frozenset(_registry.values)


def forget_all() -> None:
    """For tests: start from an empty registry."""
    _registry.clear()


def scrub(text: str) -> str:
    pattern = _registry.pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def scrub_value(value: Any) -> Any:
    """`scrub` applied to every string inside a JSON-like value (keys included)."""
    if _registry.pattern is None:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def contains_secret(value: Any, secrets: frozenset[str] | None = None) -> bool:
    """Whether any registered (or given) secret occurs in `value`, short ones included."""
    values = known() if secrets is None else secrets
    if not values:
        return False
    if isinstance(value, str):
        return any(secret in value for secret in values)
    if isinstance(value, dict):
        return any(contains_secret(k, values) or contains_secret(v, values) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_secret(v, values) for v in value)
    return False
