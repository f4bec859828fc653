"""The Authentik engine target's pure parts: specs → protected routes, states keyed as resources."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from hecate_agent.authentik.desired import desired_objects
from hecate_agent.settings import AgentSettings
from hecate_agent.targets.authentik import (
    DEFAULT_AUTHENTICATION_FLOW,
    AuthentikEngineTarget,
    objects_of,
    protected_routes,
    state_of,
)
from tests.helpers import auth_policy, route


def specs(*docs: dict) -> dict:
    return {f"{d['kind']}/{d['metadata']['name']}": {"metadata": d["metadata"], "spec": d["spec"]} for d in docs}


def test_routes_naming_a_policy_become_protected_routes() -> None:
    found = protected_routes(specs(
        route("app", "app.example.com", authPolicy="staff"),
        route("plain", "plain.example.com", authPolicy="open", tls={"autoHTTPS": False}),
        route("public", "public.example.com"),
        auth_policy("staff", flow="corp-login", allowedMethods=["password", "webauthn"],
                    requirements={"groups": ["a", "b"], "mfa": "required", "sessionDuration": "4h"},
                    metadata={"required": ["employee_id"]}),
        auth_policy("open"),
    ))
    assert [(r.route, r.scheme, r.domain, r.policy) for r in found] == [
        ("app", "https", "app.example.com", "staff"), ("plain", "http", "plain.example.com", "open")]
    app, plain = found
    assert (app.flow, app.groups, app.mfa, app.allowed_methods, app.session_duration, app.required_attributes) == (
        "corp-login", ("a", "b"), "required", ("password", "webauthn"), 4 * 3600, ("employee_id",))
    assert (plain.flow, plain.mfa, plain.session_duration, plain.groups) == (
        DEFAULT_AUTHENTICATION_FLOW, "disabled", None, ())


def test_states_round_trip_and_are_keyed_as_authentik_resources() -> None:
    docs = specs(route("app", "app.example.com", authPolicy="staff"),
                 auth_policy("staff", requirements={"groups": ["g"], "mfa": "required"},
                             allowedMethods=["totp", "webauthn"]))
    objects = desired_objects(protected_routes(docs))
    state = state_of(objects)
    assert state_of(objects_of(state)) == state  # what the journal and the snapshot keep reads back whole
    provider = state["objects"]["provider|hecate-app"]
    assert provider["authentication_flow"] == {"$ref": "flow:default-authentication-flow"}
    assert state["objects"]["validate_stage|hecate-staff-mfa"]["device_classes"] == ["totp", "webauthn"]
    target = AuthentikEngineTarget.__new__(AuthentikEngineTarget)  # resources() is pure: no client needed
    resources, unmanaged = target.resources({**state, "unmanaged": ["Authentik provider:grafana"]})
    assert "AuthentikProvider/hecate-app" in resources and "AuthentikApplication/hecate-app" in resources
    assert "AuthentikOutpostProvider/goauthentik.io/outposts/embedded/hecate-app" in resources
    assert unmanaged == ["Authentik provider:grafana"]


def test_importing_the_target_does_not_import_authentik_client() -> None:
    code = "import sys, hecate_agent.targets.authentik, hecate_agent.runtime.wiring; " \
           "print('authentik_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(("authentik", "extra", "message"), [
    ({"provisioning": "agent"}, {}, "needs authentik.url and exactly one of authentik.tokenFile and authentik.token"),
    ({"provisioning": "agent", "url": "https://auth.example.com"}, {}, "exactly one of"),
    ({"provisioning": "agent", "url": "https://auth.example.com", "tokenFile": "/t", "token": "${vault:a#b}"}, {},
     "exactly one of"),
    ({"provisioning": "agent", "url": "https://auth.example.com", "token": "${vault:a#b}"}, {},
     "authentik.token is a Vault reference: set the vault section"),
    ({"provisioning": "agent", "url": "https://auth.example.com", "token": "ak-plain-token"}, {},
     "String should match pattern"),
])
def test_agent_provisioning_settings_are_checked(authentik: dict, extra: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        AgentSettings.model_validate({"authentik": authentik, **extra})


def test_agent_provisioning_settings_accepted() -> None:
    settings = AgentSettings.model_validate({"authentik": {"provisioning": "agent", "url": "https://a.example.com",
                                                           "tokenFile": "/etc/hecate-agent/authentik-token"}})
    assert settings.authentik is not None and settings.authentik.manage is False
    assert settings.authentik.follower_wait.seconds == 60
