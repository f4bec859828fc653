"""JSON Schemas (draft 2020-12) generated from the models, one per kind.

The checked-in copies under `schemas/` are what editors load through the
`# yaml-language-server: $schema=…` line; a test fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hecate_agent.spec.config import ConfigDocument
from hecate_agent.spec.models import AuthPolicyDocument, RouteDocument
from hecate_agent.spec.streams import StreamDocument

SCHEMA_BASE_URL = "https://hecate.io/schemas/v1/"
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "route.schema.json": RouteDocument,
    "authpolicy.schema.json": AuthPolicyDocument,
    "stream.schema.json": StreamDocument,
    "config.schema.json": ConfigDocument,
}


def _tighten(node: Any) -> Any:
    """Make pydantic's output say what the models enforce.

    pydantic describes `dict[Pattern, V]` with `patternProperties`, which lets
    keys that miss the pattern through; the models refuse them, so the schema
    must too (`propertyNames` + `additionalProperties`).
    """
    if isinstance(node, dict):
        node = {k: _tighten(v) for k, v in node.items()}
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
            ((pattern, value_schema),) = patterns.items()
            names = dict(node.get("propertyNames", {}))
            names["pattern"] = pattern
            node["propertyNames"] = names
            node["additionalProperties"] = value_schema
            del node["patternProperties"]
        return node
    if isinstance(node, list):
        return [_tighten(item) for item in node]
    return node


def schema_for(filename: str) -> dict[str, Any]:
    model = SCHEMA_FILES[filename]
    body = _tighten(model.model_json_schema(by_alias=True, mode="validation"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE_URL + filename,
        **body,
    }


def render_schemas() -> dict[str, str]:
    """File name → exact file content (stable: sorted keys, trailing newline)."""
    return {name: json.dumps(schema_for(name), indent=2, sort_keys=True) + "\n" for name in SCHEMA_FILES}


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_schemas().items():
        target = directory / name
        target.write_text(content, encoding="utf-8")
        written.append(target)
    return written
