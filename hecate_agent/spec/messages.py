"""Turn pydantic's validation errors into messages a spec author can act on."""

from __future__ import annotations

import types as pytypes
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from hecate_agent.spec import templates, types

# What a pattern means, in words; pydantic would otherwise print the regex.
_PATTERN_MEANING: dict[str, str] = {
    types.DNS_LABEL_PATTERN: "a lowercase DNS label (a-z, 0-9, '-', at most 63 characters, "
    "not starting or ending with '-')",
    types.LABEL_KEY_PATTERN: "a label key (letters, digits, '.', '_', '/', '-')",
    types.PLAIN_TEXT_PATTERN: "plain text without line breaks, control characters or '{' / '}' "
    "(braces would be read by Caddy as placeholders such as {env.SECRET})",
    types.DOMAIN_PATTERN: "a host name such as 'app.example.com' or a wildcard '*.example.com'",
    types.DIAL_PATTERN: "'host:port' with a host name, IPv4 or [IPv6] address and a port 1-65535, e.g. '10.0.0.5:8080'",
    types.HEADER_NAME_PATTERN: "an HTTP header name (letters, digits and !#$%&'*+.^_`|~-, no spaces)",
    types.HEADER_VALUE_PATTERN: "a header value without line breaks, control characters or '{' / '}' "
    "(braces would be read by Caddy as placeholders such as {env.SECRET})",
    types.HTTP_PATH_PATTERN: "an absolute path starting with '/', without spaces, control characters, '?', '#', "
    "'{' or '}', and with '%' only as a %XX escape (Caddy's URL parser refuses the rest)",
    templates.TEMPLATE_PATTERN: "text whose '$' starts a reference, '${NAME}' (environment) or '${vault:path#key}' "
    "('$$' for a literal '$'); braces only inside a reference",
    templates.UPSTREAM_HEADER_VALUE_PATTERN: "a header value without line breaks or control characters, whose braces "
    "only appear in '${NAME}' or '${vault:path#key}' references (other braces would be read by Caddy as "
    "placeholders such as {env.SECRET})",
    r"^[0-9A-Fa-f:.]+$": "an IP address such as '0.0.0.0', '127.0.0.1' or '::'",
    types.STREAM_SERVER_PATTERN: "a server 'host:port' (host name, IPv4 or [IPv6] address; with a preset, "
    "the host alone), without spaces, ';' or braces",
    types.ATTRIBUTE_NAME_PATTERN: "a user attribute name such as 'employee_id' (a letter or '_', then letters, "
    "digits, '_', '.' or '-', at most 64 characters)",
}

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "dict_type": "a mapping (key: value)",
    "list_type": "a list",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def describe_input(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = "boolean" if isinstance(value, bool) else type(value).__name__
    return f"{kind} {text}"


def _looks_like_int(text: str) -> bool:
    digits = text.strip().lstrip("+-")
    return digits.isascii() and digits.isdigit()


def _meant_field(given: str, allowed: list[str]) -> str | None:
    """The allowed field `given` is another spelling of (`max_fails`, `MaxFails`, `max-fails` → `maxFails`)."""
    folded = given.replace("_", "").replace("-", "").casefold()
    return next((name for name in allowed if name.casefold() == folded and name != given), None)


def friendly_message(error: ErrorDetails, allowed_fields: list[str] | None = None) -> str:
    """One sentence: what is wrong, what was expected, and what to do."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    given = error.get("input")
    if kind == "hecate":
        return str(error["msg"])
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        loc = error.get("loc") or ()
        meant = _meant_field(str(loc[-1]), allowed_fields or []) if loc else None
        guess = f" (did you mean {meant!r}?)" if meant else ""
        hint = f"; allowed here: {', '.join(allowed_fields)}" if allowed_fields else ""
        return f"unknown field{guess}{hint}. Fix the spelling or remove it"
    if kind in _TYPE_NAMES:
        expected = _TYPE_NAMES[kind]
        advice = ""
        if kind == "string_type" and isinstance(given, int | float | bool):
            advice = "; put the value in quotes"
        elif kind == "int_type" and isinstance(given, str) and _looks_like_int(given):
            advice = "; remove the quotes"
        return f"expected {expected}, got {describe_input(given)}{advice}"
    if kind == "string_pattern_mismatch":
        meaning = _PATTERN_MEANING.get(str(ctx.get("pattern")), f"text matching {ctx.get('pattern')}")
        return f"{describe_input(given)} is not {meaning}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {describe_input(given)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "less_than_equal": f"at most {ctx.get('le')}",
            "greater_than": f"more than {ctx.get('gt')}",
            "less_than": f"less than {ctx.get('lt')}",
        }[kind]
        return f"{describe_input(given)} is out of range; must be {bound}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"has more than the {ctx.get('max_length')} items or characters allowed"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters"
    return f"{error['msg']} (got {describe_input(given)})"


def allowed_fields(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """Field names (as written in YAML) accepted by the model found at `path`."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        target = model_inside(current)
        if target is None:
            return []
        match = next((f for n, f in target.model_fields.items() if (f.alias or n) == part), None)
        if match is None:
            return []
        current = match.annotation
    target = model_inside(current)
    if target is None:
        return []
    return sorted(f.alias or n for n, f in target.model_fields.items())


def model_inside(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`, `list[X]` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, pytypes.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = model_inside(arg)
            if found is not None:
                return found
    return None
