"""Revisions as operators type them (issue 13 #4, #5)."""

from __future__ import annotations

import pytest

from hecate_agent.runtime.revisions import RevisionError, fleet_revisions, resolve, wait_verdict

A = "0123456789abcdef0123456789abcdef01234567"
B = "0123456789abffff0123456789abcdef01234567"
C = "fedcba9876543210fedcba9876543210fedcba98"


def test_a_unique_prefix_names_the_revision() -> None:
    assert resolve(A[:12], [A, C]) == A  # what `status --fleet` prints
    assert resolve(C[:4], [A, B, C]) == C
    assert resolve(A, [A, B]) == A  # the whole name, even when it prefixes nothing else


def test_an_ambiguous_prefix_is_refused_with_its_candidates() -> None:
    with pytest.raises(RevisionError) as caught:
        resolve("0123456789ab", [A, B, C])
    assert f"is ambiguous: it starts {A}, {B}; give more characters" in str(caught.value)


def test_a_too_short_prefix_is_refused() -> None:
    with pytest.raises(RevisionError, match="too short: give at least 4 characters"):
        resolve("012", [A])


def test_an_unknown_prefix_is_kept_or_refused() -> None:
    assert resolve("abcdef12", [A], keep_unknown=True) == "abcdef12"  # the nodes may not have it yet
    with pytest.raises(RevisionError, match=f"no known revision starts with 'abcdef12' \\(known: {A}\\)"):
        resolve("abcdef12", [A])


def test_the_fleet_names_its_revisions() -> None:
    nodes = [{"appliedRevision": A, "desiredRevision": B, "lastAttempt": {"revision": C}}, {"appliedRevision": None}]
    assert fleet_revisions(nodes) == {A, B, C}


def halted(node: str, revision: str) -> dict:
    return {"node": node, "appliedRevision": C, "lastAttempt": {"revision": revision, "outcome": "halted"}}


def test_a_lifted_halt_is_waited_for_not_failed() -> None:
    """`--wait-for` right after `rollout resume`: the nodes' statuses still say halted until they sync."""
    nodes = [halted("edge-1", A), {"node": "edge-2", "appliedRevision": A, "lastAttempt": {"revision": A}}]
    failing = ("halted", "rolled_back")
    done, failed = wait_verdict(nodes, A, halts={A}, failed_outcomes=failing)
    assert [n["node"] for n in failed] == ["edge-1"] and [n["node"] for n in done] == ["edge-2"]
    done, failed = wait_verdict(nodes, A, halts=set(), failed_outcomes=failing)  # resumed
    assert failed == [] and [n["node"] for n in done] == ["edge-2"]
    rolled_back = [{"node": "edge-3", "lastAttempt": {"revision": A, "outcome": "rolled_back"}}]
    assert wait_verdict(rolled_back, A, halts=set(), failed_outcomes=failing)[1] == rolled_back
