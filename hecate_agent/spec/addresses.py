"""Upstream addresses: one grammar for the published schema patterns and the agent.

A dial address (`upstreams[].dial`, `canary.upstream`), a Stream server and the
authority of the Authentik outpost URL are parsed by the same regular
expressions, published in the JSON Schemas as they are used here (ECMA-262
compatible: no lookbehind, no `\\Z`, no possessive quantifiers), so an editor and
the agent always give the same verdict. The Python code around them only turns a
refusal into a precise message; it never accepts what a pattern refuses.

The grammar (RFC 3986 for IPv6, RFC 6874 for zones, WHATWG "ends in a number"):

- host: a host name, a dotted-quad IPv4 address (0-255, no leading zeros) or a
  bracketed IPv6 address; a host name whose last label is a number (`1.2.3.4.5`,
  `999.1.1.1`, `0x7f000001`) is refused: resolvers and proxies read such names as
  (broken) IPv4 addresses, each in its own way;
- an IPv6 zone (`%eth0`, Caddy dial addresses only: Nginx refuses zones) holds
  interface-name characters only, at most 15 (IFNAMSIZ - 1): no braces, so no
  Caddy placeholder can hide in it;
- port: 1-65535 without leading zeros.
"""

from __future__ import annotations

import re

_END = "<END>"  # `$` in the published pattern, `\Z` in Python (where `$` also matches before a final newline)

_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = f"{_OCTET}(\\.{_OCTET}){{3}}"
_LS32 = f"({_H16}:{_H16}|{IPV4_PATTERN})"


def _before(count: int) -> str:
    """RFC 3986's `[ *count( h16 ":" ) h16 ]` in front of `::`."""
    if count == 0:
        return f"({_H16})?"
    return f"(({_H16}:){{0,{count}}}{_H16})?"


IPV6_PATTERN = (
    "("
    + "|".join(
        [
            f"({_H16}:){{6}}{_LS32}",
            f"::({_H16}:){{5}}{_LS32}",
            f"{_before(0)}::({_H16}:){{4}}{_LS32}",
            f"{_before(1)}::({_H16}:){{3}}{_LS32}",
            f"{_before(2)}::({_H16}:){{2}}{_LS32}",
            f"{_before(3)}::{_H16}:{_LS32}",
            f"{_before(4)}::{_LS32}",
            f"{_before(5)}::{_H16}",
            f"{_before(6)}::",
        ]
    )
    + ")"
)
ZONE_CHARACTERS = "A-Za-z0-9_.-"
ZONE_MAX = 15  # IFNAMSIZ - 1
_ZONE = f"%[{ZONE_CHARACTERS}]{{1,{ZONE_MAX}}}"
_LABEL = "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NUMBER = "([0-9]+|0[xX][0-9A-Fa-f]*)"


def _host_name(after: str) -> str:
    """A host name of at most 253 characters whose last label is not a number; `after` is what may follow it."""
    return f"(?=[A-Za-z0-9_.-]{{1,253}}({after}))({_LABEL}\\.)*(?!{_NUMBER}({after})){_LABEL}"


PORT_PATTERN = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_DIAL_HOST = f"(\\[{IPV6_PATTERN}({_ZONE})?\\]|{IPV4_PATTERN}|{_host_name(':')})"
_SERVER_HOST = f"(\\[{IPV6_PATTERN}\\]|{IPV4_PATTERN}|{_host_name(':|' + _END)})"
_URL_HOST = f"(\\[{IPV6_PATTERN}\\]|{IPV4_PATTERN}|{_host_name(':|/|' + _END)})"
# What an outpost URL may hold after its authority: a path of printable ASCII without braces or '$'.
_URL_PATH = "(/[!#%-z|~]*)?"

_TEMPLATES = {
    "dial": f"^{_DIAL_HOST}:{PORT_PATTERN}{_END}",
    "server": f"^{_SERVER_HOST}(:{PORT_PATTERN})?{_END}",
    "url": f"^https?://{_URL_HOST}(:{PORT_PATTERN})?{_URL_PATH}{_END}",
}


def published(kind: str) -> str:
    """The pattern as JSON Schema publishes it (ECMA-262)."""
    return _TEMPLATES[kind].replace(_END, "$")


_COMPILED = {kind: re.compile(text.replace(_END, r"\Z")) for kind, text in _TEMPLATES.items()}
DIAL_PATTERN = published("dial")
STREAM_SERVER_PATTERN = published("server")
HTTP_URL_PATTERN = published("url")
_IPV6 = re.compile(IPV6_PATTERN + r"\Z")
_IPV4 = re.compile(IPV4_PATTERN + r"\Z")
_HOST_LABEL = re.compile(_LABEL + r"\Z")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f;{}'\"\\$`]")


class AddressError(ValueError):
    """What is wrong with an address, in words that never quote the address itself."""


def _port_problem(port: str) -> str | None:
    if not port.isascii() or not port.isdigit():
        return "the port must be a number from 1 to 65535"
    if len(port) > 1 and port.startswith("0"):
        return "the port has a leading zero; write it without one (e.g. 8080)"
    if not 1 <= int(port[:6]) <= 65535:
        return "the port must be from 1 to 65535"
    return None


def _host_problem(host: str, *, zones: bool) -> str | None:
    if host.startswith("["):
        if not host.endswith("]"):
            return "an IPv6 address in brackets must be followed by ':port', e.g. '[2001:db8::1]:8080'"
        address, percent, zone = host[1:-1].partition("%")
        if not _IPV6.match(address):
            return "the address in brackets is not a valid IPv6 address"
        if percent and not zones:
            return "an IPv6 zone ('%' and an interface name) is not supported here; Nginx cannot use it"
        if percent and not re.fullmatch(f"[{ZONE_CHARACTERS}]{{1,{ZONE_MAX}}}", zone):
            return f"the IPv6 zone after '%' must be an interface name: 1-{ZONE_MAX} letters, digits, '_', '.' or '-'"
        return None
    if "[" in host or "]" in host:
        return "brackets only surround a whole IPv6 address, e.g. '[2001:db8::1]:8080'"
    if ":" in host:
        return "put an IPv6 address in brackets, e.g. '[2001:db8::1]:8080'"
    labels = host.split(".")
    if re.fullmatch(_NUMBER, labels[-1]):
        if _IPV4.match(host):
            return None
        return (
            "it looks like an IPv4 address but is not one (four numbers 0-255 without leading zeros); "
            "a host name cannot end in a number"
        )
    if len(host) > 253:
        return "the host name is longer than 253 characters"
    for label in labels:
        if not _HOST_LABEL.match(label):
            return (
                "the host name is not valid: each label must be 1-63 letters, digits, '_' or '-', "
                "not starting or ending with '-'"
            )
    return None


def _problem(value: str, kind: str) -> str:
    """Why `value` is not an address of `kind` (called only once its pattern has refused it)."""
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        return "it contains a space, control character, quote, '$', ';', '\\' or brace; an address cannot"
    if "://" in value:
        return "write host:port without a scheme, e.g. '10.0.0.5:8080'"
    if "/" in value:
        return "an address has no path ('/'): write host:port, e.g. '10.0.0.5:8080'"
    if value.startswith("[") and "]" not in value:
        return "the '[' of an IPv6 address is not closed"
    if value.startswith("[") and not value.endswith("]"):
        host, sep, port = value.partition("]")
        host += sep
        if not port.startswith(":"):
            return "an IPv6 address in brackets must be followed by ':port', e.g. '[2001:db8::1]:8080'"
        port = port[1:]
    elif value.startswith("[") or (":" not in value):
        host, port = value, ""
    else:
        host, _, port = value.rpartition(":")
    if kind == "dial" and not port:
        return "it needs a port: write host:port, e.g. '10.0.0.5:8080' or 'app.internal:3000'"
    if not host:
        return "the host is missing: write host:port, e.g. '10.0.0.5:8080'"
    found = _host_problem(host, zones=kind == "dial") or (_port_problem(port) if port else None)
    return found or "it is not host:port with a host name, IPv4 or [IPv6] address and a port 1-65535"


def _normalize_host(host: str) -> str:
    """Lowercase, except an IPv6 zone: interface names are case-sensitive."""
    address, percent, zone = host.partition("%")
    return address.lower() + percent + zone


def parse_dial(value: str) -> str:
    """A Caddy dial address, normalized (host lowercased); raises AddressError."""
    if not _COMPILED["dial"].match(value):
        raise AddressError(_problem(value, "dial"))
    host, _, port = value.rpartition(":")
    return f"{_normalize_host(host)}:{port}"


def parse_server(value: str, *, with_port: bool) -> tuple[str, int | None]:
    """(host, port) of a Stream server, `host:port`, or the host alone (`with_port=False`); raises AddressError."""
    if not _COMPILED["server"].match(value):
        raise AddressError(_problem(value, "server"))
    has_port = not value.endswith("]") and ":" in value
    host, port = value.rpartition(":")[::2] if has_port else (value, "")
    if with_port and not has_port:
        raise AddressError("it needs a port: write host:port, e.g. '10.0.0.5:5432'")
    return host.lower(), (int(port) if port else None)


def parse_http_url(value: str) -> tuple[str, bool]:
    """(dial address, TLS) of an http:// or https:// URL; raises AddressError naming what is wrong, never
    quoting the URL (it may come from a secret)."""
    if _COMPILED["url"].match(value):
        scheme, _, rest = value.partition("://")
        authority = rest.split("/", 1)[0]
        tls = scheme == "https"
        if authority.endswith("]") or ":" not in authority:
            authority = f"{authority}:{443 if tls else 80}"
        return parse_dial(authority), tls
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise AddressError("it is not an http:// or https:// URL")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not authority:
        raise AddressError("the URL has no host")
    if "@" in authority:
        raise AddressError("the URL holds a user name or password (before '@'); forward auth uses none, remove it")
    if "%" in authority:
        raise AddressError("an IPv6 zone is not supported in the outpost URL")
    if authority.endswith("]") or (":" not in authority and not authority.startswith("[")):
        authority = f"{authority}:80"
    problem = _problem(authority, "dial")
    if problem.startswith("it is not host:port"):
        problem = "the path holds a space, control character, brace, '$' or non-ASCII character"
    raise AddressError(problem)
