"""Agent settings: file, environment overrides, and errors that point at the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from hecate_agent.settings import SettingsError, load_settings


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"HECATE_AGENT_CONFIG": ""})
    assert settings.caddy.admin_url == "http://127.0.0.1:2019"
    assert settings.nginx.test_command == ["nginx", "-t"]
    assert settings.state_dir == Path("/var/lib/hecate-agent")
    assert str(settings.sync.drift_interval) == "1m"


def test_file_and_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("caddy:\n  adminUrl: http://127.0.0.1:3000\n  server: edge\nstateDir: /tmp/x\n")
    settings = load_settings(config, environ={
        "HECATE_AGENT_CADDY__ADMIN_URL": "unix:///run/caddy/admin.sock",
        "HECATE_AGENT_NGINX__TEST_COMMAND": "[nginx, -t, -q]",
        "HECATE_AGENT_SYNC__MAX_DELETE_PERCENT": "20",
        "HECATE_AGENT_NODE__NAME": "edge-7",
    })
    assert settings.caddy.admin_url == "unix:///run/caddy/admin.sock"
    assert settings.caddy.server == "edge"
    assert settings.nginx.test_command == ["nginx", "-t", "-q"]
    assert settings.sync.max_delete_percent == 20
    assert settings.node.name == "edge-7"
    assert settings.state_dir == Path("/tmp/x")


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "a.yaml"
    config.write_text("stateDir: /srv/state\n")
    assert load_settings(None, environ={"HECATE_AGENT_CONFIG": str(config)}).state_dir == Path("/srv/state")
    with pytest.raises(SettingsError) as caught:
        load_settings(None, environ={"HECATE_AGENT_CONFIG": str(tmp_path / "missing.yaml")})
    assert "settings file not found" in str(caught.value)


def test_errors_are_positioned(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("caddy:\n  adminUrl: ftp://x\n  servr: edge\nsync:\n  maxDeletePercent: 150\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    found = {(p.line, p.column, p.field) for p in caught.value.problems}
    assert found == {(2, 13, "caddy.adminUrl"), (3, 3, "caddy.servr"), (5, 21, "sync.maxDeletePercent")}


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, environ={"HECATE_AGENT_SYNC__SELF_HEAL": "maybe", "HECATE_AGENT_CONFIG": ""})
    assert caught.value.problems[0].file == "$HECATE_AGENT_SYNC__SELF_HEAL"
    assert caught.value.problems[0].field == "sync.selfHeal"


def test_both_sources_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("source:\n  directory: /etc/hecate\n  git: {url: /srv/repo.git}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    assert "exactly one of source.git and source.directory" in str(caught.value)
