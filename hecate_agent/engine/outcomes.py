"""What a reconcile can end in, and what the node's phase then is. The one list of both.

`Outcome` values are the `lastAttempt.outcome` strings of the status document and
the `outcome` of history entries; `Phase` values are the status document's `phase`.
Both are `StrEnum`s, so they serialise as the strings the contract names.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    APPLIED = "applied"  # the revision is in place and verified
    NOOP = "noop"  # nothing to do: the proxies already run it
    RECOVERED = "recovered"  # an interrupted apply was resolved at start
    QUARANTINED = "quarantined"  # applied without the invalid files (kept at their last good version)
    ROLLED_BACK = "rolled_back"  # the apply or its verification failed; everything was put back
    FAILED = "failed"  # the apply failed and so did putting things back: look at the node
    REFUSED = "refused"  # a guard refused it before anything changed (mass deletion, force push, ports)
    INVALID = "invalid"  # the revision does not validate
    BLOCKED = "blocked"  # cannot be rendered for this node, or failed verification before: not retried
    SECRET_ERROR = "secret_error"  # secrets unavailable; nothing touched
    ERROR = "error"  # a proxy (or anything else) could not be reached or read; nothing touched
    HALTED = "halted"  # the fleet halted this revision
    WAITING = "waiting"  # waiting for a rollout slot
    ROLLOUT_ERROR = "rollout_error"  # rollout coordination unavailable
    # Outcomes of a reconcile that do not become a `lastAttempt`:
    PACED = "paced"  # an Nginx reload would come too soon after the last; retried shortly
    SUSPENDED = "suspended"  # automatic sync is suspended
    SOURCE_ERROR = "source_error"  # the source could not be read (status.sourceError says why)


class Phase(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    HALTED = "Halted"


#: The phase a last attempt leaves the node in (before suspension, source errors and drift).
PHASE_OF: dict[Outcome, Phase] = {
    Outcome.APPLIED: Phase.SYNCED,
    Outcome.NOOP: Phase.SYNCED,
    Outcome.RECOVERED: Phase.SYNCED,
    Outcome.QUARANTINED: Phase.DEGRADED,
    Outcome.ROLLED_BACK: Phase.DEGRADED,
    Outcome.FAILED: Phase.FAILED,
    Outcome.REFUSED: Phase.OUT_OF_SYNC,
    Outcome.INVALID: Phase.OUT_OF_SYNC,
    Outcome.BLOCKED: Phase.OUT_OF_SYNC,
    Outcome.SECRET_ERROR: Phase.DEGRADED,
    Outcome.ERROR: Phase.DEGRADED,
    Outcome.HALTED: Phase.HALTED,
    Outcome.WAITING: Phase.PROGRESSING,
    Outcome.ROLLOUT_ERROR: Phase.PROGRESSING,
}

#: Attempts after which the revision is in place.
SUCCEEDED = frozenset({Outcome.APPLIED, Outcome.NOOP, Outcome.RECOVERED})

#: Attempts that `status --fleet --wait-for` reports as a failure of the revision on that node
#: (transient ones — error, secret_error, waiting — are retried by the node, so it keeps waiting).
FAILED_OUTCOMES = frozenset(
    {Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.INVALID, Outcome.BLOCKED, Outcome.REFUSED, Outcome.HALTED}
)

#: Reconcile outcomes after which the node is ready to serve traffic (/readyz).
READY_OUTCOMES = frozenset(
    {Outcome.APPLIED, Outcome.NOOP, Outcome.INVALID, Outcome.BLOCKED, Outcome.SUSPENDED, Outcome.QUARANTINED}
)


def outcome_of(value: object) -> Outcome | None:
    """The Outcome a stored string names (None for unknown or missing: old or foreign documents)."""
    try:
        return Outcome(str(value))
    except ValueError:
        return None
