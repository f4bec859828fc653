"""Operator commands that act on this node: plan, apply, status, history, rollback, suspend, resume.

Exit codes (DESIGN.md): plan 0 no changes / 2 changes / 1 error; apply 0 applied
or nothing to do / 1 failed and rolled back / 3 failed and the rollback failed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from hecate_agent.engine.transaction import Node, Prepared
    from hecate_agent.settings import AgentSettings
    from hecate_agent.spec.loader import SourceFile
    from hecate_agent.store.consul_status import ConsulPublisher

PLAN_NO_CHANGES, PLAN_CHANGES, PLAN_ERROR = 0, 2, 1
SAVED_PLAN_KEY = "hecatePlan"


def fail(message: str, code: int = 1) -> NoReturn:
    from hecate_agent.redaction import scrub

    click.echo(f"error: {scrub(message)}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> AgentSettings:
    from hecate_agent.settings import SettingsError, load_settings

    try:
        return load_settings(ctx.find_root().obj)
    except SettingsError as exc:
        fail(f"invalid agent settings:\n{exc}")


def _node(ctx: click.Context) -> Node:
    from hecate_agent.engine.transaction import Node

    return Node.from_settings(_settings(ctx))


def _specs_path(path: Path | None, settings: AgentSettings) -> Path:
    if path is not None:
        return path
    if settings.source.directory is not None:
        return settings.source.directory
    fail("no PATH given and no source.directory in the agent settings; pass the spec folder")


def _read_specs(path: Path) -> tuple[list[SourceFile], str]:
    """Files and revision of a spec folder; exits 1 with every problem if they do not validate."""
    from hecate_agent.report import render_text
    from hecate_agent.sources import git
    from hecate_agent.sources.directory import read_directory
    from hecate_agent.spec.loader import load_specs, snapshot_digest

    files, problems = read_directory(path)
    result = load_specs(files)
    problems = sorted(problems + result.problems)
    if problems:
        sys.stderr.write(render_text(problems, result.counts, str(path)))
        sys.exit(1)
    revision = git.describe(path) or f"sha256:{snapshot_digest(files)}"
    return files, revision


def _prepare(node: Node, files: list[SourceFile], revision: str) -> Prepared:
    from hecate_agent.engine.transaction import prepare
    from hecate_agent.errors import HecateError
    from hecate_agent.render.caddy import RenderError
    from hecate_agent.spec.loader import load_specs

    state = load_specs(files).state
    if state is None:
        fail("the specs did not validate")
    try:
        return prepare(node, state, revision)
    except RenderError as exc:
        fail("cannot render for this node:\n  " + "\n  ".join(exc.problems))
    except HecateError as exc:
        fail(str(exc))


def _print_plan(plan: Any, output_format: str) -> None:
    from hecate_agent.plan_report import RENDERERS, render_text
    from hecate_agent.redaction import scrub

    # The plan already hides changed secret fields; this is the belt to those braces.
    if output_format == "text":
        sys.stdout.write(scrub(render_text(plan, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ)))
    else:
        sys.stdout.write(scrub(RENDERERS[output_format](plan)))


@contextlib.contextmanager
def _apply_exit_codes(node: Node) -> Iterator[None]:
    """What apply and rollback tell the operator when the transaction fails, and the exit code."""
    from hecate_agent.engine.transaction import ApplyError, RollbackError
    from hecate_agent.errors import HecateError

    try:
        yield
    except RollbackError as exc:
        fail(
            f"{exc}\nThe node may be half-applied: check Caddy and Nginx before anything else.", RollbackError.exit_code
        )
    except ApplyError as exc:
        fail(f"{exc}\nEverything was put back as it was.", ApplyError.exit_code)
    except HecateError as exc:
        fail(str(exc))
    finally:
        node.close()


def register(cli: click.Group) -> None:
    for command in (plan, apply, run, status, history, rollback, suspend, resume, rollout):
        cli.add_command(command)


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
    settings = _settings(ctx)
    from hecate_agent.engine.transaction import Node

    node = Node.from_settings(settings)
    try:
        files, revision = _read_specs(_specs_path(path, settings))
        prepared = _prepare(node, files, revision)
    finally:
        node.close()
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

    files, revision = _read_specs(path)
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
    if base.problems:
        base.state = None
    if base.state is None:
        sys.stderr.write(render_text(base.problems, base.counts, f"{against}"))
        fail(f"the specs at {against} do not validate, so there is no base to compare with")
    head = load_specs(files).state
    assert head is not None  # _read_specs exits otherwise
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


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-mass-delete", is_flag=True, help="Allow a plan that deletes most managed resources.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.pass_context
def apply(ctx: click.Context, target: Path | None, yes: bool, allow_mass_delete: bool, output_format: str) -> None:
    """Apply PATH (a spec folder) or a plan saved with `plan --out`. Exit 0 / 1 rolled back / 3 rollback failed."""
    from hecate_agent.engine.transaction import Node, apply_prepared, recover
    from hecate_agent.spec.loader import SourceFile

    settings = _settings(ctx)
    saved = _load_saved_plan(target) if target is not None else None
    if saved is not None:
        files = [SourceFile(f["path"], base64.b64decode(f["data"])) for f in saved["files"]]
        revision = str(saved["revision"])
    else:
        files, revision = _read_specs(_specs_path(target, settings))
    node = Node.from_settings(settings)
    with _apply_exit_codes(node), node.store.lock():
        recovered = recover(node)
        if recovered:
            click.echo(f"Resolved an interrupted apply: {recovered}.", err=True)
        prepared = _prepare(node, files, revision)
        if saved is not None:
            if prepared.rendered.fingerprint != saved["desiredFingerprint"]:
                fail(
                    "the saved plan renders differently on this node now (settings or environment changed); plan again"
                )
            if prepared.live.fingerprint != saved["liveFingerprint"]:
                fail("the live proxies changed since the plan was made; the saved plan is stale, plan again")
        _print_plan(prepared.plan, output_format)
        if node.store.suspension():
            click.echo("Note: automatic sync is suspended on this node; this manual apply goes ahead.", err=True)
        if (
            not prepared.plan.has_changes
            and prepared.last
            and prepared.last.fingerprint == prepared.rendered.fingerprint
        ):
            apply_prepared(node, prepared, source="cli")
            click.echo("Nothing to do.")
            return
        if not yes and saved is None:
            if not sys.stdin.isatty():
                fail("refusing to apply without confirmation: no terminal to ask on. Pass --yes")
            click.confirm("Apply these changes to this node?", abort=True)
        result = apply_prepared(node, prepared, allow_mass_delete=allow_mass_delete, source="cli")
        click.echo(f"Applied {result.revision} in {result.seconds:.2f} s ({', '.join(result.steps) or 'no-op'}).")


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the agent: follow the source, apply, heal drift, serve /healthz /readyz /status /metrics."""
    from hecate_agent.errors import HecateError
    from hecate_agent.runtime.daemon import run as run_daemon
    from hecate_agent.settings import SettingsError

    try:
        sys.exit(run_daemon(ctx.find_root().obj))
    except SettingsError as exc:
        fail(f"invalid agent settings:\n{exc}")
    except HecateError as exc:
        fail(str(exc))


@click.command()
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--fleet", is_flag=True, help="Every node's status, from Consul.")
@click.option("--wait-for", "wait_for", metavar="REV", help="With --fleet: wait until every node applied REV.")
@click.option("--timeout", "timeout", default="10m", show_default=True, help="How long --wait-for waits.")
@click.pass_context
def status(ctx: click.Context, output_format: str, fleet: bool, wait_for: str | None, timeout: str) -> None:
    """Where this node stands (or, with --fleet, every node): phase, applied revision, last attempt."""
    if fleet or wait_for:
        _fleet_status(_settings(ctx), output_format, wait_for, timeout)
        return
    settings = _settings(ctx)
    path = settings.state_dir / "status.json"
    if not path.exists():
        fail(f"no status yet ({path} does not exist): nothing was applied on this node")
    from hecate_agent.store.state import StateStore
    from hecate_agent.store.status import update_status

    # Refresh what can change without an apply (suspend/resume), then show it.
    data = update_status(StateStore(settings.state_dir), settings.node.name)
    if output_format == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    attempt = data.get("lastAttempt") or {}
    click.echo(f"node:      {data['node']}")
    click.echo(f"phase:     {_phase_text(data)}")
    click.echo(f"applied:   {data.get('appliedRevision') or '-'}")
    click.echo(f"last:      {attempt.get('outcome')} {attempt.get('revision')} at {attempt.get('at')}")
    if attempt.get("error"):
        click.echo(f"error:     {attempt['error']}")
    if data.get("suspended"):
        click.echo(f"suspended: {data['suspended'].get('reason')} (since {data['suspended'].get('at')})")


def _consul(settings: AgentSettings, what: str) -> ConsulPublisher:
    """A Consul client from agent.yaml's `consul` section, or exit saying what needs it."""
    from hecate_agent.store.consul_status import ConsulPublisher

    if settings.consul is None:
        fail(f"{what} needs consul settings (consul.address) in agent.yaml")
    return ConsulPublisher(
        settings.consul.address,
        settings.node.name,
        prefix=settings.consul.prefix,
        token_file=settings.consul.token_file,
    )


def _fleet_status(settings: AgentSettings, output_format: str, wait_for: str | None, timeout: str) -> None:
    import time

    from hecate_agent.engine.outcomes import FAILED_OUTCOMES
    from hecate_agent.spec.types import Duration

    reader = _consul(settings, "the fleet view")
    try:
        deadline = time.monotonic() + Duration.parse(timeout).seconds
    except ValueError:
        fail(f"--timeout {timeout!r} is not a duration such as 30s or 10m")
    while True:
        try:
            nodes = reader.fleet()
        except Exception as exc:  # Consul unreachable: say so plainly
            fail(f"cannot read the fleet from Consul at {reader.address}: {exc}")
        if wait_for is None:
            _print_fleet(nodes, output_format)
            return
        done = [n for n in nodes if str(n.get("appliedRevision") or "").startswith(wait_for)]
        failed = [
            n
            for n in nodes
            if str((n.get("lastAttempt") or {}).get("revision") or "").startswith(wait_for)
            and (n.get("lastAttempt") or {}).get("outcome") in FAILED_OUTCOMES
        ]
        if failed:
            _print_fleet(nodes, output_format)
            fail(
                f"{wait_for} failed on: "
                + ", ".join(f"{n['node']} ({(n.get('lastAttempt') or {}).get('outcome')})" for n in failed)
            )
        if nodes and len(done) == len(nodes):
            _print_fleet(nodes, output_format)
            click.echo(f"All {len(nodes)} node(s) applied {wait_for}.")
            return
        if time.monotonic() > deadline:
            _print_fleet(nodes, output_format)
            laggards = [str(n.get("node")) for n in nodes if n not in done] or ["(no node reports at all)"]
            fail(f"timed out waiting for {wait_for}; not there yet: {', '.join(laggards)}")
        time.sleep(1.0)


def _phase_text(status: dict[str, Any]) -> str:
    """The phase, and for a rollout halt who halted it ("Halted by edge-3")."""
    halted_by = (status.get("lastAttempt") or {}).get("haltedBy")
    return (
        f"{status.get('phase')} by {halted_by}"
        if status.get("phase") == "Halted" and halted_by
        else str(status.get("phase"))
    )


def _print_fleet(nodes: list[dict[str, Any]], output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps(nodes, indent=2, sort_keys=True))
        return
    from datetime import UTC, datetime

    rows = [("NODE", "PHASE", "APPLIED", "DESIRED", "LAST APPLY", "AGE", "ERROR")]
    now = datetime.now(UTC)
    for node in nodes:
        attempt = node.get("lastAttempt") or {}
        updated = node.get("updatedAt")
        age = "-"
        if updated:
            seconds = (now - datetime.strptime(updated, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds()
            age = f"{int(seconds)}s"
        rows.append(
            (
                str(node.get("node")),
                _phase_text(node),
                str(node.get("appliedRevision") or "-")[:12],
                str(node.get("desiredRevision") or "-")[:12],
                f"{attempt.get('outcome') or '-'} {attempt.get('at') or ''}".strip(),
                age,
                str(attempt.get("error") or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def history(ctx: click.Context, limit: int) -> None:
    """Applied revisions and attempts, newest last."""
    from hecate_agent.store.state import StateStore

    settings = _settings(ctx)
    entries = StateStore(settings.state_dir).history()[-limit:]
    if not entries:
        click.echo("No history yet.")
        return
    for entry in entries:
        summary = entry.get("summary") or {}
        changes = ", ".join(f"{k} {v}" for k, v in summary.items() if v and k != "unchanged")
        seconds = f"{entry['seconds']:.2f}s" if "seconds" in entry else ""
        detail = entry.get("error") or entry.get("detail") or changes
        click.echo(f"{entry['at']}  {entry['outcome']:<11} {entry['revision']:<24} {seconds:>7}  {detail}")


@click.command()
@click.argument("revision", required=False)
@click.option("--previous", is_flag=True, help="The snapshot before the last applied one.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def rollback(ctx: click.Context, revision: str | None, previous: bool, yes: bool) -> None:
    """Re-apply a stored snapshot (REV or --previous) and suspend automatic sync."""
    from hecate_agent.engine.transaction import (
        apply_prepared,
        prepare_rendered,
        recover,
        snapshot_rendered,
    )

    if (revision is None) == (not previous):
        fail("give a revision or --previous (not both)")
    node = _node(ctx)
    with _apply_exit_codes(node), node.store.lock():
        recover(node)
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
        result = apply_prepared(node, prepared, allow_mass_delete=True, source="rollback")
        node.store.suspend(f"rolled back to {snapshot.revision}", by="rollback")
        click.echo(
            f"Rolled back to {snapshot.revision} ({result.outcome}). Automatic sync is suspended: "
            "run `hecate-agent resume` once the config repository is fixed."
        )


@click.command()
@click.option("--reason", default="suspended by an operator", show_default=True)
@click.pass_context
def suspend(ctx: click.Context, reason: str) -> None:
    """Stop automatic sync on this node until `resume` (manual apply still works)."""
    from hecate_agent.store.state import StateStore

    settings = _settings(ctx)
    StateStore(settings.state_dir).suspend(reason, by=os.environ.get("SUDO_USER") or os.environ.get("USER", "unknown"))
    click.echo(f"Automatic sync suspended: {reason}")


@click.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Let automatic sync apply new revisions again."""
    from hecate_agent.store.state import StateStore

    settings = _settings(ctx)
    if StateStore(settings.state_dir).resume():
        click.echo("Automatic sync resumed.")
    else:
        click.echo("Automatic sync was not suspended.")


@click.group()
def rollout() -> None:
    """Fleet rollout coordination (agent.yaml `rollout`, kept in Consul)."""


@rollout.command("resume")
@click.argument("revision")
@click.pass_context
def rollout_resume(ctx: click.Context, revision: str) -> None:
    """Lift the halt on REVISION, so the nodes that refused it take it again."""
    import consul

    from hecate_agent.runtime.rollout import resume as lift

    settings = _settings(ctx)
    publisher = _consul(settings, "rollout coordination")
    try:
        lifted = lift(publisher.client, publisher.prefix, revision)
    except (consul.ConsulException, OSError) as exc:
        fail(f"cannot reach Consul ({type(exc).__name__}); is consul.address right in agent.yaml?")
    if lifted:
        click.echo(f"Lifted the halt on {revision}; the nodes take it on their next sync.")
    else:
        click.echo(f"{revision} was not halted.")
