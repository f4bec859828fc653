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
_RATE_LIMIT = re.compile(r"rate-limit:([1-9][0-9]{0,8})/(second|minute|hour)\Z")
MIDDLEWARE_PATTERN = r"^(compression|request-id|rate-limit:[1-9][0-9]{0,8}/(second|minute|hour))$"


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
        per: Literal["second", "minute", "hour"] = match.group(2)  # type: ignore[assignment]  # regex-checked
        return RateLimit(int(match.group(1)), per)
    if value.startswith("rate-limit"):
        raise _fail(
            f"{value!r}: write a rate limit as 'rate-limit:<n>/<second|minute|hour>', e.g. 'rate-limit:100/minute'"
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
