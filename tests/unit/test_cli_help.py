"""`hecate-agent --help` lists the commands in the operator's order; click completion scripts are generated."""

from __future__ import annotations

import os
import subprocess
import sys

import click
from click.testing import CliRunner

from hecate_agent.cli import COMMAND_ORDER, cli


def _listed_commands(help_text: str) -> list[str]:
    lines = help_text.split("Commands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]


def test_help_lists_commands_in_operator_order() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="hecate-agent")
    assert result.exit_code == 0, result.output
    listed = _listed_commands(result.output)
    assert listed[:5] == ["validate", "render", "plan", "apply", "run"]
    assert listed == [name for name in COMMAND_ORDER if name in cli.commands] + sorted(
        set(cli.commands) - set(COMMAND_ORDER)
    )
    assert sorted(listed) == sorted(cli.commands)


def test_commands_not_in_the_order_come_last_alphabetically() -> None:
    from hecate_agent.cli import OperatorOrderGroup

    group = OperatorOrderGroup()
    for name in ("zeta", "apply", "alpha", "validate"):
        group.add_command(click.Command(name))
    assert group.list_commands(click.Context(group)) == ["validate", "apply", "alpha", "zeta"]


def test_completion_scripts_for_bash_and_zsh() -> None:
    for shell, marker in (("bash", "complete -o nosort -F _hecate_agent_completion hecate-agent"),
                          ("zsh", "#compdef hecate-agent")):
        env = {**os.environ, "_HECATE_AGENT_COMPLETE": f"{shell}_source"}
        result = subprocess.run([sys.executable, "-m", "hecate_agent"], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert marker in result.stdout


def test_completion_completes_command_names() -> None:
    env = {**os.environ, "_HECATE_AGENT_COMPLETE": "bash_complete", "COMP_WORDS": "hecate-agent ro", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "hecate_agent"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.stdout.split() == ["plain,rollback", "plain,rollout"]
