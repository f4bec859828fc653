"""What a spec author controls cannot reach past the spec: no files outside the repository, no Caddy
placeholders, no Nginx directives, no header breaks, whatever the text."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hecate_agent.render.caddy import CaddyCapabilities, RenderError, render_caddy
from hecate_agent.render.nginx import render_nginx
from hecate_agent.sources.directory import read_directory
from hecate_agent.sources.git import GitError, GitSource
from hecate_agent.spec.loader import SourceFile, load_specs
from tests.e2e.conftest import Remote, git
from tests.helpers import auth_policy, dump_yaml, route, stream

EXAMPLES = 10_000 if os.environ.get("HYPOTHESIS_PROFILE") == "slow" else 300
# Every placeholder the renderer itself writes; anything else in braces came from a spec.
OUR_PLACEHOLDERS = {"{http.request.host}", "{http.request.uri}", "{http.request.uuid}", "{http.request.remote.host}",
                    "{http.request.method}",
                    *(f"{{http.reverse_proxy.header.X-Authentik-{n}}}"
                      for n in ("Username", "Groups", "Email", "Name", "Uid", "Entitlements"))}
NGINX_DIRECTIVES = {"upstream", "zone", "server", "listen", "proxy_pass", "proxy_connect_timeout", "proxy_timeout",
                    "proxy_responses", "}"}

# Fragments attackers use, joined in random order: placeholders, directive breaks, header breaks.
FRAGMENTS = [*"ab-.:/_ ;{}$\\\"'\r\n\t\x00#*[]@=%|", "{env.SECRET}", "${X}", "}\nserver {", "\r\n", "a.example.com",
             "127.0.0.1:80", "include /etc/passwd;", "[fe80::1%", "%eth0]", "]:80", "[::1]", "999.", "0x7f", "X-Authentik-",
             "x-AUTHENTIK-username", "{http.request.uri.query.x}"]
HOSTILE = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8).map("".join)


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def placeholders(config: Any) -> set[str]:
    """Every `{...}` inside a string of the config: what Caddy's replacer would expand."""
    return {p for text in strings(config) for p in re.findall(r"\{[^{}]*\}", text)}


def header_values(config: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any, in_headers: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, in_headers or key in ("set", "add", "headers"))
        elif isinstance(node, list):
            for item in node:
                walk(item, in_headers)
        elif isinstance(node, str) and in_headers:
            found.append(node)

    walk(config, False)
    return found


OUTPOST = {"global": {"authentik": {"outpostUrl": "http://127.0.0.1:9000"}}}


def accepted(*docs: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    files = [SourceFile(f"specs/{i}.yaml", dump_yaml(d).encode()) for i, d in enumerate(docs)]
    if config is not None:
        files.append(SourceFile("config.yaml", dump_yaml(config).encode()))
    return load_specs(files).state


def check_groups(state: Any, group: str) -> None:
    """An accepted group name gives a matcher that lets in its own members and nobody else."""
    config = render_caddy(state, capabilities=CaddyCapabilities(), environment={})
    patterns = [m["X-Authentik-Groups"]["pattern"] for m in finds(config, "header_regexp") if "X-Authentik-Groups" in m]
    assert len(patterns) == 1
    pattern = re.compile(patterns[0])
    assert pattern.search(group) and pattern.search(f"x|{group}|y")
    for unrelated in ("", "|", "other", "other|more", "a||b"):
        if group not in unrelated.split("|"):
            assert not pattern.search(unrelated), (group, unrelated)


def finds(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [f for v in node.values() for f in finds(v, key)]
    if isinstance(node, list):
        return [f for v in node for f in finds(v, key)]
    return []


def check_caddy(state: Any) -> None:
    try:
        config = render_caddy(state, capabilities=CaddyCapabilities(), environment={})
    except RenderError:
        return  # refused at render time: fine, nothing reaches Caddy
    foreign = {p for p in placeholders(config) if p not in OUR_PLACEHOLDERS and not p.startswith("{http.auth")}
    assert not foreign, foreign
    for value in header_values(config):
        assert "\r" not in value and "\n" not in value and "\x00" not in value, value


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=HOSTILE, field=st.sampled_from(["set", "upstream", "remove", "domain", "path", "label", "name", "dial",
                                             "canary", "header-name", "upstream-name", "group"]))
def test_hostile_route_text_never_reaches_caddy_as_placeholders_or_header_breaks(value: str, field: str) -> None:
    doc = route("app", "app.example.com")
    spec = doc["spec"]
    policy = auth_policy()
    if field == "group":
        spec["authPolicy"] = "staff"
        policy = auth_policy(requirements={"groups": [value]})
        state = accepted(doc, policy, config=OUTPOST)
        if state is not None:
            check_caddy(state)
            check_groups(state, value)
        return
    if field == "canary":
        spec["canary"] = {"upstream": value, "percentage": 10}
    elif field == "header-name":
        spec["headers"] = {"set": {value: "1", "X-Other": "2"}}
    elif field == "upstream-name":
        spec["authPolicy"] = "staff"
        spec["headers"] = {"upstream": {"set": {value: "forged"}}}
        state = accepted(doc, policy, config=OUTPOST)
        if state is not None:
            check_caddy(state)
            assert not value.lower().replace("_", "-").startswith("x-authentik-"), value
        return
    elif field == "set":
        spec["headers"] = {"set": {"X-A": value}}
    elif field == "upstream":
        spec["headers"] = {"upstream": {"set": {"X-A": value}}}
    elif field == "remove":
        spec["headers"] = {"remove": [value]}
    elif field == "domain":
        spec["domain"] = value
    elif field == "path":
        spec["healthCheck"] = {"path": value}
    elif field == "label":
        doc["metadata"]["labels"] = {"team": value}
    elif field == "name":
        doc["metadata"]["name"] = value
    else:
        spec["upstreams"] = [{"dial": value}]
    state = accepted(doc)
    if state is not None:
        check_caddy(state)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=HOSTILE, field=st.sampled_from(["server", "address", "name"]))
def test_hostile_stream_text_never_becomes_an_nginx_directive(value: str, field: str) -> None:
    doc = stream("db", port=25432)
    if field == "server":
        doc["spec"]["upstreams"] = [{"server": value}]
    elif field == "address":
        doc["spec"]["listen"] = {"address": value, "port": 25432}
    else:
        doc["metadata"]["name"] = value
    state = accepted(doc)
    if state is None:
        return
    for text in render_nginx(state).values():
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            assert stripped.split()[0] in NGINX_DIRECTIVES, line
            assert stripped.endswith((";", "{", "}")) and stripped.count(";") <= 1, line


def test_a_symlink_out_of_a_spec_directory_is_refused_file_or_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("password: hunter2\n")
    specs = tmp_path / "specs"
    (specs / "routes").mkdir(parents=True)
    os.symlink("/etc/passwd", specs / "routes" / "passwd.yaml")
    os.symlink(outside, specs / "linked")
    os.symlink("../../outside/secret.yaml", specs / "routes" / "up.yaml")
    files, problems = read_directory(specs)
    assert files == []
    assert sorted((Path(p.file).name, p.message.split(" (to ")[0]) for p in problems) == [
        ("linked", "symlink leads outside the spec repository"),
        ("passwd.yaml", "symlink leads outside the spec repository"),
        ("up.yaml", "symlink leads outside the spec repository"),
    ]
    assert not any(b"hunter2" in f.data or b"root:" in f.data for f in files)


def test_git_specs_cannot_leave_the_tree(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git")
    (remote.work / "specs").mkdir(parents=True)
    os.symlink("/etc/passwd", remote.work / "specs" / "passwd.yaml")
    first = remote.commit({"specs/ok.yaml": dump_yaml(route())}, "with a symlink")
    remote.push()
    source = GitSource(str(remote.bare), "main", tmp_path / "mirror", path="specs")
    assert source.fetch() == first
    files, problems = source.snapshot(first)
    assert [f.path for f in files] == ["ok.yaml"]
    assert [p.message for p in problems] == ["a symlink in the repository; specs must be plain files"]
    for escape in ("../..", "../../etc", "/etc"):
        escaping = GitSource(str(remote.bare), "main", tmp_path / "mirror2", path=escape)
        tip = escaping.fetch()
        try:
            found, _ = escaping.snapshot(tip)
        except GitError:
            continue
        assert all(not f.display.startswith(("..", "/")) for f in found), escape
        assert not any(b"root:x:0:0" in f.data for f in found)


def test_repository_hooks_never_run(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "git")
    marker = tmp_path / "hook-ran"
    hook = remote.bare / "hooks" / "post-update"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    first = remote.commit({"specs/ok.yaml": dump_yaml(route())}, "one")
    remote.push()
    marker.unlink(missing_ok=True)  # the push itself ran the remote's hook; the agent must not
    source = GitSource(str(remote.bare), "main", tmp_path / "mirror", path="specs")
    for name in ("post-checkout", "post-merge", "reference-transaction", "post-index-change"):
        (tmp_path / "mirror" / "hooks").mkdir(parents=True, exist_ok=True)
        planted = tmp_path / "mirror" / "hooks" / name
        planted.write_text(f"#!/bin/sh\ntouch {marker}\n")
        planted.chmod(0o755)
    (tmp_path / "mirror").mkdir(exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "mirror")], check=True)
    git(tmp_path / "mirror", "remote", "add", "origin", str(remote.bare))
    assert source.fetch() == first
    source.snapshot(first)
    second = remote.commit({"specs/two.yaml": dump_yaml(route("two", "two.example.com"))}, "two")
    remote.push()
    marker.unlink(missing_ok=True)
    assert source.fetch() == second
    assert not marker.exists()


@pytest.mark.parametrize("value", ["${vault:../etc#x}", "${vault:a//b#x}", "${vault:./a#x}", "${vault:a/..#x}"])
def test_vault_paths_cannot_climb(value: str) -> None:
    doc = route("app", "app.example.com", headers={"upstream": {"set": {"X-Key": value}}})
    assert accepted(doc) is None
