"""Builders shared by the tests: minimal valid documents and small repos on disk."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_REPO = ROOT / "sample-repo"
SCHEMAS = ROOT / "schemas"


def route(name: str = "app", domain: str = "app.example.com", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"domain": domain, "upstreams": [{"dial": "10.0.0.1:8080"}]}
    body.update(spec)
    return {"apiVersion": "hecate.io/v1", "kind": "Route", "metadata": {"name": name}, "spec": body}


def auth_policy(name: str = "staff", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "authentik"}
    body.update(spec)
    return {"apiVersion": "hecate.io/v1", "kind": "AuthPolicy", "metadata": {"name": name}, "spec": body}


def stream(name: str = "db", port: int | None = 5432, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"protocol": "tcp", "upstreams": [{"server": "10.0.0.2:5432"}]}
    if port is not None:
        body["listen"] = {"address": "0.0.0.0", "port": port}
    body.update(spec)
    return {"apiVersion": "hecate.io/v1", "kind": "Stream", "metadata": {"name": name}, "spec": body}


def config(**global_: Any) -> dict[str, Any]:
    return {"global": global_}


def with_value(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with the dotted `path` (list indexes as numbers) set to `value`."""
    out = copy.deepcopy(doc)
    parts = path.split(".")
    node: Any = out
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def dump_yaml(*docs: Any) -> str:
    import io

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump_all(list(docs), buffer)
    return buffer.getvalue()


def desired_state(*docs: Any, global_config: dict[str, Any] | None = None) -> Any:
    """A validated DesiredState from documents (one file each) and an optional config.yaml."""
    from hecate_agent.spec.loader import SourceFile, load_specs

    files = [SourceFile(f"specs/{i}.yaml", dump_yaml(d).encode()) for i, d in enumerate(docs)]
    if global_config is not None:
        files.append(SourceFile("config.yaml", dump_yaml(global_config).encode()))
    result = load_specs(files)
    assert result.state is not None, result.problems
    return result.state


def write_repo(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root
