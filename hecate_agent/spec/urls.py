"""URLs of services the proxies talk to (the Authentik outpost): what makes one usable, checked when written."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from hecate_agent.spec.types import (
    PORT_PATTERN,
    REFERENCE_BODY,
    SERVICE_URL_PATTERN,
    URL_OR_REFERENCE_PATTERN,
    _check_vault_paths,
    normalize_dial,
)

_SERVICE_URL = re.compile(SERVICE_URL_PATTERN)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("hecate", message)


def parse_service_url(url: str) -> tuple[str, bool]:
    """(dial address `host:port`, use TLS) of an http(s):// service URL such as the outpost's.

    The same pattern as the schema's; raises ValueError with a reason that does not quote the
    URL (it may come from a secret).
    """
    match = _SERVICE_URL.fullmatch(url)
    if match is None:
        raise ValueError(_why_not(url))
    scheme, host, port = match.group(1), match.group(2), match.group(3)
    tls = scheme == "https"
    host = host.replace("%25", "%")  # an IPv6 zone is written '%25' in a URL (RFC 6874)
    try:
        dial = normalize_dial(f"{host}:{port or (443 if tls else 80)}")
    except PydanticCustomError:
        raise ValueError("its host is not a valid host name, IPv4 address or [IPv6] address") from None
    return dial, tls


def _why_not(url: str) -> str:
    """Which part of a URL `SERVICE_URL_PATTERN` refuses, in words that do not quote it."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("http", "https"):
        return "it is not an http:// or https:// URL"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return "it holds user information ('user:password@'), which would not be sent"
    if authority.startswith("["):
        close = authority.find("]") + 1
        if not close or not re.fullmatch(r"\[[0-9A-Fa-f:.]+(%25[A-Za-z0-9_.~-]+)?\]", authority[:close]):
            return "its [IPv6] address is malformed"
        port = authority[close:]
    else:
        host, colon, number = authority.partition(":")
        if not host:
            return "it has no host"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
            return "its host has characters a host name cannot have (letters, digits, '.', '-', '_')"
        port = colon + number
    if port and not re.fullmatch(":" + PORT_PATTERN, port):
        return "its port is not a number 1-65535 (without leading zeros)"
    return "what follows its host holds spaces, control characters, braces or '$'"


_REFERENCE_ONLY = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}")


def _check_url_or_reference(value: str) -> str:
    """A written URL is checked here, with the reason it is unusable; a reference where it is resolved."""
    if _REFERENCE_ONLY.fullmatch(value):
        return _check_vault_paths(value)
    shown = repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    if value.startswith("$"):
        raise _fail(
            f"{shown} is not a single reference, '${{NAME}}' (environment: letters, digits, '_') or "
            "'${vault:path#key}', nor an http:// or https:// URL"
        )
    try:
        parse_service_url(value)
    except ValueError as exc:
        raise _fail(f"{shown} is not a usable URL: {exc}; write e.g. 'http://authentik-outpost:9000'") from None
    return value


# The pattern is published for editors; the validator applies the same one and says what is wrong.
UrlOrReference = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": URL_OR_REFERENCE_PATTERN},
        max_length=2048,
        description="An http:// or https:// URL (a host name, IPv4 or [IPv6] address, an optional port 1-65535, "
        "no user info), or a single ${ENV_VAR} or ${vault:path#key} reference that holds one.",
    ),
    AfterValidator(_check_url_or_reference),
]
