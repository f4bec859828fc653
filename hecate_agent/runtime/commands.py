"""Operator commands that act on this node: run, status (and the fleet's), history, suspend, resume,
rollout. `plan`, `apply` and `rollback` live in apply_commands.py.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from hecate_agent.settings import AgentSettings
    from hecate_agent.store.consul_status import ConsulPublisher


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


def register(cli: click.Group) -> None:
    from hecate_agent.runtime.apply_commands import apply, plan, rollback

    for command in (plan, apply, run, status, history, rollback, suspend, resume, rollout):
        cli.add_command(command)


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
    for name, entry in sorted((data.get("components") or {}).items()):
        if isinstance(entry, dict) and "healthy" in entry:  # targets that report (Authentik, DNS)
            role = f" ({entry['role']})" if entry.get("role") else ""
            health = "healthy" if entry["healthy"] else "unhealthy"
            click.echo(f"{name + ':':<10} {health}: {entry.get('detail')}{role}")


def _consul(settings: AgentSettings, what: str) -> ConsulPublisher:
    """A Consul client from agent.yaml's `consul` section (the daemon's, built by the same
    function), or exit saying what needs it."""
    from hecate_agent.runtime.fleet import make_publisher

    publisher = make_publisher(settings)
    if publisher is None:
        fail(f"{what} needs consul settings (consul.address) in agent.yaml")
    return publisher


def _fleet_status(settings: AgentSettings, output_format: str, wait_for: str | None, timeout: str) -> None:
    import time

    from hecate_agent.engine.outcomes import FAILED_OUTCOMES
    from hecate_agent.spec.types import Duration

    reader = _consul(settings, "the fleet view")
    try:
        deadline = time.monotonic() + Duration.parse(timeout).seconds
    except ValueError:
        fail(f"--timeout {timeout!r} is not a duration such as 30s or 10m")
    from hecate_agent.runtime.revisions import RevisionError, fleet_revisions, resolve, wait_verdict
    from hecate_agent.runtime.rollout import halted_revisions

    while True:
        try:
            nodes = reader.fleet()
            halts = halted_revisions(reader.client, reader.prefix) if wait_for is not None else set()
            if wait_for is not None:  # a unique prefix, as the fleet table shows it, names the revision
                wait_for = resolve(wait_for, fleet_revisions(nodes) | halts, keep_unknown=True)
        except RevisionError as exc:
            fail(str(exc))
        except Exception as exc:  # Consul unreachable: say so plainly
            fail(f"cannot read the fleet from Consul at {reader.address}: {exc}")
        if wait_for is None:
            _print_fleet(nodes, output_format)
            return
        # A node still showing "halted" for a revision whose halt was lifted is waited for, not failed.
        done, failed = wait_verdict(nodes, wait_for, halts, FAILED_OUTCOMES)
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
    from hecate_agent.runtime.revisions import RevisionError, resolve_in_fleet

    try:
        revision = resolve_in_fleet(publisher, revision)  # a unique prefix, as `status --fleet` shows it
        lifted = lift(publisher.client, publisher.prefix, revision)
    except RevisionError as exc:
        fail(str(exc))
    except (consul.ConsulException, OSError) as exc:
        fail(f"cannot reach Consul ({type(exc).__name__}); is consul.address right in agent.yaml?")
    if lifted:
        click.echo(f"Lifted the halt on {revision}; the nodes take it on their next sync.")
    else:
        click.echo(f"{revision} was not halted.")


settings_of = _settings  # the agent settings of this invocation, or exit 1 saying what is wrong
