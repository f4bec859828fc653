"""The Debian package's parts that can be checked without building it (packaging/deb/check.sh installs the
real package in CI): the example settings, the maintainer scripts, and the pre-commit hook definition."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from hecate_agent.settings import load_settings
from tests.helpers import ROOT

DEB = ROOT / "packaging" / "deb"


def test_example_settings_name_no_source_so_the_daemon_refuses_to_start(tmp_path: Path) -> None:
    from hecate_agent.errors import HecateError
    from hecate_agent.runtime.daemon import make_source

    settings = load_settings(DEB / "agent.yaml", environ={})
    assert settings.source.git is None and settings.source.directory is None
    assert str(settings.state_dir) == "/var/lib/hecate-agent"
    with pytest.raises(HecateError, match="no source configured"):
        make_source(settings)


def test_the_commented_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    text = (DEB / "agent.yaml").read_text()
    body = text[text.index("# source:") :].splitlines()
    uncommented = [line[2:] for line in body if re.match(r"# ( *)[a-zA-Z]+:", line) and "directory:" not in line]
    (tmp_path / "agent.yaml").write_text("\n".join(uncommented) + "\n")
    settings = load_settings(tmp_path / "agent.yaml", environ={})
    assert settings.source.git is not None and settings.source.git.url.startswith("ssh://")
    assert settings.node.name == "edge-1" and settings.http.listen == "127.0.0.1:9469"


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts_are_posix_sh_and_never_enable_or_start(script: str) -> None:
    path = DEB / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert path.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(path)], check=True)
    commands = [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.strip().startswith(("#", "echo "))]
    for line in commands:
        assert not re.search(r"\b(enable|start|restart)\b", line.replace("try-restart", "")), line


def test_postrm_purge_keeps_the_state_directory() -> None:
    text = (DEB / "postrm").read_text()
    assert "/var/lib/hecate-agent" not in " ".join(
        line for line in text.splitlines() if line.strip().startswith("rm "))


@pytest.mark.parametrize("script", ["build.sh", "check.sh"])
def test_build_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(DEB / script)], check=True)


def test_the_unit_is_rewritten_for_usr_bin() -> None:
    # build.sh swaps this exact ExecStart for /usr/bin/hecate-agent (and fails the build if it changes).
    assert "\nExecStart=/usr/local/bin/hecate-agent run\n" in (ROOT / "systemd" / "hecate-agent.service").read_text()


def test_pre_commit_hook_definition() -> None:
    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [hook["id"] for hook in hooks] == ["hecate-validate"]
    hook = hooks[0]
    assert hook["language"] == "python" and hook["types"] == ["yaml"]
    assert hook["entry"] == "hecate-agent validate --root ."
    assert hook["require_serial"] is True
