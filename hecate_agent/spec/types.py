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
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import idna
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from hecate_agent.spec import addresses
from hecate_agent.spec.addresses import (
    ZONE_MAX,
    AddressError,
    parse_dial,
    parse_server,
)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("hecate", message)


# --- durations ----------------------------------------------------------------

# ASCII digits only (Python's `\d` also matches Arabic-Indic or fullwidth digits), and no surrounding
# whitespace: the same rule as DURATION_PATTERN in the schema.
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?\Z")
_UNIT_MS = (86_400_000, 3_600_000, 60_000, 1000, 1)
DURATION_PATTERN = r"^(?=[0-9])([0-9]+d)?([0-9]+h)?([0-9]+m(?!s))?([0-9]+s)?([0-9]+ms)?$"


# Caddy and Nginx are handed durations as text; Caddy (Go) holds them in a time.Duration, an int64 of
# nanoseconds: about 292 years. Anything longer is refused everywhere (the JSON Schema cannot say so
# with a pattern; its description does).
GO_MAX_MILLISECONDS = (2**63 - 1) // 1_000_000


class DurationTooLongError(ValueError):
    pass


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
        match = _DURATION.match(text) if text else None
        if match is None or not any(match.groups()):
            raise ValueError(text)
        if any(len(group.lstrip("0")) > 16 for group in match.groups() if group):  # before int(): no 4,300-digit trap
            raise DurationTooLongError(text)
        total = sum(int(g) * size for g, size in zip(match.groups(), _UNIT_MS, strict=True) if g)
        if total > GO_MAX_MILLISECONDS:
            raise DurationTooLongError(text)
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
    except DurationTooLongError:
        raise _fail(
            f"{_shorten(value)} is longer than {Duration(GO_MAX_MILLISECONDS)}, the longest duration Caddy can hold "
            "(Go's time.Duration, about 292 years); use a shorter one"
        ) from None
    except ValueError:
        raise _fail(
            f"{value!r} is not a duration; use a number and unit, e.g. '500ms', '30s', '5m', '4h', '30d' or '1h30m'"
        ) from None


def _shorten(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def at_most(limit: Duration, why: str) -> AfterValidator:
    """A per-field ceiling for a duration, e.g. a probe interval."""

    def check(value: Duration | None) -> Duration | None:
        if value is not None and value > limit:
            raise _fail(f"{value} is longer than {limit}, the most {why} can be; use a shorter one")
        return value

    return AfterValidator(check)


DurationField = Annotated[
    Duration,
    PlainValidator(_validate_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: number + unit (ms, s, m, h, d), e.g. 500ms, 30s, 1h30m; at most "
            f"{Duration(GO_MAX_MILLISECONDS)} (Go's time.Duration, which Caddy uses), or less where a field says so.",
        }
    ),
]


def _whole_seconds(value: Duration) -> Duration:
    if value.milliseconds % 1000:
        rounded = Duration(-(-value.milliseconds // 1000) * 1000)
        raise _fail(
            f"{value} has a millisecond part, but Nginx counts fail_timeout in whole seconds; write e.g. '{rounded}'"
        )
    return value


# The same durations, in whole seconds (Nginx's `fail_timeout` refuses '500ms'): a millisecond part is
# allowed only as a multiple of 1000, so the schema says exactly what the validator checks.
WHOLE_SECONDS_DURATION_PATTERN = r"^(?=[0-9])([0-9]+d)?([0-9]+h)?([0-9]+m(?!s))?([0-9]+s)?([0-9]*000ms|0+ms)?$"
WholeSecondsDuration = Annotated[
    Duration,
    PlainValidator(lambda value: _whole_seconds(_validate_duration(value))),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": WHOLE_SECONDS_DURATION_PATTERN,
            "description": "A duration in whole seconds: number + unit (s, m, h, d), e.g. 10s, 1m30s; at most "
            f"{Duration(GO_MAX_MILLISECONDS)}.",
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

# Control characters, and every character ECMA-262's `\s` matches, spelled out: Python's, Rust's (pydantic)
# and ECMA-262's (editors, AJV) `\s` each match a different set, and a pattern must mean the same in all three.
SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# No `\"` in a pattern: ECMA-262 in `u` mode (AJV 8) refuses an escape that is not a syntax character.
DOMAIN_PATTERN = r"^(\*\.)?[^" + SPACE_OR_CONTROL + r"*/:@{}\[\]\\;,'" + '"' + r"$]+$"


def _to_ascii_host(value: str) -> str:
    """Lowercase and IDNA-encode a host name (a Unicode label becomes `xn--…`)."""
    lowered = value.lower().rstrip(".")
    if lowered.isascii():
        return lowered
    wildcard = lowered.startswith("*.")
    try:
        # UTS #46 (non-transitional) with IDNA 2008, as browsers map names: 'faß' stays 'faß'
        # (xn--fa-hia), where Python's own IDNA 2003 codec would make it 'fass'.
        encoded = idna.encode(lowered[2:] if wildcard else lowered, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise _fail(f"{value!r} is not a valid internationalised domain name ({exc})") from None
    return f"*.{encoded}" if wildcard else encoded


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
    """The canonical text of an IP address; an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) becomes the
    IPv4 address it stands for, since that is what it means and Nginx cannot bind the mapped form."""
    try:
        address = ipaddress.ip_address(value)
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return str(mapped or address)
    except ValueError:
        raise _fail(
            f"{value!r} is not an IP address; listen on an address of this node, or '0.0.0.0' / '::' for all of them"
        ) from None


ListenAddress = Annotated[
    str,
    Field(
        pattern=r"^[0-9A-Fa-f:.]+$",
        description="An IP address of this node, or 0.0.0.0 / :: for all.",
        # The schema states the whole rule (what `normalize_listen_address` accepts); the agent's own pattern
        # only picks the message.
        json_schema_extra={"pattern": f"^({addresses.IPV4_PATTERN}|{addresses.IPV6_PATTERN})$"},
    ),
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
# What Caddy's URL parser (Go's net/url) takes as a path, minus what would change its meaning: no
# control characters (Go refuses them), no space, '?' or '#' (they would end the path), '%' only as a
# %XX escape (Go refuses others), no braces (placeholders). Other non-ASCII text is sent percent-encoded.
HTTP_PATH_PATTERN = r"^/([^\x00-\x20\x7f-\x9f{}?#%]|%[0-9A-Fa-f]{2})*$"
HttpPath = Annotated[
    str,
    Field(
        pattern=HTTP_PATH_PATTERN,
        max_length=1024,
        description="An absolute URL path starting with '/': no spaces, control characters, '?', '#' or braces; "
        "'%' only as a %XX escape.",
    ),
]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")


# --- authentication -------------------------------------------------------------

# The first factor (password) and the device classes Authentik knows (DeviceClassesEnum).
AuthMethod = Literal["password", "webauthn", "totp", "static", "duo", "sms", "email"]
AUTH_METHODS: tuple[AuthMethod, ...] = typing.get_args(AuthMethod)

ATTRIBUTE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
AttributeName = Annotated[
    str,
    Field(
        pattern=ATTRIBUTE_NAME_PATTERN,
        description="A user attribute name: a letter or '_', then letters, digits, '_', '.' or '-' "
        "(at most 64 characters).",
    ),
]


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
