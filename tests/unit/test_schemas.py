"""The checked-in JSON Schemas match the models, and the sample repo passes them."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
import regress

from hecate_agent.spec.schema import SCHEMA_BASE_URL, render_schemas
from hecate_agent.spec.yamlio import parse_yaml
from tests.helpers import SAMPLE_REPO, SCHEMAS
from tests.support.ecma_schema import ecma_regex, patterns_of


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


# Conditions on fields defined elsewhere (e.g. a stream's preset rules), not field definitions.
_CONSTRAINTS = ("if", "then", "else", "not", "contains")


def _field_descriptions_missing(node: object, path: str = "") -> list[str]:
    missing = []
    if isinstance(node, dict):
        for field, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "description" not in sub:
                missing.append(f"{path}.{field}")
        for key, sub in node.items():
            if key in _CONSTRAINTS:
                continue
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


def _schema_files() -> list[str]:
    return sorted(p.name for p in SCHEMAS.glob("*.schema.json"))


@pytest.mark.parametrize("name", _schema_files())
def test_every_pattern_compiles_as_ecma_262_unicode(name: str) -> None:
    """AJV 8 and editors compile `pattern` with `new RegExp(p, "u")`; one bad escape and the schema is unusable."""
    schema = json.loads((SCHEMAS / name).read_text())
    patterns = sorted(set(patterns_of(schema)))
    assert patterns
    refused = []
    for pattern in patterns:
        try:
            ecma_regex(pattern)
        except regress.RegressError as exc:
            refused.append(f"{pattern!r}: {exc}")
    assert refused == []


def test_the_domain_pattern_has_no_escaped_quote() -> None:
    """The defect that made route.schema.json uncompilable: `\\"` is an identity escape ECMA-262 `u` mode refuses."""
    from hecate_agent.spec.types import DOMAIN_PATTERN

    ecma_regex(DOMAIN_PATTERN)
    assert ecma_regex(DOMAIN_PATTERN).find('a"b.example.com') is None
    assert ecma_regex(DOMAIN_PATTERN).find("app.example.com") is not None


def test_check_jsonschema_accepts_every_schema() -> None:
    """The real tool CI integrators run: metaschema validation, with patterns checked as ECMA-262 (regress)."""
    files = [str(SCHEMAS / name) for name in _schema_files()]
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--check-metaschema", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_agent_uses_ascii_digit_classes_only() -> None:
    r"""Python's `\d` (and `str.isdigit` alone) accept Arabic-Indic or fullwidth digits; editors' `[0-9]` do not. One rule for both."""
    import io
    import tokenize

    from tests.helpers import ROOT

    offenders = []
    for path in sorted((ROOT / "hecate_agent").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            line = lines[token.start[0] - 1] if token.start[0] <= len(lines) else ""
            if (token.type == tokenize.STRING and "\\d" in token.string) or (
                token.type == tokenize.NAME and token.string == "isdigit" and "isascii()" not in line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {line.strip()}")
    # /proc entries and systemd's environment are ASCII by construction.
    allowed = {"hecate_agent/targets/sockets.py", "hecate_agent/targets/nginx_streams.py", "hecate_agent/runtime/sdnotify.py"}
    assert [o for o in offenders if o.split(":", 1)[0] not in allowed] == []


def test_listen_ports_with_non_ascii_digits_are_not_ports() -> None:
    from hecate_agent.render.caddy import parse_listen

    assert parse_listen("127.0.0.1:\u00b2") == ("127.0.0.1", None)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
