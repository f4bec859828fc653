"""The checked-in JSON Schemas match the models, and the sample repo passes them."""

from __future__ import annotations

import json

import jsonschema
import pytest

from hecate_agent.spec.schema import SCHEMA_BASE_URL, render_schemas
from hecate_agent.spec.yamlio import parse_yaml
from tests.helpers import SAMPLE_REPO, SCHEMAS


@pytest.mark.parametrize(("name", "content"), render_schemas().items())
def test_committed_schemas_are_up_to_date(name: str, content: str) -> None:
    committed = (SCHEMAS / name).read_text(encoding="utf-8")
    assert committed == content, f"schemas/{name} is stale: run `hecate-agent schema --output schemas/`"


def test_no_stray_schema_files() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(render_schemas())


@pytest.mark.parametrize("name", sorted(render_schemas()))
def test_schemas_are_valid_2020_12_with_id(name: str) -> None:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == SCHEMA_BASE_URL + name
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _field_descriptions_missing(node: object, path: str = "") -> list[str]:
    missing = []
    if isinstance(node, dict):
        for field, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "description" not in sub:
                missing.append(f"{path}.{field}")
        for key, sub in node.items():
            if key != "properties":
                missing += _field_descriptions_missing(sub, f"{path}.{key}")
            else:
                for field, inner in sub.items():
                    missing += _field_descriptions_missing(inner, f"{path}.{field}")
    elif isinstance(node, list):
        for item in node:
            missing += _field_descriptions_missing(item, path)
    return missing


@pytest.mark.parametrize("name", sorted(render_schemas()))
def test_every_field_is_described(name: str) -> None:
    schema = json.loads((SCHEMAS / name).read_text())
    assert _field_descriptions_missing(schema) == []


def test_sample_repo_passes_the_json_schemas() -> None:
    validators = {
        kind: jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text()))
        for kind in ("Route", "AuthPolicy", "Stream", "Config")
    }
    checked = 0
    for path in sorted(SAMPLE_REPO.rglob("*.yaml")):
        parsed = parse_yaml(str(path), path.read_bytes())
        assert parsed.problems == []
        for doc in parsed.documents:
            kind = "Config" if path.name == "config.yaml" else doc.value["kind"]
            assert list(validators[kind].iter_errors(doc.value)) == [], path
            checked += 1
    assert checked == 11


def test_sample_files_point_editors_at_the_schemas() -> None:
    for path in sorted(SAMPLE_REPO.rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target.exists(), f"{path}: {target}"
