"""Revisions as operators type them: unique prefixes, Git-style.

`status --fleet` prints the first 12 characters of a revision; every command that
takes a revision (`rollout resume`, `status --fleet --wait-for`, `rollback`)
accepts any unique prefix of at least MIN_PREFIX characters, resolved against
what is known: the halts in Consul, the revisions the nodes publish, and this
node's stored snapshots. An ambiguous prefix is refused with its candidates; a
prefix that matches nothing known is kept as typed where that makes sense (a
node may not have fetched the revision yet) and refused where it does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hecate_agent.errors import HecateError

MIN_PREFIX = 4


class RevisionError(HecateError):
    pass


def resolve(given: str, known: Iterable[str], *, keep_unknown: bool = False) -> str:
    """The one known revision `given` names (itself, or the only one it is a prefix of).

    Unknown: `given` itself when `keep_unknown`, else RevisionError. Too short or ambiguous: RevisionError."""
    given = given.strip()
    revisions = {r for r in known if r}
    if given in revisions:
        return given
    if len(given) < MIN_PREFIX:
        raise RevisionError(
            f"revision {given!r} is too short: give at least {MIN_PREFIX} characters "
            "(as `hecate-agent status --fleet` shows them)"
        )
    candidates = sorted(r for r in revisions if r.startswith(given))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        shown = ", ".join(candidates[:10]) + (f" (and {len(candidates) - 10} more)" if len(candidates) > 10 else "")
        raise RevisionError(f"revision {given!r} is ambiguous: it starts {shown}; give more characters")
    if keep_unknown:
        return given
    listed = ", ".join(sorted(revisions)[:10]) or "none"
    raise RevisionError(f"no known revision starts with {given!r} (known: {listed})")


def fleet_revisions(nodes: Iterable[dict[str, Any]]) -> set[str]:
    """Every revision the nodes' published statuses name."""
    found: set[str] = set()
    for node in nodes:
        attempt = node.get("lastAttempt") or {}
        for value in (node.get("appliedRevision"), node.get("desiredRevision"), attempt.get("revision")):
            if isinstance(value, str) and value:
                found.add(value)
    return found


def wait_verdict(
    nodes: list[dict[str, Any]], revision: str, halts: Iterable[str], failed_outcomes: Iterable[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For `status --fleet --wait-for`: (the nodes that applied `revision`, the nodes it failed on).

    A node that still reports "halted" for a revision whose halt is gone from Consul (an operator ran
    `rollout resume`) has not failed: it takes the revision on its next sync, so it is waited for."""
    failing, halted = set(failed_outcomes), set(halts)
    done = [n for n in nodes if str(n.get("appliedRevision") or "").startswith(revision)]
    failed = []
    for node in nodes:
        attempt = node.get("lastAttempt") or {}
        attempted = str(attempt.get("revision") or "")
        if not attempted.startswith(revision) or attempt.get("outcome") not in failing:
            continue
        if attempt.get("outcome") == "halted" and attempted not in halted:
            continue  # the halt was lifted after this status was written
        failed.append(node)
    return done, failed


def resolve_in_fleet(publisher: Any, given: str) -> str:
    """`given` resolved against the fleet's halts and published revisions (one Consul read each);
    an unknown prefix is kept (the nodes may not have it yet). Consul errors propagate."""
    from hecate_agent.runtime.rollout import halted_revisions

    known = fleet_revisions(publisher.fleet()) | halted_revisions(publisher.client, publisher.prefix)
    return resolve(given, known, keep_unknown=True)
