"""URLs of services the proxies talk to (the Authentik outpost): what makes one usable, checked when written."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from hecate_agent.spec.types import URL_OR_REFERENCE_PATTERN, _check_vault_paths, _fail, normalize_dial


def parse_service_url(url: str) -> tuple[str, bool]:
    """(dial address `host:port`, use TLS) of an http(s):// service URL such as the outpost's.

    Raises ValueError with a reason that does not quote the URL (it may come from a secret).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "its [IPv6] address is malformed" if "IPv6" in str(exc) else "its port is not a number 1-65535"
        raise ValueError(reason) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("it is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("it holds user information ('user:password@'), which would not be sent")
    if port == 0:
        raise ValueError("its port is not a number 1-65535")
    tls = parts.scheme == "https"
    hostname = parts.hostname.replace("%25", "%")  # an IPv6 zone is written '%25' in a URL (RFC 6874)
    host = f"[{hostname}]" if ":" in hostname else hostname
    try:
        dial = normalize_dial(f"{host}:{port or (443 if tls else 80)}")
    except PydanticCustomError:
        raise ValueError("its host is not a valid host name, IPv4 address or [IPv6] address") from None
    return dial, tls


def _check_literal_url(value: str) -> str:
    """A written URL is checked when it is validated; a reference is checked where it is resolved."""
    if value.startswith("${"):
        return value
    try:
        parse_service_url(value)
    except ValueError as exc:
        raise _fail(f"not a usable URL: {exc}; write e.g. 'http://authentik-outpost:9000'") from None
    return value


UrlOrReference = Annotated[
    str,
    Field(
        pattern=URL_OR_REFERENCE_PATTERN,
        max_length=2048,
        description="An http:// or https:// URL, or a single ${ENV_VAR} or ${vault:path#key} reference that holds one.",
    ),
    AfterValidator(_check_vault_paths),
    AfterValidator(_check_literal_url),
]
