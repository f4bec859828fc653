"""Error types shared by every layer.

`SpecProblem` is a value: one thing wrong with the input, positioned for a
person. `HecateError` is the only exception type our public functions raise on
bad input; anything else escaping is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


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
