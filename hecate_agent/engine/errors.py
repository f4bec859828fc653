"""How an apply fails: refused before anything changed, rolled back, or not even that."""

from __future__ import annotations

from hecate_agent.errors import HecateError

EXIT_FAILED = 1
EXIT_ROLLBACK_FAILED = 3


class ApplyError(HecateError):
    """The apply failed; every target was put back as it was (exit 1). `step` names where."""

    exit_code = EXIT_FAILED

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(f"{step}: {message}")


class ConflictError(ApplyError):
    """A target's precondition failed (Caddy's If-Match): it changed since it was read; nothing changed."""


class RefusedError(ApplyError):
    """A guard or a target's preflight refused the plan before anything changed."""


class RollbackError(HecateError):
    """The apply failed and so did putting things back: the operator must look (exit 3)."""

    exit_code = EXIT_ROLLBACK_FAILED
