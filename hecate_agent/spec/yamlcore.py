"""YAML 1.2 core-schema resolution of plain scalars, with integers bounded where they are read."""

from __future__ import annotations

import math
import re
from typing import Any

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})
_INT_DEC = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")
# A plain scalar that can only be a string: starts with a letter and is not one
# of the keywords above. Checked first because it is by far the common case.
SURELY_STR = re.compile(r"[A-Za-z_/][^\s]*\Z")
KEYWORDS = frozenset(_NULLS | _TRUES | _FALSES)
# No spec field holds an integer anywhere near this; refusing larger ones where they are read keeps
# every later step (range checks, messages that print the value) away from Python's 4,300-digit
# str<->int conversion limit, which raises instead of converting.
MAX_INTEGER = 2**63 - 1


class IntegerTooLargeError(ValueError):
    pass


def resolve_plain(value: str) -> Any:
    """YAML 1.2 core schema resolution of a plain scalar."""
    if SURELY_STR.match(value) and value not in KEYWORDS:
        return value
    if value in _NULLS:
        return None
    if value in _TRUES:
        return True
    if value in _FALSES:
        return False
    if _INT_DEC.match(value):
        return _bounded(value.lstrip("+-").lstrip("0"), 10, negative=value.startswith("-"))
    if _INT_OCT.match(value):
        return _bounded(value[2:].lstrip("0"), 8)
    if _INT_HEX.match(value):
        return _bounded(value[2:].lstrip("0"), 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.match(value):
        return math.nan
    return value


def _bounded(digits: str, base: int, *, negative: bool = False) -> int:
    """An integer within +/-MAX_INTEGER; the digit count is checked before converting anything."""
    if len(digits) > 22:  # 2^63 has 19 decimal, 16 hex and 21 octal digits
        raise IntegerTooLargeError
    number = int(digits or "0", base)
    if number > MAX_INTEGER:
        raise IntegerTooLargeError
    return -number if negative else number
