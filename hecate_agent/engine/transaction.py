"""The apply transaction over the node's targets: one code path for the CLI and the daemon.

guards (mass deletion) → each target's preflight → journal (every target's undo
record) → apply the targets that change, in ascending order (DNS 10, Authentik 20,
Caddy 30, Nginx 40), each under its own precondition → the *removals* of the
targets that defer them (`Retiring.retire`, engine/fleetwide.py), in descending
order: a removed route leaves Caddy before Authentik deletes its provider and DNS
its records → journal step
`applied` → verification probes (engine/verify.py) → *then* record the
last-known-good → each target's commit → clear the journal. Any failure, a failed
probe included, restores every target already changed, in reverse order; if that
fails too the operator is told exactly what is left (exit 3).

A crash at any point leaves a journal that the next start resolves to one whole
revision (`recover`): the new one if every target holds it *and* its probes (kept
in the journal) pass again, else the state before it. An unverified revision is
never recorded as last-known-good.

Test hook: with `HECATE_TEST_PAUSE_AT=<step>` in the environment, the apply stops
at that journal step (after writing it), writes the step's name to
`<stateDir>/test-paused-at` and sleeps, so a test can SIGKILL it exactly there.
Steps: prepared, <target name> (before that target changes), retire:<target name> (before
its removals), applied, verified.
Not for production use.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hecate_agent import fastjson
from hecate_agent.engine.errors import EXIT_FAILED, EXIT_ROLLBACK_FAILED, ApplyError, RefusedError, RollbackError
from hecate_agent.engine.fleetwide import Retiring
from hecate_agent.engine.node import Node
from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.ports import StateStorePort, Target
from hecate_agent.engine.prepare import (
    LiveState,
    Prepared,
    cycle_collector_paused,
    prepare,
    prepare_rendered,
    read_live,
    resources_of,
    snapshot_rendered,
)
from hecate_agent.engine.verify import Probe
from hecate_agent.errors import HecateError
from hecate_agent.plan import Plan
from hecate_agent.store.migrations import migrate_journal
from hecate_agent.store.state import Snapshot, utc_now

__all__ = [
    "EXIT_FAILED",
    "EXIT_ROLLBACK_FAILED",
    "ApplyError",
    "ApplyResult",
    "LiveState",
    "Node",
    "Prepared",
    "RefusedError",
    "RollbackError",
    "apply_prepared",
    "cycle_collector_paused",
    "mass_delete_check",
    "outcome_of_error",
    "prepare",
    "prepare_rendered",
    "read_live",
    "recover",
    "resources_of",
    "snapshot_rendered",
]

PAUSE_VARIABLE = "HECATE_TEST_PAUSE_AT"  # test-only: see the module docstring
MANAGED_KINDS = ("Route", "AuthPolicy", "Stream")


@dataclass
class ApplyResult:
    outcome: Outcome  # applied | noop
    revision: str
    seconds: float
    plan: Plan
    steps: list[str] = field(default_factory=list)


def mass_delete_check(plan: Plan, max_percent: int) -> str | None:
    managed = [c for c in plan.changes if c.kind in MANAGED_KINDS and c.action != "create"]
    deleted = [c for c in managed if c.action == "delete"]
    if not managed or not deleted:
        return None
    share = 100 * len(deleted) / len(managed)
    if share <= max_percent:
        return None
    return (
        f"the plan deletes {len(deleted)} of {len(managed)} managed resources ({share:.0f}% > "
        f"sync.maxDeletePercent {max_percent}%); an emptied or mis-merged repository must not take the node "
        "down. If this is intended, apply with --allow-mass-delete"
    )


class Transaction:
    """One apply of a prepared revision over the node's targets, with rollback."""

    def __init__(self, node: Node, prepared: Prepared) -> None:
        self.node = node
        self.prepared = prepared
        self.changing = [t for t in node.targets if prepared.needed.get(t.name)]  # ascending order
        self.touched: list[Target] = []
        self.steps: list[str] = []
        self.journal: dict[str, Any] = {}
        self.journal_file: JournalFile | None = None

    def run(self) -> None:
        store, prepared = self.node.store, self.prepared
        for target in self.changing:
            problems = target.preflight(prepared)
            if problems:
                raise RefusedError(f"{target.name} preflight", "; ".join(problems))
        self.journal = {
            "revision": prepared.rendered.revision,
            "startedAt": utc_now(),
            "pid": os.getpid(),
            "snapshot": self.snapshot().to_dict(),
            "probes": [p.to_dict() for p in prepared.probes],
            "targets": {t.name: t.begin(prepared) for t in self.changing},
        }
        journal = self.journal_file = JournalFile(store, self.journal)
        journal.step("prepared")
        try:
            for target in self.changing:
                self.steps.append(target.name)
                journal.step(target.name)
                self.touched.append(target)
                target.apply(prepared, self.journal["targets"][target.name], journal.save)
            for target in reversed(self.changing):  # removals: the later targets have let go
                if isinstance(target, Retiring):
                    self.steps.append(f"retire:{target.name}")
                    journal.step(f"retire:{target.name}")
                    target.retire(prepared, self.journal["targets"][target.name], journal.save)
            self.steps.append("verify")
            journal.step("applied")
            failures = self.node.verifier(prepared.probes)
            if failures:
                raise ApplyError("verify", "verification failed: " + "; ".join(failures))
            journal.step("verified")
        except HecateError as exc:
            error = (
                exc if isinstance(exc, ApplyError) else ApplyError(self.steps[-1] if self.steps else "apply", str(exc))
            )
            self.rollback(error)
            raise error from None

    def snapshot(self) -> Snapshot:
        rendered = self.prepared.rendered
        fields: dict[str, Any] = {}
        parts: dict[str, Any] = {}
        for target in self.node.targets:
            part = dict(target.to_snapshot(self.prepared))
            parts.update(part.pop("parts", None) or {})  # targets added later: one entry each, by name
            fields.update(part)
        if parts:
            fields["parts"] = parts
        return Snapshot(
            revision=rendered.revision,
            applied_at=utc_now(),
            fingerprint=rendered.fingerprint,
            specs=rendered.specs,
            plan_summary=self.prepared.plan.summary(),
            sensitive=_present(self.prepared.secrets, self.prepared.desired),
            **fields,
        )

    def rollback(self, cause: ApplyError) -> None:
        """Restore every target already touched, newest first."""
        problems = []
        for target in reversed(self.touched):
            try:
                target.restore(self.journal["targets"][target.name])
            except (HecateError, OSError) as exc:
                problems.append(f"{target.name}: {exc}")
        if problems:
            raise RollbackError(f"{cause}; the rollback failed too: " + " | ".join(problems))
        self.node.store.clear_journal()


def _present(secrets: frozenset[str], config: Any) -> list[str]:
    """The secrets this config holds (the registry grows with rotations; a snapshot need not)."""
    if not secrets:
        return []
    text = json.dumps(config)
    return sorted(s for s in secrets if json.dumps(s)[1:-1] in text)


def apply_prepared(
    node: Node, prepared: Prepared, *, allow_mass_delete: bool = False, source: str = "cli"
) -> ApplyResult:
    """Apply a prepared plan (the caller holds the lock). Raises ApplyError / RollbackError."""
    with cycle_collector_paused():
        return _apply_prepared(node, prepared, allow_mass_delete=allow_mass_delete, source=source)


def _apply_prepared(node: Node, prepared: Prepared, *, allow_mass_delete: bool, source: str) -> ApplyResult:
    started = time.monotonic()
    plan, last = prepared.plan, prepared.last
    if not prepared.changes_anything and last is not None and last.fingerprint == prepared.rendered.fingerprint:
        result = ApplyResult(Outcome.NOOP, prepared.rendered.revision, time.monotonic() - started, plan)
        _history(node, result, source)
        return result
    if not allow_mass_delete:
        refusal = mass_delete_check(plan, node.settings.sync.max_delete_percent)
        if refusal:
            error = RefusedError("guard", refusal)
            _history(node, None, source, error=error, revision=prepared.rendered.revision)
            raise error
    transaction = Transaction(node, prepared)
    try:
        transaction.run()
    except (ApplyError, RollbackError) as exc:
        _history(node, None, source, error=exc, revision=prepared.rendered.revision)
        raise
    node.store.record(transaction.snapshot())  # verified: now, and only now, the last-known-good
    node.store.clear_journal()
    for target in transaction.changing:
        target.commit(transaction.journal["targets"][target.name])
    result = ApplyResult(
        Outcome.APPLIED, prepared.rendered.revision, time.monotonic() - started, plan, transaction.steps
    )
    _history(node, result, source)
    return result


def _history(
    node: Node, result: ApplyResult | None, source: str, *, error: HecateError | None = None, revision: str = ""
) -> None:
    if result is not None:
        entry = {
            "at": utc_now(),
            "revision": result.revision,
            "outcome": result.outcome,
            "seconds": round(result.seconds, 3),
            "summary": result.plan.summary(),
            "source": source,
        }
    else:
        entry = {
            "at": utc_now(),
            "revision": revision,
            "outcome": outcome_of_error(error),
            "error": str(error),
            "source": source,
        }
    # A full or read-only state dir must not turn a good apply into a failure.
    with contextlib.suppress(HecateError):
        node.store.append_history(entry)


def outcome_of_error(error: BaseException | None) -> Outcome:
    """The outcome an exception out of `apply_prepared` stands for."""
    if isinstance(error, RollbackError):
        return Outcome.FAILED
    if isinstance(error, RefusedError):
        return Outcome.REFUSED
    if isinstance(error, ApplyError):
        return Outcome.ROLLED_BACK
    return Outcome.ERROR


class JournalFile:
    """The journal of one apply, on disk. Its body (megabytes at 10,000 routes: the new snapshot
    and the old Caddy config) is encoded once per change of content; a new step only rewrites
    the file with the step's name. Honours the test-only pause hook (see the module docstring)."""

    def __init__(self, store: StateStorePort, body: dict[str, Any]) -> None:
        self.store = store
        self.body = body
        self._encoded: str | None = None

    def save(self) -> None:
        """The content changed (a target's record): encode it again and write it."""
        self._encoded = None
        self._write()

    def step(self, name: str) -> None:
        self.body["step"] = name
        self._write()
        if os.environ.get(PAUSE_VARIABLE) == name:
            (self.store.root / "test-paused-at").write_text(name)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # a test kills us here
                time.sleep(0.2)

    def _write(self) -> None:
        if self._encoded is None:
            content = {k: v for k, v in self.body.items() if k != "step"}
            self._encoded = fastjson.dumps(content, sort_keys=True).decode()
        step = json.dumps(self.body.get("step"))
        self.store.write_journal_text(f'{self._encoded[:-1]},"step":{step}}}\n')


def recover(node: Node) -> str | None:
    """Resolve a journal left by a crash, to exactly one revision: the new one if every target holds
    it and its verification probes pass again (then, and only then, it is recorded as last-known-good),
    else the state before it, restored in reverse order."""
    journal = node.store.journal()
    if journal is None:
        return None
    journal = migrate_journal(journal)
    revision = journal["revision"]
    snapshot = Snapshot.from_dict(journal["snapshot"])
    records = journal["targets"]
    involved = [t for t in node.targets if t.name in records]
    entry: dict[str, Any] = {"at": utc_now(), "revision": revision, "source": "recovery"}
    try:
        live = read_live(node)
        whole = all(t.in_place(records[t.name], live.targets[t.name], snapshot) for t in involved)
        failures: list[str] = []
        if whole:
            for target in involved:
                target.finish(records[target.name])
            failures = node.verifier([Probe.from_dict(p) for p in journal.get("probes") or []])
        if whole and not failures:
            node.store.record(snapshot)
            outcome = f"completed revision {revision} (verified)"
            entry.update(outcome=Outcome.RECOVERED, detail=outcome)
        else:
            live = read_live(node)
            for target in reversed(involved):
                target.restore(records[target.name], live.targets[target.name])
            outcome = f"restored the state before revision {revision}"
            if failures:
                error = "verification failed: " + "; ".join(failures)
                outcome += f" ({error})"
                entry.update(outcome=Outcome.ROLLED_BACK, error=f"verify: {error}")
            else:
                entry.update(outcome=Outcome.RECOVERED, detail=outcome)
    except (HecateError, OSError) as exc:
        raise RollbackError(
            f"an interrupted apply of {revision} could not be resolved: {exc}. The journal is kept in "
            f"{node.store.root / 'journal.json'}; fix the proxy and run the agent again"
        ) from None
    node.store.clear_journal()
    node.store.append_history(entry)
    return outcome
