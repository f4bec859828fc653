"""`plan`, `apply` and `rollback`: the operator's way into the engine.

`apply` is the daemon's reconcile (`Engine.reconcile`): the same validation,
guards, transaction, verification probes, last-known-good and status. What the
CLI adds is the review: show the plan, check a saved plan, ask before changing.

Exit codes (DESIGN.md): plan 0 no changes / 2 changes / 1 error; apply 0 applied
or nothing to do / 1 failed and rolled back / 3 failed and the rollback failed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hecate_agent.runtime.commands import fail, settings_of

if TYPE_CHECKING:
    from hecate_agent.engine.reconcile import Engine, Result
    from hecate_agent.engine.transaction import Prepared
    from hecate_agent.errors import SpecProblem
    from hecate_agent.settings import AgentSettings
    from hecate_agent.spec.loader import DesiredState, SourceFile

PLAN_NO_CHANGES, PLAN_CHANGES, PLAN_ERROR = 0, 2, 1
SAVED_PLAN_KEY = "hecatePlan"


def _specs_path(path: Path | None, settings: AgentSettings) -> Path:
    if path is not None:
        return path
    if settings.source.directory is not None:
        return settings.source.directory
    fail("no PATH given and no source.directory in the agent settings; pass the spec folder")


def read_folder(path: Path, *, describe: bool = True) -> tuple[list[SourceFile], list[SpecProblem], str]:
    """A spec folder's files, the problems reading it, and its revision (Git's, or a content hash;
    `describe=False`: the content hash only, without asking Git)."""
    from hecate_agent.sources import git
    from hecate_agent.sources.directory import read_directory
    from hecate_agent.spec.loader import snapshot_digest

    files, problems = read_directory(path)
    return files, problems, (git.describe(path) if describe else None) or f"sha256:{snapshot_digest(files)}"


def load_folder_or_exit(
    path: Path, *, describe: bool = True, workers: int = 1
) -> tuple[list[SourceFile], DesiredState, str]:
    """A spec folder read and validated: its files, desired state and revision; on any problem,
    every problem is printed (text) and the command exits 1. The CLI's one way to load a folder.
    `workers` > 1 parses big folders in forked workers (one-shot commands only, never the daemon)."""
    from hecate_agent.report import render_text
    from hecate_agent.spec.loader import load_specs

    files, problems, revision = read_folder(path, describe=describe)
    loaded = load_specs(files, workers=workers)
    found = sorted(problems + loaded.problems)
    if found or loaded.state is None:
        sys.stderr.write(render_text(found, loaded.counts, str(path)))
        sys.exit(PLAN_ERROR)
    return files, loaded.state, revision


def _exit_invalid(result: Result, where: str) -> None:
    from hecate_agent.report import render_text

    sys.stderr.write(render_text(result.problems, {}, where))
    sys.exit(PLAN_ERROR)


def _valid(
    engine: Engine, files: list[SourceFile], problems: list[SpecProblem], revision: str, where: str
) -> DesiredState:
    state, refused = engine.validate(revision, files, problems)
    if state is None:
        assert refused is not None
        _exit_invalid(refused, where)
    assert state is not None
    return state


def _print_plan(plan: Any, output_format: str) -> None:
    from hecate_agent.plan_report import RENDERERS, render_text
    from hecate_agent.redaction import scrub

    # The plan already hides changed secret fields; this is the belt to those braces.
    if output_format == "text":
        sys.stdout.write(scrub(render_text(plan, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ)))
    else:
        sys.stdout.write(scrub(RENDERERS[output_format](plan)))


def _engine(settings: AgentSettings) -> Engine:
    from hecate_agent.engine.reconcile import Engine
    from hecate_agent.engine.transaction import Node

    return Engine(Node.from_settings(settings))


def _fail_with(result: Result) -> None:
    """Exit as the outcome says (nothing for success)."""
    from hecate_agent.engine.outcomes import Outcome
    from hecate_agent.engine.transaction import EXIT_FAILED, EXIT_ROLLBACK_FAILED

    if result.outcome is Outcome.FAILED:
        fail(
            f"{result.error}\nThe node may be half-applied: check Caddy and Nginx before anything else.",
            EXIT_ROLLBACK_FAILED,
        )
    if result.outcome in (Outcome.ROLLED_BACK, Outcome.REFUSED):
        fail(f"{result.error}\nEverything was put back as it was.", EXIT_FAILED)
    if result.outcome is Outcome.BLOCKED:
        fail("cannot render for this node:\n  " + "\n  ".join(result.details))
    if not result.succeeded:
        fail(str(result.error or result.outcome))


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--against", "against", metavar="REV", help="Compare with a Git revision instead of the live proxies.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for `apply FILE`.")
@click.pass_context
def plan(ctx: click.Context, path: Path | None, against: str | None, output_format: str, out: Path | None) -> None:
    """Show what applying PATH would change. Exit 0 no changes, 2 changes, 1 error."""
    if against is not None:
        _offline_plan(path or Path("."), against, output_format)
        return
    settings = settings_of(ctx)
    folder = _specs_path(path, settings)
    files, problems, revision = read_folder(folder)
    engine = _engine(settings)
    try:
        state = _valid(engine, files, problems, revision, str(folder))
        prepared, refused = engine.prepare(state, revision)
    finally:
        engine.node.close()
    if refused is not None:
        _fail_with(refused)
    assert prepared is not None
    _print_plan(prepared.plan, output_format)
    if out is not None:
        _save_plan(out, prepared, files)
        click.echo(f"Saved the plan to {out}; apply it with: hecate-agent apply {out}", err=True)
    sys.exit(PLAN_CHANGES if prepared.plan.has_changes else PLAN_NO_CHANGES)


def _offline_plan(path: Path, against: str, output_format: str) -> None:
    from hecate_agent.plan import offline_plan
    from hecate_agent.render.bundle import spec_documents
    from hecate_agent.report import render_text
    from hecate_agent.sources import git
    from hecate_agent.spec.loader import load_specs

    _, head, revision = load_folder_or_exit(path)
    found = git.repository_of(path)
    if found is None:
        fail(f"{path} is not inside a Git work tree, so --against {against} has nothing to compare with")
    top, inside = found
    try:
        base_files, base_problems = git.read_tree(top, against, inside)
    except git.GitError as exc:
        fail(str(exc))
    base = load_specs(base_files)
    base.problems = sorted(base_problems + base.problems)
    if base.problems or base.state is None:
        sys.stderr.write(render_text(base.problems, base.counts, f"{against}"))
        fail(f"the specs at {against} do not validate, so there is no base to compare with")
    result = offline_plan(revision, against, spec_documents(head), spec_documents(base.state))
    _print_plan(result, output_format)
    sys.exit(PLAN_CHANGES if result.has_changes else PLAN_NO_CHANGES)


def _save_plan(out: Path, prepared: Prepared, files: list[SourceFile]) -> None:
    from hecate_agent.store.state import write_atomic

    saved = {
        SAVED_PLAN_KEY: 1,
        "revision": prepared.rendered.revision,
        "desiredFingerprint": prepared.rendered.fingerprint,
        "liveFingerprint": prepared.live.fingerprint,
        "lastApplied": prepared.last.revision if prepared.last else None,
        "plan": prepared.plan.to_dict(),
        # The specs, not the rendered config: `${VAR}` references stay unresolved in the file.
        "files": [{"path": f.path, "data": base64.b64encode(f.data).decode()} for f in files],
    }
    write_atomic(out, (json.dumps(saved, indent=2) + "\n").encode(), 0o600)


def _load_saved_plan(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get(SAVED_PLAN_KEY) == 1 else None


def saved_plan_moved(saved: dict[str, Any], prepared: Prepared) -> str | None:
    """Why a saved plan no longer describes what applying it would do (None: it still does)."""
    if prepared.rendered.fingerprint != saved["desiredFingerprint"]:
        return "the saved plan renders differently on this node now (settings or environment changed); plan again"
    if prepared.live.fingerprint != saved["liveFingerprint"]:
        return "the live proxies changed since the plan was made; the saved plan is stale, plan again"
    last = prepared.last.revision if prepared.last else None
    if "lastApplied" in saved and saved["lastApplied"] != last:
        return (
            f"the node applied {last or 'nothing'} since the plan was made "
            f"(then: {saved['lastApplied'] or 'nothing'}); the saved plan is stale, plan again"
        )
    return None


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-mass-delete", is_flag=True, help="Allow a plan that deletes most managed resources.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.pass_context
def apply(ctx: click.Context, target: Path | None, yes: bool, allow_mass_delete: bool, output_format: str) -> None:
    """Apply PATH (a spec folder) or a plan saved with `plan --out`. Exit 0 / 1 rolled back / 3 rollback failed."""
    from hecate_agent.engine.outcomes import Outcome
    from hecate_agent.spec.loader import SourceFile

    settings = settings_of(ctx)
    saved = _load_saved_plan(target) if target is not None else None
    problems: list[SpecProblem] = []
    if saved is not None:
        files = [SourceFile(f["path"], base64.b64decode(f["data"])) for f in saved["files"]]
        revision, where = str(saved["revision"]), str(target)
    else:
        folder = _specs_path(target, settings)
        files, problems, revision = read_folder(folder)
        where = str(folder)
    engine = _engine(settings)

    def review(prepared: Prepared) -> None:
        if saved is not None:
            moved = saved_plan_moved(saved, prepared)
            if moved:
                fail(moved)
        _print_plan(prepared.plan, output_format)
        if engine.node.store.suspension():
            click.echo("Note: automatic sync is suspended on this node; this manual apply goes ahead.", err=True)
        last = prepared.last
        in_sync = (
            not prepared.plan.has_changes and last is not None and last.fingerprint == prepared.rendered.fingerprint
        )
        if in_sync or yes or saved is not None:
            return
        if not sys.stdin.isatty():
            fail("refusing to apply without confirmation: no terminal to ask on. Pass --yes")
        click.confirm("Apply these changes to this node?", abort=True)

    try:
        result, _ = engine.reconcile(
            revision, files, problems, source="cli", review=review, allow_mass_delete=allow_mass_delete
        )
    finally:
        engine.node.close()
    if result.recovered:
        click.echo(f"Resolved an interrupted apply: {result.recovered}.", err=True)
    if result.outcome is Outcome.INVALID:
        _exit_invalid(result, where)
    _fail_with(result)
    applied = result.applied
    if applied is None or applied.outcome is Outcome.NOOP:
        click.echo("Nothing to do.")
        return
    click.echo(f"Applied {applied.revision} in {applied.seconds:.2f} s ({', '.join(applied.steps) or 'no-op'}).")


def _resolve_stored(given: str, stored: list[str]) -> str:
    from hecate_agent.runtime.revisions import RevisionError, resolve

    try:
        return resolve(given, stored, keep_unknown=True)
    except RevisionError as exc:
        fail(str(exc))


@click.command()
@click.argument("revision", required=False)
@click.option("--previous", is_flag=True, help="The snapshot before the last applied one.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def rollback(ctx: click.Context, revision: str | None, previous: bool, yes: bool) -> None:
    """Re-apply a stored snapshot (REV or --previous) and suspend automatic sync."""
    from hecate_agent.engine.reconcile import Result
    from hecate_agent.engine.transaction import (
        ApplyError,
        RollbackError,
        apply_prepared,
        outcome_of_error,
        prepare_rendered,
        recover,
        snapshot_rendered,
    )
    from hecate_agent.errors import HecateError

    if (revision is None) == (not previous):
        fail("give a revision or --previous (not both)")
    engine = _engine(settings_of(ctx))
    node = engine.node
    try:
        with node.store.lock():
            recover(node)
            if revision is not None:  # a unique prefix names a stored snapshot (ambiguous: refused)
                revision = _resolve_stored(revision, [s.revision for s in node.store.snapshots()])
            snapshot = node.store.find(revision, previous=previous)
            if snapshot is None:
                known = ", ".join(s.revision for s in node.store.snapshots()) or "none"
                fail(f"no stored snapshot for {revision or 'the previous revision'} (stored: {known})")
            prepared = prepare_rendered(node, snapshot_rendered(snapshot, node.caddy_settings))
            _print_plan(prepared.plan, "text")
            if not yes:
                if not sys.stdin.isatty():
                    fail("refusing to roll back without confirmation: no terminal to ask on. Pass --yes")
                click.confirm(f"Roll this node back to {snapshot.revision}?", abort=True)
            try:
                applied = apply_prepared(node, prepared, allow_mass_delete=True, source="rollback")
            except (ApplyError, RollbackError) as exc:
                failed = Result(outcome_of_error(exc), snapshot.revision, str(exc))
                engine.publish(failed)
                _fail_with(failed)
                return
            node.store.suspend(f"rolled back to {snapshot.revision}", by="rollback")
            engine.publish(Result(applied.outcome, snapshot.revision, applied=applied))
    except HecateError as exc:
        fail(str(exc))
    finally:
        node.close()
    click.echo(
        f"Rolled back to {snapshot.revision} ({applied.outcome}). Automatic sync is suspended: "
        "run `hecate-agent resume` once the config repository is fixed."
    )
