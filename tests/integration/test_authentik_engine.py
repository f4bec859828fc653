"""Authentik as the engine's third target, end to end: `hecate-agent plan/apply` on a node with real
Caddy 2.6.2 against the protocol-level Authentik server (every request checked with authentik-client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.authentik.client import AuthentikTarget
from hecate_agent.authentik.desired import desired_objects
from hecate_agent.targets.authentik import protected_routes
from tests.helpers import auth_policy, dump_yaml, route, write_repo
from tests.integration.test_authentik_target import by_name, unmanaged_app
from tests.support.authentik_server import FakeAuthentik
from tests.support.node import NodeUnderTest

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
POLICY = {
    "flow": "default-authentication-flow",
    "requirements": {"groups": ["employees", "contractors"], "mfa": "required", "sessionDuration": "4h"},
    "allowedMethods": ["password", "webauthn", "totp"],
    "metadata": {"required": ["employee_id", "department"]},
}


@pytest.fixture
def authentik() -> Iterator[FakeAuthentik]:
    fake = FakeAuthentik()
    yield fake
    fake.close()
    assert fake.state.problems == []


def configure(node: NodeUnderTest, server: FakeAuthentik, tmp_path: Path, **extra: Any) -> Path:
    token = tmp_path / "authentik-token"
    token.write_text(server.token + "\n")
    node.configure(authentik={"provisioning": "agent", "url": server.url, "tokenFile": str(token), "manage": True,
                              "outpostUrl": "http://127.0.0.1:9", **extra})
    return token


def files(policy: dict[str, Any] | None = None, *, protected: bool = True) -> dict[str, str]:
    found = {f"routes/open{i}.yaml": dump_yaml(route(f"open{i}", f"open{i}.example.com", tls=PLAIN))
             for i in range(4)}  # removing the protected route stays under the mass-deletion guard
    if protected:
        found["routes/app.yaml"] = dump_yaml(route("app", "app.example.com", tls=PLAIN, authPolicy="staff"))
        found["policies/staff.yaml"] = dump_yaml(auth_policy("staff", **(policy or POLICY)))
    return found


def ours(server: FakeAuthentik) -> dict[str, set[str]]:
    names = {"flow": "slug", "application": "slug"}
    kinds = ("flow", "validate_stage", "login_stage", "policy", "provider", "application")
    return {k: {o[names.get(k, "name")] for o in server.all(k) if o[names.get(k, "name")].startswith("hecate-")}
            for k in kinds}


def caddy_config(node: NodeUnderTest) -> str:
    with node.caddy.admin() as admin:
        return json.dumps(admin.get_config().config, sort_keys=True)


def status(node: NodeUnderTest) -> dict[str, Any]:
    return dict(json.loads((node.state_dir / "status.json").read_text()))


def test_apply_edit_remove_and_authentik_down(node: NodeUnderTest, authentik: FakeAuthentik, tmp_path: Path) -> None:
    configure(node, authentik, tmp_path)
    grafana_provider, grafana_app = unmanaged_app(authentik)
    repo = write_repo(tmp_path / "repo", files())

    planned = node.cli("plan", str(repo))
    assert planned.returncode == 2, planned.stderr  # 2: changes pending
    for resource in ("AuthentikProvider/hecate-app", "AuthentikApplication/hecate-app",
                     "AuthentikPolicy/hecate-staff-groups", "AuthentikValidateStage/hecate-staff-mfa"):
        assert resource in planned.stdout, planned.stdout
    assert 'external_host: (none) → "http://app.example.com"' in planned.stdout, planned.stdout  # field by field
    assert "Authentik application:grafana" in planned.stdout  # unmanaged, listed, left alone
    assert authentik.token not in planned.stdout + planned.stderr

    applied = node.cli("apply", str(repo), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert ours(authentik) == {
        "flow": {"hecate-staff-authorization"}, "validate_stage": {"hecate-staff-mfa"},
        "login_stage": {"hecate-staff-login"}, "policy": {"hecate-staff-groups", "hecate-staff-attributes"},
        "provider": {"hecate-app"}, "application": {"hecate-app"},
    }
    provider = by_name(authentik, "provider")["hecate-app"]
    assert provider["external_host"] == "http://app.example.com"  # the route serves plain HTTP
    assert provider["access_token_validity"] == "hours=4"
    (mfa,) = authentik.all("validate_stage")
    assert (sorted(mfa["device_classes"]), mfa["not_configured_action"]) == (["totp", "webauthn"], "deny")
    assert sorted(authentik.embedded()["providers"]) == sorted([grafana_provider, provider["pk"]])
    client = AuthentikTarget(authentik.url, authentik.token)
    spec_docs = {"Route/app": {"spec": route("app", "app.example.com", tls=PLAIN, authPolicy="staff")["spec"]},
                 "AuthPolicy/staff": {"spec": auth_policy("staff", **POLICY)["spec"]}}
    assert client.plan(desired_objects(protected_routes(spec_docs)), client.read_live()).empty  # exactly these
    assert "app.example.com" in caddy_config(node)
    component = status(node)["components"]["authentik"]
    assert component["healthy"] is True and component["role"] == "provisions (manage: true)"
    shown = node.cli("status").stdout
    assert f"authentik: healthy: reachable at {authentik.url} (provisions (manage: true))" in shown, shown
    last = json.loads((node.state_dir / "last-applied.json").read_text())
    assert "authentik|provider|hecate-app" not in last["parts"]["authentik"]["objects"]
    assert "provider|hecate-app" in last["parts"]["authentik"]["objects"]

    # Editing the policy updates in place: same pks, new values; the plan shows it field by field.
    edited = {**POLICY, "requirements": {"groups": ["admins"], "mfa": "required", "sessionDuration": "1h"}}
    write_repo(repo, files(edited))
    planned = node.cli("plan", str(repo))
    assert "AuthentikPolicy/hecate-staff-groups" in planned.stdout and "expression" in planned.stdout, planned.stdout
    assert 'access_token_validity: "hours=4" → "hours=1"' in planned.stdout, planned.stdout
    pks = {k: {o["pk"] for o in authentik.all(k)} for k in ("provider", "application", "policy", "login_stage")}
    applied = node.cli("apply", str(repo), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert {k: {o["pk"] for o in authentik.all(k)} for k in pks} == pks
    assert by_name(authentik, "provider")["hecate-app"]["access_token_validity"] == "hours=1"
    assert "'admins'" in by_name(authentik, "policy")["hecate-staff-groups"]["expression"]

    # Removing the route removes ours (after Caddy let go) and leaves the unmanaged application.
    (repo / "routes/app.yaml").unlink()
    (repo / "policies/staff.yaml").unlink()
    applied = node.cli("apply", str(repo), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert ours(authentik) == {k: set() for k in ours(authentik)}
    assert [(o["slug"], o["pk"], o["provider"]) for o in authentik.all("application")] == [
        ("grafana", grafana_app, grafana_provider)]
    assert authentik.embedded()["providers"] == [grafana_provider]
    assert "app.example.com" not in caddy_config(node)

    # Authentik down: the route that needs a new provider does not reach Caddy; the LKG keeps serving.
    before = caddy_config(node)
    lkg = json.loads((node.state_dir / "last-applied.json").read_text())["revision"]
    write_repo(repo, files())
    authentik.down = True
    refused = node.cli("apply", str(repo), "--yes")
    assert refused.returncode != 0
    assert "authentik" in refused.stderr.lower() and "503" in refused.stderr, refused.stderr
    assert authentik.token not in refused.stderr
    assert caddy_config(node) == before
    assert json.loads((node.state_dir / "last-applied.json").read_text())["revision"] == lkg
    document = status(node)
    assert document["phase"] == "Degraded" and document["lastAttempt"]["outcome"] == "error"
    assert document["components"]["authentik"]["healthy"] is False
    assert "authentik: unhealthy: " in node.cli("status").stdout
    authentik.down = False
    assert node.cli("apply", str(repo), "--yes").returncode == 0  # retried once it is back
    assert ours(authentik)["provider"] == {"hecate-app"}
