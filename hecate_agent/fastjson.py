"""Compact JSON for megabyte values (a 10,000-route Caddy config is ~5 MB): orjson when it can, the
standard library otherwise. The standard library's encoder is ~10x slower, and an apply writes the config
several times (the request to Caddy, the journal, the last-known-good)."""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency
    _orjson = None  # type: ignore[assignment]


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON (UTF-8). orjson refuses keys that are not strings and integers beyond 64 bits; the
    standard library then writes them as it always did (or raises its own TypeError)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS if sort_keys else 0)
        except TypeError:
            pass
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """orjson's reading, or the standard library's for what orjson refuses (NaN, huge integers), so that
    errors are the standard library's."""
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(data)
