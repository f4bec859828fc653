"""Constrained value types used by the spec models.

Each type validates in pydantic and describes itself in JSON Schema with the
same rule where JSON Schema can express it (patterns, ranges), so editors and
the agent agree. Rules JSON Schema cannot express (IDNA, IPv6 syntax) are
checked here only and documented in the schema's description.

Anything that ends up inside Caddy JSON or Nginx text is restricted so a spec
author cannot inject proxy syntax: no `{`/`}` (Caddy placeholders such as
`{env.SECRET}`), no `;`, quotes, `$` or whitespace where Nginx would read them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from hecate_agent.spec import addresses
from hecate_agent.spec.addresses import (
    HTTP_URL_PATTERN,
    ZONE_MAX,
    AddressError,
    parse_dial,
    parse_http_url,
    parse_server,
)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("hecate", message)


# --- durations ----------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?\Z")
_UNIT_MS = (86_400_000, 3_600_000, 60_000, 1000, 1)
DURATION_PATTERN = r"^(?=\d)([0-9]+d)?([0-9]+h)?([0-9]+m(?!s))?([0-9]+s)?([0-9]+ms)?$"


@dataclass(frozen=True, order=True)
class Duration:
    """A non-negative span of time with millisecond resolution."""

    milliseconds: int

    @property
    def seconds(self) -> float:
        return self.milliseconds / 1000

    def __str__(self) -> str:
        """Canonical form, e.g. `1h30m`, `500ms`, `0s`."""
        if self.milliseconds == 0:
            return "0s"
        rest = self.milliseconds
        parts = []
        for unit, size in zip(("d", "h", "m", "s", "ms"), _UNIT_MS, strict=True):
            count, rest = divmod(rest, size)
            if count:
                parts.append(f"{count}{unit}")
        return "".join(parts)

    @classmethod
    @functools.lru_cache(maxsize=1024)  # specs repeat the same few durations thousands of times
    def parse(cls, text: str) -> Duration:
        match = _DURATION.match(text.strip()) if text.strip() else None
        if match is None or not any(match.groups()):
            raise ValueError(text)
        total = sum(int(g) * size for g, size in zip(match.groups(), _UNIT_MS, strict=True) if g)
        return cls(total)


def _validate_duration(value: Any) -> Duration:
    if isinstance(value, Duration):
        return value
    if not isinstance(value, str):
        raise _fail(
            f"expected a duration string such as '30s', '5m' or '1h30m', got {type(value).__name__} "
            f"{value!r}; write the unit (ms, s, m, h, d)"
        )
    try:
        return Duration.parse(value)
    except ValueError:
        raise _fail(
            f"{value!r} is not a duration; use a number and unit, e.g. '500ms', '30s', '5m', '4h', '30d' or '1h30m'"
        ) from None


DurationField = Annotated[
    Duration,
    PlainValidator(_validate_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: number + unit (ms, s, m, h, d), e.g. 500ms, 30s, 1h30m.",
        }
    ),
]


# --- names --------------------------------------------------------------------

DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ResourceName = Annotated[
    str,
    Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Lowercase DNS label: a-z, 0-9 and '-', at most 63 characters, not starting or ending with '-'.",
    ),
]

LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LabelKey = Annotated[str, Field(pattern=LABEL_KEY_PATTERN)]

# Free text that is never interpreted by a proxy: no control characters and no
# braces, so nothing can become a Caddy placeholder.
PLAIN_TEXT_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f{}]*$"
PlainText = Annotated[str, Field(pattern=PLAIN_TEXT_PATTERN, max_length=1024)]
LabelValue = Annotated[str, Field(pattern=PLAIN_TEXT_PATTERN, max_length=256)]


# --- hosts and addresses ------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")

DOMAIN_PATTERN = r"^(\*\.)?[^\s*/:@{}\[\]\\;,'\"$]+$"


def _to_ascii_host(value: str) -> str:
    """Lowercase and IDNA-encode a host name (a Unicode label becomes `xn--…`)."""
    lowered = value.lower().rstrip(".")
    if lowered.isascii():
        return lowered
    try:
        return ".".join(label.encode("idna").decode("ascii") for label in lowered.split("."))
    except UnicodeError:
        raise _fail(f"{value!r} is not a valid internationalised domain name") from None


_IPV4 = re.compile(
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\Z"
)


def _looks_like_ip(value: str) -> bool:
    bare = value.strip("[]")
    if ":" not in bare:
        return _IPV4.match(bare) is not None  # ipaddress is ~10x slower and this runs per upstream
    try:
        ipaddress.IPv6Address(bare)
    except ValueError:
        return False
    return True


def normalize_domain(value: str) -> str:
    host = _to_ascii_host(value)
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if _looks_like_ip(bare):
        raise _fail(f"{value!r} is an IP address; a route's domain must be a host name")
    labels = bare.split(".")
    if wildcard and len(labels) < 2:
        raise _fail(f"{value!r}: a wildcard needs at least two labels after '*.' (e.g. '*.example.com')")
    if len(bare) > 253:
        raise _fail(f"{value!r} is longer than 253 characters")
    for label in labels:
        if not _LABEL.match(label):
            raise _fail(
                f"{value!r} is not a valid host name: label {label!r} must be 1-63 letters, digits or "
                "'-', not starting or ending with '-'"
                + ("; '*' is only allowed as '*.' at the start" if "*" in label else "")
            )
    return host


Domain = Annotated[
    str,
    Field(
        pattern=DOMAIN_PATTERN,
        description="Host name (IDNA allowed, stored lowercased in ASCII form) or a '*.example.com' "
        "wildcard that matches exactly one label.",
    ),
    AfterValidator(normalize_domain),
]


# One grammar for upstream addresses, published as these patterns and used as they are by the
# validators below (spec/addresses.py); the Python around them only explains a refusal.
DIAL_PATTERN = addresses.DIAL_PATTERN
STREAM_SERVER_PATTERN = addresses.STREAM_SERVER_PATTERN


def normalize_dial(value: str) -> str:
    try:
        return parse_dial(value)
    except AddressError as exc:
        raise _fail(f"{value!r} is not a valid upstream address: {exc}") from None


Dial = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": DIAL_PATTERN},
        description="Upstream address 'host:port': a host name, an IPv4 address or a bracketed IPv6 "
        f"address (optionally with a zone of 1-{ZONE_MAX} interface-name characters, '[fe80::1%eth0]'), "
        "and a port 1-65535 without leading zeros.",
    ),
    AfterValidator(normalize_dial),
]


def check_stream_server(value: str) -> str:
    try:
        parse_server(value, with_port=False)
    except AddressError as exc:
        raise _fail(f"{value!r} is not a valid upstream server: {exc}") from None
    return value


StreamServer = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": STREAM_SERVER_PATTERN},
        description="Upstream 'host:port'; with a preset, the host alone (each preset port maps to itself). "
        "A host name, an IPv4 address or a bracketed IPv6 address (no zone: Nginx cannot use one).",
    ),
    AfterValidator(check_stream_server),
]


def normalize_listen_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _fail(
            f"{value!r} is not an IP address; listen on an address of this node, or '0.0.0.0' / '::' for all of them"
        ) from None


ListenAddress = Annotated[
    str,
    Field(pattern=r"^[0-9A-Fa-f:.]+$", description="An IP address of this node, or 0.0.0.0 / :: for all."),
    AfterValidator(normalize_listen_address),
]

Port = Annotated[int, Field(ge=1, le=65535)]


# --- HTTP ---------------------------------------------------------------------

HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HeaderName = Annotated[
    str,
    Field(pattern=HEADER_NAME_PATTERN, max_length=256, description="An HTTP header name (RFC 9110 token)."),
]
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f{}]*$"
HeaderValue = Annotated[
    str,
    Field(
        pattern=HEADER_VALUE_PATTERN,
        max_length=4096,
        description="A header value: no line breaks or control characters, and no '{' or '}' "
        "(Caddy would read them as placeholders).",
    ),
]
HTTP_PATH_PATTERN = r"^/[^\s{}?#]*$"
HttpPath = Annotated[
    str,
    Field(pattern=HTTP_PATH_PATTERN, max_length=1024, description="An absolute URL path starting with '/'."),
]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]


# --- TLS ----------------------------------------------------------------------

TLS_VERSIONS = ("1.2", "1.3")


def _coerce_tls_version(value: Any) -> Any:
    """Accept `1.2` written without quotes (YAML reads it as a float); refuse old versions clearly."""
    if isinstance(value, float) and not isinstance(value, bool):
        value = repr(value)
    if isinstance(value, str) and value.strip() in ("1.0", "1.1", "1", "1.00", "1.10"):
        raise _fail(
            f"TLS {value} is refused by the Hecate security policy: TLS 1.0 and 1.1 are deprecated "
            "(RFC 8996); use '1.2' or '1.3'"
        )
    return value


TlsVersion = Annotated[
    Literal["1.2", "1.3"],
    BeforeValidator(_coerce_tls_version),
    WithJsonSchema(
        {
            "enum": ["1.2", "1.3", 1.2, 1.3],
            "description": "Minimum TLS version, '1.2' or '1.3'. TLS 1.0/1.1 are refused by policy.",
        }
    ),
]


# --- middleware -----------------------------------------------------------------


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


# --- templated strings (global config, upstream request headers) ----------------

# What may stand inside `${…}`: an environment variable, or a key of a Vault KV v2 secret.
REFERENCE_BODY = r"[A-Za-z_][A-Za-z0-9_]*|vault:[A-Za-z0-9_][A-Za-z0-9_./-]*#[A-Za-z0-9_.-]+"
TEMPLATE_PATTERN = r"^([^\x00-\x08\x0a-\x1f\x7f${}]|\$\$|\$\{(" + REFERENCE_BODY + r")\})*$"
_TEMPLATE = re.compile(TEMPLATE_PATTERN[1:-1] + r"\Z")
_REFERENCE = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}")
_BAD_VAULT_PATH = re.compile(r"(^|/)\.{1,2}(/|#)|//|/#")


def _check_vault_paths(value: str) -> str:
    for name in _REFERENCE.findall(value.replace("$$", "")):
        if name.startswith("vault:") and _BAD_VAULT_PATH.search(name[len("vault:") :]):
            raise _fail(
                f"{value!r}: the Vault path in ${{{name}}} has an empty, '.' or '..' segment; "
                "write it as mount-relative path segments, e.g. ${vault:apps/billing#api_key}"
            )
    return value


def check_template(value: str) -> str:
    if not _TEMPLATE.match(value):
        raise _fail(
            f"{value!r}: '$' starts a reference written '${{NAME}}' (an environment variable: letters, digits, "
            "'_') or '${vault:path#key}'; write '$$' for a literal '$'. Braces are only allowed inside a reference"
        )
    return _check_vault_paths(value)


def template_references(value: str) -> list[str]:
    """What the `${…}` references of a templated string name: `NAME` or `vault:path#key`."""
    return _REFERENCE.findall(value.replace("$$", ""))


def header_references(value: str) -> list[str]:
    """The references of an upstream header value (there `$` only starts one before `{`)."""
    return _REFERENCE.findall(value)


Templated = Annotated[
    str,
    Field(
        pattern=TEMPLATE_PATTERN,
        max_length=4096,
        description="Text that may contain ${ENV_VAR} or ${vault:path#key} references, resolved on the node at "
        "render time and never shown in plans, logs or status.",
    ),
    AfterValidator(check_template),
]

# An upstream request header may carry a credential for the backend, so it may hold references.
# '$' not followed by '{' stays a literal '$' (values valid before references existed keep their meaning).
UPSTREAM_HEADER_VALUE_PATTERN = r"^([^\x00-\x08\x0a-\x1f\x7f{}]|\$\{(" + REFERENCE_BODY + r")\})*$"
UpstreamHeaderValue = Annotated[
    str,
    Field(
        pattern=UPSTREAM_HEADER_VALUE_PATTERN,
        max_length=4096,
        description="A header value for the upstream request: no line breaks or control characters, no '{' or '}' "
        "except in ${ENV_VAR} or ${vault:path#key} references, resolved on the node and never shown.",
    ),
    AfterValidator(_check_vault_paths),
]


_WHOLE_REFERENCE = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}\Z")
URL_OR_REFERENCE_PATTERN = "^(" + HTTP_URL_PATTERN[1:-1] + r"|\$\{(" + REFERENCE_BODY + r")\})$"


def check_url_or_reference(value: str) -> str:
    """A written URL is parsed now, as the renderer will parse it (a reference is parsed once resolved)."""
    if _WHOLE_REFERENCE.match(value):
        return _check_vault_paths(value)
    if value.startswith("$"):
        raise _fail(f"{value!r}: write a URL, or a single reference '${{NAME}}' or '${{vault:path#key}}' alone")
    try:
        parse_http_url(value)
    except AddressError as exc:
        raise _fail(f"{value!r} is not a usable URL: {exc}") from None
    return value


UrlOrReference = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": URL_OR_REFERENCE_PATTERN},
        max_length=2048,
        description="An http:// or https:// URL (host name, IPv4 or [IPv6] address, optional port 1-65535), "
        "or a single ${ENV_VAR} or ${vault:path#key} reference that holds one.",
    ),
    AfterValidator(check_url_or_reference),
]
