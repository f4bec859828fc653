"""The Authentik adapter against the protocol-level Authentik server (real HTTP, real authentik-client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import authentik_client as ak
import pytest

from hecate_agent.authentik.api import AuthentikError
from hecate_agent.authentik.client import AuthentikTarget
from hecate_agent.authentik.desired import DEFAULT_TOKEN_VALIDITY, Ref, desired_objects
from tests.support.authentik_checks import converge, desired_for, edited, route, settled
from tests.support.authentik_server import DEFAULT_SCOPES, EMBEDDED, FakeAuthentik
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[FakeAuthentik]:
    fake = FakeAuthentik()
    fake.max_page_size = 2  # every listing spans pages
    yield fake
    fake.close()
    assert fake.state.problems == []  # no request the real API would reject, no response its models refuse


@pytest.fixture
def target(server: FakeAuthentik) -> AuthentikTarget:
    return AuthentikTarget(server.url, server.token)


def raw(server: FakeAuthentik, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(server.url + "/api/v3" + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token or server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def by_name(server: FakeAuthentik, kind: str, field: str = "name") -> dict[str, dict[str, Any]]:
    return {o[field]: o for o in server.all(kind)}


def unmanaged_app(server: FakeAuthentik) -> tuple[int, str]:
    """Someone else's provider + application, attached to the embedded outpost."""
    flows = by_name(server, "flow", "slug")
    status, provider = raw(server, "POST", "/providers/proxy/", {
        "name": "grafana", "mode": "forward_single", "external_host": "https://grafana.example.com",
        "authorization_flow": flows["default-provider-authorization-implicit-consent"]["pk"],
        "invalidation_flow": flows["default-provider-invalidation-flow"]["pk"]})
    assert status == 201, provider
    status, app = raw(server, "POST", "/core/applications/", {"name": "Grafana", "slug": "grafana",
                                                               "provider": provider["pk"]})
    assert status == 201, app
    outpost = server.embedded()
    status, _ = raw(server, "PATCH", f"/outposts/instances/{outpost['pk']}/", {"providers": [provider["pk"]]})
    assert status == 200
    return provider["pk"], app["pk"]


def test_apply_creates_exactly_the_expected_objects(server: FakeAuthentik, target: AuthentikTarget) -> None:
    unmanaged_app(server)
    changes = converge(target, desired_for(route()))
    assert {c.action for c in changes.changes} == {"create"}
    assert changes.unmanaged == ("application:grafana", "provider:grafana")
    flows = {o["pk"]: o for o in server.all("flow")}
    slug = {pk: f["slug"] for pk, f in flows.items()}

    providers = by_name(server, "provider")
    assert set(providers) == {"grafana", "hecate-app"}
    provider = providers["hecate-app"]
    assert provider["mode"] == "forward_single" and provider["external_host"] == "https://app.example.com"
    assert slug[provider["authorization_flow"]] == "hecate-staff-authorization"
    assert slug[provider["invalidation_flow"]] == "default-provider-invalidation-flow"
    assert slug[provider["authentication_flow"]] == "default-authentication-flow"
    assert provider["access_token_validity"] == "hours=4"
    assert isinstance(provider["pk"], int) and set(DEFAULT_SCOPES) <= set(provider["property_mappings"])

    apps = by_name(server, "application", "slug")
    assert set(apps) == {"grafana", "hecate-app"}
    app = apps["hecate-app"]
    assert (app["provider"], app["meta_publisher"], app["policy_engine_mode"]) == (provider["pk"], "hecate", "all")

    policies = by_name(server, "policy")
    assert set(policies) == {"hecate-staff-groups", "hecate-staff-attributes"}
    assert "'employees', 'contractors'" in policies["hecate-staff-groups"]["expression"]
    assert "'employee_id', 'department'" in policies["hecate-staff-attributes"]["expression"]
    bindings = {(b["target"], b["policy"], b["order"]) for b in server.all("policy_binding")}
    assert bindings == {(app["pk"], policies["hecate-staff-groups"]["pk"], 10),
                        (app["pk"], policies["hecate-staff-attributes"]["pk"], 20)}

    flow = by_name(server, "flow", "slug")["hecate-staff-authorization"]
    assert (flow["designation"], flow["authentication"]) == ("authorization", "require_authenticated")
    (mfa,) = server.all("validate_stage")
    assert (mfa["name"], mfa["device_classes"], mfa["not_configured_action"]) == (
        "hecate-staff-mfa", ["webauthn", "totp"], "deny")
    (login,) = server.all("login_stage")
    assert (login["name"], login["session_duration"]) == ("hecate-staff-login", "hours=4")
    stage_bindings = {(b["target"], b["stage"], b["order"]) for b in server.all("flow_binding")}
    assert stage_bindings == {(flow["pk"], mfa["pk"], 10), (flow["pk"], login["pk"], 100)}

    assert sorted(server.embedded()["providers"]) == sorted([providers["grafana"]["pk"], provider["pk"]])
    assert settled(target, desired_for(route()))  # Authentik's own rewrites (scopes, redirect_uris) are not drift


def test_editing_the_policy_updates_in_place(server: FakeAuthentik, target: AuthentikTarget) -> None:
    converge(target, desired_for(route()))
    before = {kind: {o["pk"] for o in server.all(kind)} for kind in
              ("provider", "application", "flow", "validate_stage", "login_stage", "flow_binding")}
    policies_before = by_name(server, "policy")
    changes = converge(target, desired_for(edited(route())))
    assert {c.action for c in changes.changes} == {"update"}  # same names, so nothing is recreated
    after = {kind: {o["pk"] for o in server.all(kind)} for kind in before}
    assert after == before
    assert {n: p["pk"] for n, p in by_name(server, "policy").items()} == {
        n: p["pk"] for n, p in policies_before.items()}
    provider = by_name(server, "provider")["hecate-app"]
    assert provider["external_host"] == "https://editedapp.example.com"
    assert provider["access_token_validity"] == "hours=1"
    (mfa,) = server.all("validate_stage")
    assert mfa["device_classes"] == ["webauthn"]
    assert "'admins'" in by_name(server, "policy")["hecate-staff-groups"]["expression"]
    assert settled(target, desired_for(edited(route())))


def test_removing_the_route_removes_ours_and_leaves_the_rest(server: FakeAuthentik, target: AuthentikTarget) -> None:
    grafana_provider, grafana_app = unmanaged_app(server)
    converge(target, desired_for(route()))
    changes = converge(target, [])
    assert {c.action for c in changes.changes} == {"delete"}
    assert [o["name"] for o in server.all("provider")] == ["grafana"]
    assert [(o["slug"], o["pk"], o["provider"]) for o in server.all("application")] == [
        ("grafana", grafana_app, grafana_provider)]
    for kind in ("policy", "policy_binding", "validate_stage", "login_stage", "flow_binding"):
        assert server.all(kind) == [], kind
    assert sorted(o["slug"] for o in server.all("flow")) == [
        "default-authentication-flow", "default-provider-authorization-implicit-consent",
        "default-provider-invalidation-flow"]
    assert server.embedded()["providers"] == [grafana_provider]


def test_drift_on_our_provider_is_detected_and_corrected(server: FakeAuthentik, target: AuthentikTarget) -> None:
    converge(target, desired_for(route()))
    provider = by_name(server, "provider")["hecate-app"]
    status, _ = raw(server, "PATCH", f"/providers/proxy/{provider['pk']}/",
                    {"mode": "forward_single", "external_host": "https://evil.example.com",
                     "access_token_validity": "days=30"})
    assert status == 200
    changes = target.plan(desired_for(route()), target.read_live())
    assert [(c.action, c.kind, c.key) for c in changes.changes] == [("update", "provider", "hecate-app")]
    assert {d.name for d in changes.changes[0].diff} == {"external_host", "access_token_validity"}
    target.apply(changes)
    assert by_name(server, "provider")["hecate-app"]["external_host"] == "https://app.example.com"
    assert by_name(server, "provider")["hecate-app"]["pk"] == provider["pk"]
    assert settled(target, desired_for(route()))


def test_restore_from_a_snapshot(server: FakeAuthentik, target: AuthentikTarget) -> None:
    converge(target, desired_for(route()))
    snapshot = target.snapshot()
    assert snapshot.outpost_providers == tuple(server.embedded()["providers"])
    converge(target, desired_for(edited(route()), route("-two")))
    assert not settled(target, list(snapshot.objects))
    target.restore(snapshot)
    assert settled(target, list(snapshot.objects))
    assert settled(target, desired_for(route()))
    assert [o["name"] for o in server.all("provider")] == ["hecate-app"]


def test_a_failed_write_leaves_nothing_half_applied(server: FakeAuthentik, target: AuthentikTarget) -> None:
    server.fail_after_writes = 4
    with pytest.raises(AuthentikError, match=r"HTTP 503.*rolled back") as failure:
        converge(target, desired_for(route()))
    assert server.token not in str(failure.value)
    for kind in ("provider", "application", "policy", "policy_binding", "validate_stage", "login_stage"):
        assert server.all(kind) == [], kind
    assert len(server.all("flow")) == 3 and server.embedded()["providers"] == []
    converge(target, desired_for(route()))
    server.fail_after_writes = 2
    with pytest.raises(AuthentikError, match="rolled back"):
        converge(target, desired_for(edited(route())))
    assert settled(target, desired_for(route()))
    server.fail_after_writes, server.failures = 1, 1000  # Authentik stays broken: the rollback fails too
    with pytest.raises(AuthentikError, match="rolling back also failed, Authentik is half-changed"):
        converge(target, desired_for(edited(route())))
    server.fail_after_writes = None


def test_authentik_down_or_unreachable_is_an_authentik_error(server: FakeAuthentik, target: AuthentikTarget) -> None:
    server.down = True
    with pytest.raises(AuthentikError, match=r"HTTP 503.*Authentik is down") as failure:
        converge(target, desired_for(route()))
    assert server.token not in str(failure.value)
    server.down = False
    assert server.all("provider") == []
    gone = AuthentikTarget(f"http://127.0.0.1:{free_port()}", server.token, timeout=2)
    with pytest.raises(AuthentikError, match="cannot reach Authentik"):
        gone.read_live()


def test_a_wrong_token_is_named_without_being_shown(server: FakeAuthentik) -> None:
    wrong = "ak-wrong-token-9876543210abcdef"
    with pytest.raises(AuthentikError, match=r"HTTP 401: Token invalid/expired .*tokenFile") as failure:
        AuthentikTarget(server.url, wrong).read_live()
    assert wrong not in str(failure.value) and wrong not in repr(AuthentikTarget(server.url, wrong))


def test_a_missing_authentication_flow_refuses_before_writing(server: FakeAuthentik, target: AuthentikTarget) -> None:
    from dataclasses import replace

    changes = target.plan(desired_for(replace(route(), flow="no-such-flow")), target.read_live())
    assert any("flow:no-such-flow" in p for p in changes.problems)
    writes = sum(1 for method, _ in server.state.requests if method != "GET")
    with pytest.raises(AuthentikError, match="nothing applied"):
        target.apply(changes)
    assert sum(1 for method, _ in server.state.requests if method != "GET") == writes


def test_the_server_speaks_authentiks_rules(server: FakeAuthentik) -> None:
    flows = by_name(server, "flow", "slug")
    provider = {"name": "dup", "mode": "forward_single", "external_host": "https://dup.example.com",
                "authorization_flow": flows["default-provider-authorization-implicit-consent"]["pk"],
                "invalidation_flow": flows["default-provider-invalidation-flow"]["pk"]}
    status, made = raw(server, "POST", "/providers/proxy/", provider)
    assert status == 201 and isinstance(made["pk"], int)
    assert raw(server, "POST", "/providers/proxy/", provider) == (
        400, {"name": ["provider with this name already exists."]})
    assert raw(server, "PATCH", f"/providers/proxy/{made['pk']}/", {"external_host": "https://x"})[0] == 400
    missing = {k: v for k, v in provider.items() if k != "invalidation_flow"} | {"name": "other"}
    assert raw(server, "POST", "/providers/proxy/", missing)[0] == 400  # required since 2024.10
    assert raw(server, "POST", "/core/applications/", {"name": "a", "slug": "a", "provider": made["pk"]})[0] == 201
    assert raw(server, "POST", "/core/applications/", {"name": "b", "slug": "a"}) == (
        400, {"slug": ["Application with this slug already exists."]})
    assert raw(server, "POST", "/core/applications/", {"name": "b", "slug": "b", "provider": made["pk"]}) == (
        400, {"provider": ["Application with this provider already exists."]})
    assert raw(server, "GET", "/providers/proxy/?name=nothing-matches")[1]["pagination"]["count"] == 1  # ignored
    assert raw(server, "GET", "/providers/proxy/?name__iexact=DUP")[1]["pagination"]["count"] == 1
    assert raw(server, "GET", "/outposts/instances/?managed__iexact=" + EMBEDDED)[1]["pagination"]["count"] == 1
    outpost = server.embedded()["pk"]
    assert raw(server, "PATCH", f"/outposts/instances/{outpost}/", {"providers": [made["pk"]]})[0] == 200
    assert raw(server, "PATCH", f"/outposts/instances/{outpost}/", {"providers": []})[1]["providers"] == []
    assert raw(server, "GET", "/providers/proxy/", token="nope")[0] == 401
    assert raw(server, "POST", "/policies/expression/", {"name": "p", "expression": "return True",
                                                         "colour": "red"})[0] == 400
    assert server.state.problems == ["policy: fields ['colour'] are not in ExpressionPolicyRequest (Authentik "
                                     "ignores them)"]
    server.state.problems.clear()
    assert DEFAULT_TOKEN_VALIDITY == "hours=1"


def test_a_refused_create_names_the_field_and_rolls_back(server: FakeAuthentik, target: AuthentikTarget) -> None:
    # Stage names are unique across stage types: a user-login stage squatting on our validation stage's name.
    status, _ = raw(server, "POST", "/stages/user_login/", {"name": "hecate-staff-mfa"})
    assert status == 201
    with pytest.raises(AuthentikError) as failure:
        converge(target, desired_for(route()))
    message = str(failure.value)
    assert "creating validate_stage hecate-staff-mfa: HTTP 400: name: stage with this name already exists." in message
    assert "rolled back" in message and server.token not in message
    assert server.all("flow_binding") == [] and [s["name"] for s in server.all("login_stage")] == ["hecate-staff-mfa"]
    assert len(server.all("flow")) == 3


def test_field_names_and_values_are_accepted_by_the_clients_request_models() -> None:
    """Every owned field exists on the request model and every enum value is one the client knows."""
    models = {"flow": ak.FlowRequest, "validate_stage": ak.AuthenticatorValidateStageRequest,
              "login_stage": ak.UserLoginStageRequest, "flow_binding": ak.FlowStageBindingRequest,
              "policy": ak.ExpressionPolicyRequest, "provider": ak.ProxyProviderRequest,
              "application": ak.ApplicationRequest, "policy_binding": ak.PolicyBindingRequest}
    fake_uuid = "6a1b7b56-3f43-4b57-9b5e-1e9f2b1f2f10"
    for obj in desired_objects([route()]):
        if obj.kind == "outpost_provider":
            continue
        body = {k: (7 if v == Ref("provider", "hecate-app") else fake_uuid) if isinstance(v, Ref) else v
                for k, v in obj.fields.items()}
        if obj.kind in ("flow", "application"):
            body["slug"] = obj.key
        elif obj.kind not in ("flow_binding", "policy_binding"):
            body["name"] = obj.key
        model = models[obj.kind]
        assert set(body) <= set(model.model_fields), obj.kind
        model.model_validate(body)


def test_moving_a_route_to_another_policy_keeps_its_provider(server: FakeAuthentik, target: AuthentikTarget) -> None:
    """The old policy's flow goes only after the provider points elsewhere (Authentik cascades flow deletes)."""
    from dataclasses import replace

    converge(target, desired_for(route()))
    provider_pk = by_name(server, "provider")["hecate-app"]["pk"]
    converge(target, desired_for(replace(route(), policy="admins", mfa="disabled", session_duration=None)))
    provider = by_name(server, "provider")["hecate-app"]
    assert provider["pk"] == provider_pk
    flows = {f["pk"]: f["slug"] for f in server.all("flow")}
    assert flows[provider["authorization_flow"]] == "default-provider-authorization-implicit-consent"
    assert "hecate-staff-authorization" not in flows.values()
    assert sorted(by_name(server, "policy")) == ["hecate-admins-attributes", "hecate-admins-groups"]
    assert server.all("validate_stage") == [] and server.all("login_stage") == []
    assert server.embedded()["providers"] == [provider_pk]


def test_a_snapshot_survives_json(server: FakeAuthentik, target: AuthentikTarget) -> None:
    from hecate_agent.authentik.client import Snapshot

    converge(target, desired_for(route()))
    snapshot = target.snapshot()
    again = Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())))
    assert again == snapshot
    converge(target, [])
    target.restore(again)
    assert settled(target, desired_for(route()))
