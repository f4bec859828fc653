"""Header-name rules shared by the spec models and the renderer.

HTTP header names are case-insensitive (RFC 9110 §5.1): `X-A` and `x-a` are one
header. Two spellings of one name in one rule would render two entries, and
Caddy would then pick one of them per request, so they are an error; a route's
header replaces a global one of any spelling.

The identity headers (`X-Authentik-*`) come from the AuthPolicy's forward auth
only: the outpost answers, Caddy copies them onto the request after deleting
whatever the client sent. A route's upstream headers run after that, so a route
that could set or remove them would forge or erase the identity the backend
trusts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

AUTHENTIK_HEADERS = {
    "username": "X-Authentik-Username",
    "groups": "X-Authentik-Groups",
    "email": "X-Authentik-Email",
    "name": "X-Authentik-Name",
    "uid": "X-Authentik-Uid",
    "entitlements": "X-Authentik-Entitlements",
}
REQUEST_ID_HEADER = "X-Request-ID"
IDENTITY_PREFIX = "x-authentik-"
# The same rule for JSON Schema (ECMA-262 has no inline case-insensitivity): '_' counts as '-',
# because CGI-style backends (WSGI, PHP, ...) read X-Authentik_Username as X-Authentik-Username.
IDENTITY_NAME_PATTERN = "[Xx][-_][Aa][Uu][Tt][Hh][Ee][Nn][Tt][Ii][Kk][-_]"


def is_identity_header(name: str) -> bool:
    return name.lower().replace("_", "-").startswith(IDENTITY_PREFIX)


def refuse_identity_header(name: str) -> str:
    # Refused always, not only on routes with an authPolicy: a route gains or loses its policy in a
    # one-line change, a backend that trusts these headers believes them with or without forward
    # auth, and a rule that depends on no other field can be published in the JSON Schema as well.
    if is_identity_header(name):
        raise PydanticCustomError(
            "hecate",
            f"{name} is an identity header: the AuthPolicy's forward auth sets the X-Authentik-* headers from the "
            "Authentik outpost's answer, and a route that set or removed one would forge or erase the identity "
            "the backend trusts. Remove it from headers.upstream",
        )
    return name


def _error(loc: tuple[str | int, ...], name: str, message: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("hecate", message), loc=loc, input=name)


def check_header_rules(
    model: str,
    sets: Iterable[str],
    removes: Iterable[str] = (),
    *,
    set_field: str = "set",
    remove_field: str = "remove",
) -> None:
    """Raise (at the second spelling, so the message has its line and column) if one header is named
    twice in a rule, in any spelling: twice in `set`, twice in `remove`, or in both."""
    errors: list[InitErrorDetails] = []
    seen: dict[str, str] = {}
    for name in sets:
        earlier = seen.setdefault(name.lower(), name)
        if earlier != name:
            message = f"{name} and {earlier} are one header (header names are case-insensitive); keep one"
            errors.append(_error((set_field, name, "[key]"), name, message))
    removed: dict[str, str] = {}
    for index, name in enumerate(removes):
        if name.lower() in seen:
            message = (
                f"{name} is also set in this rule (as {seen[name.lower()]}); a header is either set or removed, "
                "keep one of the two"
            )
            errors.append(_error((remove_field, index), name, message))
        elif name.lower() in removed:
            message = f"{name} is already listed (as {removed[name.lower()]}; header names are case-insensitive)"
            errors.append(_error((remove_field, index), name, message + "; keep one"))
        removed.setdefault(name.lower(), name)
    if errors:
        raise ValidationError.from_exception_data(model, errors)


def check_request_id(headers: Any) -> None:
    """With the request-id middleware, X-Request-ID is the middleware's: a rule naming it would be a
    second entry for one header."""
    errors: list[InitErrorDetails] = []
    for path, rules in ((("headers",), headers), (("headers", "upstream"), headers.upstream)):
        for name in rules.set:
            if name.lower() == REQUEST_ID_HEADER.lower():
                errors.append(_error((*path, "set", name, "[key]"), name, _REQUEST_ID_CONFLICT.format(name=name)))
        for index, name in enumerate(rules.remove):
            if name.lower() == REQUEST_ID_HEADER.lower():
                errors.append(_error((*path, "remove", index), name, _REQUEST_ID_CONFLICT.format(name=name)))
    if errors:
        raise ValidationError.from_exception_data("RouteSpec", errors)


_REQUEST_ID_CONFLICT = (
    "{name} is set by the request-id middleware of this route (on the response and on the upstream request); "
    "remove it here or remove the middleware"
)


# --- Authentik groups ---------------------------------------------------------------------------

# Authentik sends a user's groups in one header, separated by '|'; the renderer matches each required
# group as a whole item of that list. An empty or blank name, or one holding the separator, would
# match users who are not in the group (or in no group at all), so the grammar leaves them out:
# no '|', no control characters, no braces, no whitespace at either end (Unicode spaces spelt out,
# so ECMA-262 and Python read the class alike).
_SPACES = r"\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_GROUP_EDGE = r"[^\x00-\x20\x7f{}|" + _SPACES + "]"
_GROUP_INSIDE = r"[^\x00-\x1f\x7f{}|]"
GROUP_NAME_PATTERN = f"^{_GROUP_EDGE}({_GROUP_INSIDE}*{_GROUP_EDGE})?$"
_GROUP_NAME = re.compile(GROUP_NAME_PATTERN[:-1] + r"\Z")


def check_group_name(value: str) -> str:
    if _GROUP_NAME.match(value):
        return value
    if not value.strip() or not value.strip(_SPACES.encode().decode("unicode_escape")):
        problem = "is empty or only whitespace; it would let in users who are in no group"
    elif "|" in value:
        problem = "holds '|', which separates the groups Authentik sends; no group name can be matched with it"
    elif re.search(r"[\x00-\x1f\x7f{}]", value):
        problem = "holds a control character or a brace"
    else:
        problem = "starts or ends with whitespace, which Authentik's header would never carry"
    raise PydanticCustomError("hecate", f"group name {value!r} {problem}")
