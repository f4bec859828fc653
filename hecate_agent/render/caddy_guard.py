"""The last look at rendered Caddy JSON before anything can be sent: defence in depth.

The spec types already keep braces out of every field a spec author writes, and
the renderer refuses resolved values holding one. This walk does not trust
either: Caddy expands `{…}` placeholders in most strings (headers, dial
addresses, matchers), so any brace in the output that is not one of the
renderer's own placeholders is refused, naming the object and the field, never
the text (it may hold a secret). It also collects every `@id`, so two objects
with one id (Caddy would silently keep one of them) are refused as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from hecate_agent.spec.headers import AUTHENTIK_HEADERS

# Every placeholder the renderer writes itself, and nothing else.
OWN_PLACEHOLDERS = frozenset(
    {
        "{http.request.host}",
        "{http.request.uri}",
        "{http.request.uuid}",
        "{http.request.method}",
        "{http.request.remote.host}",
        *(f"{{http.reverse_proxy.header.{name}}}" for name in AUTHENTIK_HEADERS.values()),
    }
)
_OWN = re.compile("|".join(re.escape(p) for p in sorted(OWN_PLACEHOLDERS, key=len, reverse=True)))


def _has_foreign_brace(text: str) -> bool:
    if "{" not in text and "}" not in text:
        return False
    rest = _OWN.sub("", text)
    return "{" in rest or "}" in rest


class Inspection:
    """What one walk over rendered JSON found: its @ids, and the fields holding foreign braces."""

    def __init__(self, ids: list[str], foreign: list[str]) -> None:
        self.ids = ids
        self.foreign = foreign


def _brace_in(text: str) -> bool:
    return ("{" in text or "}" in text) and text not in OWN_PLACEHOLDERS and _has_foreign_brace(text)


def inspect(node: Any) -> Inspection:
    """One pass without building paths (it runs over every rendered route, so it is kept lean); only
    when a foreign brace turns up is the output walked again to name where."""
    ids: list[str] = []
    foreign = False
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is dict:
            for key, value in item.items():
                kind = type(value)
                if kind is str:
                    if key == "@id":
                        ids.append(value)
                    if ("{" in value or "}" in value) and _brace_in(value):
                        foreign = True
                elif kind is dict or kind is list:
                    push(value)
                if ("{" in key or "}" in key) and _brace_in(key):
                    foreign = True
        elif type(item) is list:
            for value in item:
                kind = type(value)
                if kind is str:
                    if ("{" in value or "}" in value) and _brace_in(value):
                        foreign = True
                elif kind is dict or kind is list:
                    push(value)
    return Inspection(ids, _foreign_fields(node, "") if foreign else [])


def _foreign_fields(node: Any, path: str) -> list[str]:
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _brace_in(key):
                found.append(f"{where} (a key)")
            found += _foreign_fields(value, where)
        return found
    if isinstance(node, list):
        return [f for index, value in enumerate(node) for f in _foreign_fields(value, f"{path}[{index}]")]
    if isinstance(node, str) and _brace_in(node):
        return [path or "(the value)"]
    return []


def brace_problems(owner: str, inspection: Inspection) -> list[str]:
    return [
        f"{owner}: the rendered field {where} holds '{{' or '}}' that the renderer did not write; Caddy would "
        "expand it as a placeholder, so nothing is sent. This is a defect of hecate-agent's checks: please report it"
        for where in inspection.foreign
    ]


def duplicate_id_problems(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for object_id in ids:
        if object_id in seen and object_id not in twice:
            twice.append(object_id)
        seen.add(object_id)
    return [
        f"two rendered objects would share the @id {object_id!r} (Caddy would silently keep one); nothing is sent. "
        "This is a defect of hecate-agent's id scheme: please report it"
        for object_id in twice
    ]
