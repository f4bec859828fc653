"""The `hecate-agent` command line.

Commands import what they use inside their bodies: `hecate-agent --help` and
`validate` stay fast because nothing else is loaded.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hecate_agent import __version__

if TYPE_CHECKING:
    from hecate_agent.spec.loader import DesiredState

EXIT_OK = 0
EXIT_INVALID = 1
# click exits 2 on a usage error (unknown option, bad --format, missing path), and 2 is what `plan` says
# for "changes": a CI job would read a typo as a plan. Usage errors are errors: exit 1, like every other.
EXIT_USAGE = 1

# `--help` lists the commands in the order an operator meets them: check and preview a change, apply it,
# run the daemon, watch it, undo or pause, then tooling. Commands not named here follow, alphabetically.
COMMAND_ORDER = (
    "validate",
    "render",
    "plan",
    "apply",
    "run",
    "status",
    "history",
    "rollback",
    "suspend",
    "resume",
    "rollout",
    "schema",
)


@contextlib.contextmanager
def _usage_errors_exit_1() -> Iterator[None]:
    try:
        yield
    except click.UsageError as exc:
        exc.exit_code = EXIT_USAGE  # type: ignore[misc]  # click reads it from the instance it shows
        raise


class OperatorOrderGroup(click.Group):
    """The root group: commands listed in operator order; every command parses (and runs) inside it, so one
    place sets the usage-error code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _usage_errors_exit_1():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors_exit_1():
            return super().invoke(ctx)


@click.group(cls=OperatorOrderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hecate-agent")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Agent settings (default: $HECATE_AGENT_CONFIG or /etc/hecate-agent/agent.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """GitOps agent for Caddy and Nginx reverse-proxy nodes."""
    ctx.obj = config_path


@cli.command()
@click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github", "sarif"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts, github for PR annotations, sarif for code scanning.",
)
@click.option("--max-file-size", type=int, default=1024 * 1024, show_default=True, help="Bytes per spec file.")
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Validate the whole spec folder ROOT, but report only problems in the PATHs given (files under ROOT) "
    "and problems between files (duplicates, missing AuthPolicy, ...). For pre-commit hooks.",
)
def validate(paths: tuple[Path, ...], output_format: str, max_file_size: int, root: Path | None) -> None:
    """Validate the specs under PATH (a directory or one file). Exit 0 valid, 1 invalid.

    PATH defaults to the current folder. With --root ROOT, PATHs are files under
    ROOT (e.g. the ones staged for a commit).
    """
    from hecate_agent.report import RENDERERS, ROOTED_FORMATS
    from hecate_agent.sources.directory import read_directory
    from hecate_agent.spec.loader import check_snapshot_parts
    from hecate_agent.spec.yamlio import ReadLimits

    if root is None and len(paths) > 1:
        raise click.UsageError("give one PATH (a folder or a file), or --root FOLDER followed by files inside it")
    folder = root if root is not None else (paths[0] if paths else Path("."))
    limits = ReadLimits(max_file_bytes=max_file_size)
    files, problems = read_directory(folder, limits)
    verdict = check_snapshot_parts(files, limits)
    problems = sorted(set(problems + verdict.file_problems + verdict.cross_problems))
    if root is not None and paths:
        from hecate_agent.report import select_problems

        problems, hidden = select_problems(problems, verdict.cross_problems, paths)
        if hidden:
            click.echo(
                f"({hidden} problem(s) in other files not shown; `hecate-agent validate {root}` lists them)", err=True
            )
    render = RENDERERS[output_format]
    if output_format in ROOTED_FORMATS:
        sys.stdout.write(render(problems, verdict.counts, str(folder), root=_repository_root(folder)))
    else:
        sys.stdout.write(render(problems, verdict.counts, str(folder)))
    sys.exit(EXIT_INVALID if any(p.is_error for p in problems) else EXIT_OK)


def _repository_root(path: Path) -> Path:
    """What CI tools take file names relative to: the Git work tree holding PATH, else $GITHUB_WORKSPACE
    or the working directory when PATH is inside it, else PATH's own directory."""
    import os

    from hecate_agent.sources.git import repository_of

    found = repository_of(path)
    if found is not None:
        return found[0]
    target = os.path.realpath(path)
    for candidate in (os.environ.get("GITHUB_WORKSPACE"), os.getcwd()):
        if candidate and (target + os.sep).startswith(os.path.realpath(candidate).rstrip(os.sep) + os.sep):
            return Path(candidate)
    return path if path.is_dir() else path.parent


def _load_or_exit(path: Path) -> DesiredState:
    """Load and validate PATH (big folders over every core, up to 4); on problems print them (text) and exit 1."""
    import os

    from hecate_agent.runtime.apply_commands import load_folder_or_exit

    return load_folder_or_exit(path, describe=False, workers=min(os.cpu_count() or 1, 4))[1]


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path), default=".")
@click.option("--target", type=click.Choice(["caddy", "nginx"]), required=True, help="Which proxy's configuration.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the files into this directory instead of printing them.",
)
def render(path: Path, target: str, output: Path | None) -> None:
    """Print (or write) the proxy configuration the specs under PATH render to.

    Caddy: the parts of its JSON config the agent owns, for this node's Caddy
    (its modules decide, e.g., whether rate limiting is possible). `${VAR}`
    references resolve from this environment; secrets (Vault references, secret-named
    variables, variables in credential headers) show as <redacted>, and Vault is not contacted.
    Nginx: one stream file per Stream spec.
    """
    import gc

    # A one-shot process over specs and configs, which hold no reference cycles: the cycle collector
    # would only rescan the growing heap (a third of a 10,000-route render).
    gc.disable()
    state = _load_or_exit(path)
    if target == "caddy":
        files = {"caddy.json": _render_caddy_or_exit(state)}
    else:
        from hecate_agent.render.nginx import render_nginx

        files = render_nginx(state)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (output / name).write_text(content, encoding="utf-8")
            click.echo(f"wrote {output / name}")
        return
    for name, content in files.items():
        if len(files) > 1 or target == "nginx":
            click.echo(f"# ---- {name} ----")
        click.echo(content, nl=False)
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """Exit 0 now, output flushed, without freeing every object one by one (0.3 s for 10,000 routes).
    Only as a real process: under a test runner's captured output the caller simply returns."""
    import os

    if sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        return
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(EXIT_OK)


def _render_caddy_or_exit(state: DesiredState) -> str:
    import os
    import shutil

    from hecate_agent.redaction import MASK
    from hecate_agent.render.caddy import CaddyCapabilities, RenderError, render_caddy, to_json
    from hecate_agent.secrets import is_sensitive, references_of
    from hecate_agent.targets.caddy_admin import CaddyError, detect_capabilities

    capabilities = CaddyCapabilities()
    if shutil.which("caddy"):
        try:
            capabilities = detect_capabilities()
        except CaddyError as exc:
            click.echo(f"warning: {exc}; assuming a standard Caddy {capabilities.version}", err=True)
    try:
        # Vault is not contacted; secrets show as a mask (URL-shaped where a URL must be parsed).
        shown: dict[str, str] = {}
        for ref in references_of(state):
            if ref.is_vault or (ref.name in os.environ and is_sensitive(ref)):
                shown[ref.name] = "https://redacted.invalid" if "outpostUrl" in ref.where else MASK
            elif ref.name in os.environ:
                shown[ref.name] = os.environ[ref.name]
        owned = render_caddy(state, capabilities=capabilities, environment=shown)
    except RenderError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INVALID)
    return to_json(owned)


@cli.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one <kind>.schema.json per kind into this directory instead of printing.",
)
def schema(output: Path | None) -> None:
    """Print or write the JSON Schemas of the spec format (draft 2020-12)."""
    from hecate_agent.spec.schema import render_schemas, write_schemas

    if output is None:
        for name, content in render_schemas().items():
            click.echo(f"# {name}")
            click.echo(content, nl=False)
        return
    for written in write_schemas(output):
        click.echo(f"wrote {written}")


from hecate_agent.runtime.commands import register  # noqa: E402  (the node commands live in their own module)

register(cli)


def main() -> None:
    cli(prog_name="hecate-agent")
