"""The Nginx renderer: exact output, presets, determinism across hash seeds, purity."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from hecate_agent.render.nginx import _token, all_listeners, render_nginx
from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.targets.nginx_streams import includes_stream_dir
from tests.helpers import ROOT, SAMPLE_REPO, dump_yaml, stream


def render_one(doc: dict) -> str:
    result = load_specs([SourceFile("s.yaml", dump_yaml(doc).encode())])
    assert result.state is not None, result.problems
    return next(iter(render_nginx(result.state).values()))


def test_tcp_stream_with_backup_and_health_check() -> None:
    text = render_one(stream("pg", port=None, listen={"address": "::", "port": 5432},
                             healthCheck={"interval": "10s", "timeout": "3s"},
                             upstreams=[{"server": "10.0.0.1:5432", "weight": 3, "maxFails": 2, "failTimeout": "1m30s"},
                                        {"server": "[fd00::2]:5432", "backup": True}]))
    assert text == """\
# Managed by hecate-agent: Stream/pg.
# Do not edit: the agent rewrites this file when the stream's spec changes.
# Active health checks (tcp, every 10s, timeout 3s): the agent marks a server down after 3 failed probes and back after 2 good ones; Nginx applies the passive max_fails/fail_timeout below.

upstream hecate_pg {
    zone hecate_pg 64k;
    server 10.0.0.1:5432 weight=3 max_fails=2 fail_timeout=1m30s;
    server [fd00::2]:5432 weight=1 max_fails=1 fail_timeout=10s backup;
}

server {
    listen [::]:5432;
    proxy_pass hecate_pg;
    proxy_connect_timeout 5s;
    proxy_timeout 10m;
}
"""


def test_udp_stream_ends_sessions_after_one_reply() -> None:
    text = render_one(stream("dns", port=53, protocol="udp"))
    assert "    listen 0.0.0.0:53 udp;\n" in text
    assert "    proxy_responses 1;\n    proxy_timeout 5s;\n" in text


def test_preset_expands_to_one_listener_per_port() -> None:
    text = render_one(stream("mail", port=None, preset="mailcow", upstreams=[{"server": "10.0.0.5"}]))
    for port in (25, 465, 587, 143, 993, 110, 995):
        assert f"upstream hecate_mail_{port} {{" in text
        assert f"server 10.0.0.5:{port} weight=1" in text
        assert f"listen 0.0.0.0:{port};" in text
    result = load_specs([SourceFile("s.yaml", dump_yaml(stream("j", port=None, preset="jenkins",
                                                                 upstreams=[{"server": "ci"}])).encode())])
    assert result.state is not None
    assert [(x.port, x.upstream_name) for x in all_listeners(result.state)] == [(50000, "hecate_j_50000")]


def test_token_guard_refuses_directive_syntax() -> None:
    for bad in ("a;b", "a b", "a{", "$host", "a'b"):
        with pytest.raises(ValueError):
            _token(bad)


def test_rendering_is_identical_across_hash_seeds() -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from hecate_agent.sources.directory import read_directory\n"
        "from hecate_agent.spec.loader import load_specs\n"
        "from hecate_agent.render.nginx import render_nginx\n"
        f"files, _ = read_directory(Path({str(SAMPLE_REPO)!r}))\n"
        "out = render_nginx(load_specs(files).state)\n"
        "sys.stdout.write(repr(sorted(out.items())))\n"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
        for seed in ("0", "1", "12345", "random")
    }
    assert len(outputs) == 1 and "hecate_postgres" in outputs.pop()


FORBIDDEN_IMPORTS = {"os", "subprocess", "socket", "pathlib", "shutil", "tempfile", "httpx", "time", "random",
                     "datetime", "hecate_agent.targets", "hecate_agent.sources"}


@pytest.mark.parametrize("module", sorted((ROOT / "hecate_agent" / "render").glob("*.py")), ids=lambda p: p.name)
def test_renderers_are_pure(module: Path) -> None:
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("open", "print", "input", "exec", "eval"), f"{module.name}: {node.func.id}()"
            continue
        else:
            continue
        for name in names:
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IMPORTS), f"{module.name}: {name}"


def test_include_detection() -> None:
    dump = """# configuration file /etc/nginx/nginx.conf:
events {}
http { include /etc/nginx/hecate-streams.d/*.conf; }
stream {
    upstream own { server 10.0.0.1:1; }
    include /etc/nginx/hecate-streams.d/*.conf;
}
"""
    assert includes_stream_dir(dump, Path("/etc/nginx/hecate-streams.d"))
    outside_only = "http {\n include /etc/nginx/hecate-streams.d/*.conf;\n}\nstream {\n}\n"
    assert not includes_stream_dir(outside_only, Path("/etc/nginx/hecate-streams.d"))
    commented = "stream {\n  # include /etc/nginx/hecate-streams.d/*.conf;\n}\n"
    assert not includes_stream_dir(commented, Path("/etc/nginx/hecate-streams.d"))
