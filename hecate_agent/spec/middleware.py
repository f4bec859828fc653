"""The `middleware` list of a Route: each entry parsed into a typed value (rate limit, compression, request id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("hecate", message)


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per: Literal["second", "minute", "hour"]

    def __str__(self) -> str:
        return f"rate-limit:{self.requests}/{self.per}"


@dataclass(frozen=True)
class Compression:
    def __str__(self) -> str:
        return "compression"


@dataclass(frozen=True)
class RequestId:
    def __str__(self) -> str:
        return "request-id"


MiddlewareValue = RateLimit | Compression | RequestId
KNOWN_MIDDLEWARE = ("compression", "rate-limit:<n>/<second|minute|hour>", "request-id")
# The design document writes both `rate-limit:100/minute` (YAML) and `rate-limit:100/min` (CLI).
RATE_LIMIT_UNITS: dict[str, Literal["second", "minute", "hour"]] = {
    "second": "second",
    "sec": "second",
    "s": "second",
    "minute": "minute",
    "min": "minute",
    "m": "minute",
    "hour": "hour",
    "hr": "hour",
    "h": "hour",
}
_UNIT_CHOICES = "second|sec|s|minute|min|m|hour|hr|h"
_RATE_LIMIT = re.compile(r"rate-limit:([1-9][0-9]{0,8})/(" + _UNIT_CHOICES + r")\Z")
MIDDLEWARE_PATTERN = r"^(compression|request-id|rate-limit:[1-9][0-9]{0,8}/(" + _UNIT_CHOICES + r"))$"


def parse_middleware(value: Any) -> MiddlewareValue:
    if isinstance(value, RateLimit | Compression | RequestId):
        return value
    if not isinstance(value, str):
        raise _fail(f"expected a middleware name (string), got {type(value).__name__}")
    if value == "compression":
        return Compression()
    if value == "request-id":
        return RequestId()
    match = _RATE_LIMIT.match(value)
    if match:
        return RateLimit(int(match.group(1)), RATE_LIMIT_UNITS[match.group(2)])
    if value.startswith("rate-limit"):
        raise _fail(
            f"{value!r}: write a rate limit as 'rate-limit:<n>/<second|minute|hour>' (or sec, min, hr), "
            "e.g. 'rate-limit:100/minute' or 'rate-limit:100/min'"
        )
    raise _fail(f"unknown middleware {value!r}; known: {', '.join(KNOWN_MIDDLEWARE)}")


Middleware = Annotated[
    MiddlewareValue,
    PlainValidator(parse_middleware),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MIDDLEWARE_PATTERN,
            "description": "One of: " + ", ".join(KNOWN_MIDDLEWARE) + ".",
        }
    ),
]
