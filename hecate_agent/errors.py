"""Error types shared by every layer.

`SpecProblem` is a value: one thing wrong with the input, positioned for a
person. `HecateError` is the only exception type our public functions raise on
bad input; anything else escaping is a bug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 and C1 controls, DEL, and the characters that move or reorder text on a terminal or a CI log
# (line/paragraph separators, bidi overrides and isolates: "Trojan Source").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\n`, `\\u202e`): one problem
    is one line, and a crafted name cannot colour, erase or forge lines of a terminal or CI log."""
    if text.isprintable():
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One problem found in a spec repository.

    Ordered by file, then line and column, so a sorted list reads top to bottom.
    `line` and `column` are 1-based; 0 means "the whole file". `severity` is "error"
    (the specs are refused) or "warning" (a deprecated spelling, or something a node
    must be configured for; `validate` still passes).
    """

    file: str
    line: int
    column: int
    message: str
    kind: str = ""
    name: str = ""
    field: str = ""
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def subject(self) -> str:
        """`Kind/name` when known, else the kind alone, else empty."""
        if self.kind and self.name:
            return f"{self.kind}/{self.name}"
        return self.kind

    def to_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "kind": self.kind,
            "name": self.name,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class HecateError(Exception):
    """Base class for every error the agent raises on purpose."""
