"""The four examples of the product's design document validate as written (issue 14).

They are read from the design document itself, `../shared/seed/` beside the
repository (CI clones the repository with a copy of shared/ next to it), by
their headings in its "Configuration Guide" — never from copies typed here.
"""

from __future__ import annotations

import re

import pytest

from hecate_agent.render.bundle import render_all
from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, RenderError
from hecate_agent.spec.loader import SourceFile, load_specs
from tests.helpers import ROOT

SEED = ROOT.parent / "shared" / "seed"
HEADINGS = {
    "### Route Configuration (YAML)": "routes/app.yaml",
    "### Authentication Policy Configuration": "policies/secure-access.yaml",
    "### Stream Proxy Configuration": "streams/database.yaml",
    "### Global Configuration": "config.yaml",
}
# The route names this policy, which the document never defines: it is added next to the examples.
STANDARD_USERS = """apiVersion: hecate.io/v1
kind: AuthPolicy
metadata:
  name: standard-users
spec:
  provider: authentik
  requirements:
    groups: [users]
"""


def design_document() -> str:
    candidates = sorted(SEED.glob("*.txt")) if SEED.is_dir() else []
    for path in candidates:
        text = path.read_text(encoding="utf-8")
        if all(heading in text for heading in HEADINGS):
            return text
    pytest.fail(f"the design document with the four configuration examples is not in {SEED}")


def yaml_after(text: str, heading: str) -> str:
    """The first ```yaml block after `heading`."""
    start = text.index(heading)
    match = re.compile(r"```yaml\n(.*?)```", re.S).search(text, start)
    assert match is not None, heading
    return match.group(1)


def example_files() -> list[SourceFile]:
    text = design_document()
    files = [SourceFile(path, yaml_after(text, heading).encode()) for heading, path in HEADINGS.items()]
    return [*files, SourceFile("policies/standard-users.yaml", STANDARD_USERS.encode())]


def test_the_four_examples_are_read_from_the_document() -> None:
    files = {f.path: f.data.decode() for f in example_files()}
    assert "kind: Route" in files["routes/app.yaml"] and "rate-limit:100/minute" in files["routes/app.yaml"]
    assert "mfa: required" in files["policies/secure-access.yaml"]
    assert "type: tcp" in files["streams/database.yaml"]
    assert "apiToken: ${HETZNER_API_TOKEN}" in files["config.yaml"]


def test_the_four_examples_validate_as_written() -> None:
    result = load_specs(example_files())
    assert result.problems == []
    assert result.counts == {"Route": 1, "AuthPolicy": 2, "Stream": 1, "Config": 1}
    # What validate says about them (it runs without node settings): what a node must be configured for.
    assert [(w.file, w.field) for w in result.warnings] == [
        ("config.yaml", "global.dns.provider"),
        ("policies/secure-access.yaml", "spec.flow"),
        ("policies/secure-access.yaml", "spec.requirements.mfa"),
        ("policies/secure-access.yaml", "spec.requirements.sessionDuration"),
        ("policies/secure-access.yaml", "spec.metadata.required[0]"),
        ("policies/secure-access.yaml", "spec.metadata.required[1]"),
        ("policies/secure-access.yaml", "spec.allowedMethods"),
        ("routes/app.yaml", "spec.authPolicy"),
    ]
    state = result.state
    assert state is not None
    policy = next(p for p in state.auth_policies if p.name == "secure-access").doc.spec
    assert policy.requirements.mfa == "required"
    assert policy.metadata.required == ["employee_id", "department"]
    assert policy.allowed_methods == ["password", "webauthn", "totp"]
    config = state.config
    assert config.dns.provider == "hetzner" and config.dns.default_ttl == 300
    assert config.certificates.storage == "vault"
    assert config.health_checks.effective.path == "/health"
    assert config.monitoring.prometheus.port == 9090 and config.monitoring.tracing.endpoint == "jaeger:4317"
    assert state.streams[0].doc.spec.health_check is not None
    assert state.streams[0].doc.spec.health_check.type == "tcp"


def test_on_debians_caddy_the_examples_stop_at_exactly_the_modules_it_lacks() -> None:
    state = load_specs(example_files()).state
    assert state is not None
    with pytest.raises(RenderError) as caught:
        render_all(
            state,
            "r1",
            caddy=CaddySettings(outpost_url="http://outpost.internal:9000"),
            capabilities=CaddyCapabilities("2.6.2", frozenset()),
            environment={"HETZNER_API_TOKEN": "t0ken-value"},
        )
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("Route/app-route: middleware 'rate-limit:100/minute' needs the Caddy module")
    assert problems[1].startswith("global.monitoring.tracing: tracing needs the Caddy module http.handlers.tracing")
    assert problems[2].startswith("global.certificates.storage: vault needs the Caddy module caddy.storage.vault")
    assert all("t0ken-value" not in p for p in problems)


def test_with_the_modules_the_examples_render() -> None:
    state = load_specs(example_files()).state
    assert state is not None
    modules = frozenset({"http.handlers.rate_limit", "http.handlers.tracing", "caddy.storage.vault"})
    rendered = render_all(
        state,
        "r1",
        caddy=CaddySettings(outpost_url="http://outpost.internal:9000"),
        capabilities=CaddyCapabilities("2.10.2", modules),
        environment={},
    )
    servers = rendered.caddy_owned["apps"]["http"]["servers"]
    assert servers["hecate_metrics"]["listen"] == [":9090"]
    assert rendered.caddy_owned["apps"]["http"]["metrics"] == {"per_host": True}
    assert rendered.caddy_owned["apps"]["tls"]["automation"]["policies"][0]["storage"] == {"module": "vault"}
    assert "database.conf" not in rendered.nginx_files and "postgres-cluster.conf" in rendered.nginx_files


def test_the_examples_pass_the_published_json_schemas() -> None:
    import json

    import jsonschema

    from hecate_agent.spec.yamlio import parse_yaml

    for source in example_files():
        value = parse_yaml(source.path, source.data).documents[0].value
        kind = "config" if source.path == "config.yaml" else value["kind"].lower()
        schema = json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text())
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
        assert errors == [], (source.path, [e.message for e in errors])
