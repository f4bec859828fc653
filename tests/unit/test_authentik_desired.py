"""The pure AuthPolicy -> Authentik mapping and the field-by-field plan."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from hecate_agent.authentik.desired import (
    MappingError,
    ProtectedRoute,
    Ref,
    attributes_expression,
    desired_objects,
    duration,
    groups_expression,
)
from hecate_agent.authentik.plan import LiveObject, LiveState, plan

ROUTE = ProtectedRoute(
    route="app",
    domain="app.example.com",
    scheme="https",
    policy="staff",
    flow="default-authentication-flow",
    groups=("employees", "contractors"),
    mfa="required",
    allowed_methods=("password", "webauthn", "totp"),
    session_duration=4 * 3600,
    required_attributes=("employee_id", "department"),
)


def by_ident(objects: list[Any]) -> dict[tuple[str, str], Any]:
    return {(o.kind, o.key): o for o in objects}


def evaluate(expression: str, groups: set[str], attributes: dict[str, Any] | None) -> tuple[bool, list[str]]:
    """Runs an expression-policy body the way Authentik does: as the body of a function."""
    messages: list[str] = []
    user = SimpleNamespace(attributes=attributes, groups=groups)
    request = SimpleNamespace(user=user)

    def ak_is_group_member(member: Any, **filters: str) -> bool:
        assert set(filters) == {"name"}
        return filters["name"] in member.groups

    source = "def handler(request, ak_is_group_member, ak_message):\n" + textwrap.indent(expression, "    ")
    namespace: dict[str, Any] = {}
    exec(compile(source, "<policy>", "exec"), namespace)
    return namespace["handler"](request, ak_is_group_member, messages.append), messages


def test_duration_uses_authentiks_semicolon_format() -> None:
    assert duration(4 * 3600) == "hours=4"
    assert duration(5400) == "hours=1;minutes=30"
    assert duration(90061) == "days=1;hours=1;minutes=1;seconds=1"
    assert duration(0) == "seconds=0"
    with pytest.raises(MappingError):
        duration(-1)


def test_a_full_policy_maps_to_the_documented_objects() -> None:
    objects = by_ident(desired_objects([ROUTE]))
    assert set(objects) == {
        ("policy", "hecate-staff-groups"),
        ("policy", "hecate-staff-attributes"),
        ("flow", "hecate-staff-authorization"),
        ("validate_stage", "hecate-staff-mfa"),
        ("flow_binding", "hecate-staff-authorization/hecate-staff-mfa"),
        ("login_stage", "hecate-staff-login"),
        ("flow_binding", "hecate-staff-authorization/hecate-staff-login"),
        ("provider", "hecate-app"),
        ("application", "hecate-app"),
        ("policy_binding", "hecate-app/hecate-staff-groups"),
        ("policy_binding", "hecate-app/hecate-staff-attributes"),
        ("outpost_provider", "goauthentik.io/outposts/embedded/hecate-app"),
    }
    provider = objects[("provider", "hecate-app")].fields
    assert provider == {
        "mode": "forward_single",
        "external_host": "https://app.example.com",
        "authorization_flow": Ref("flow", "hecate-staff-authorization"),
        "invalidation_flow": Ref("flow", "default-provider-invalidation-flow"),
        "authentication_flow": Ref("flow", "default-authentication-flow"),
        "access_token_validity": "hours=4",
    }
    app = objects[("application", "hecate-app")].fields
    assert app["meta_publisher"] == "hecate" and app["policy_engine_mode"] == "all"
    assert app["provider"] == Ref("provider", "hecate-app")
    stage = objects[("validate_stage", "hecate-staff-mfa")].fields
    assert stage == {"device_classes": ["webauthn", "totp"], "not_configured_action": "deny",
                     "last_auth_threshold": "hours=4"}
    assert objects[("login_stage", "hecate-staff-login")].fields == {"session_duration": "hours=4"}
    flow = objects[("flow", "hecate-staff-authorization")].fields
    assert flow["designation"] == "authorization" and flow["authentication"] == "require_authenticated"


def test_mapping_is_deterministic_and_fingerprints_follow_the_fields() -> None:
    first = desired_objects([ROUTE, replace(ROUTE, route="other", domain="other.example.com")])
    second = desired_objects([replace(ROUTE, route="other", domain="other.example.com"), ROUTE])
    assert first == second
    changed = by_ident(desired_objects([replace(ROUTE, session_duration=3600)]))
    assert changed[("provider", "hecate-app")].fingerprint != by_ident(first)[("provider", "hecate-app")].fingerprint
    assert changed[("application", "hecate-app")].fingerprint == by_ident(first)[("application", "hecate-app")].fingerprint


def test_mfa_variants_and_plain_http() -> None:
    plain = by_ident(desired_objects([replace(ROUTE, mfa="disabled", session_duration=None, scheme="http")]))
    assert ("flow", "hecate-staff-authorization") not in plain
    assert not any(kind.endswith("stage") for kind, _ in plain)
    provider = plain[("provider", "hecate-app")].fields
    assert provider["external_host"] == "http://app.example.com"
    assert provider["authorization_flow"] == Ref("flow", "default-provider-authorization-implicit-consent")
    assert provider["access_token_validity"] == "hours=1"
    optional = by_ident(desired_objects([replace(ROUTE, mfa="optional", allowed_methods=())]))
    stage = optional[("validate_stage", "hecate-staff-mfa")].fields
    assert stage["not_configured_action"] == "skip"
    assert stage["device_classes"] == ["webauthn", "totp", "static", "duo", "sms", "email"]


def test_refusals_name_the_route_and_field() -> None:
    with pytest.raises(MappingError, match=r"route 'app'.*allowedMethods.*only password"):
        desired_objects([replace(ROUTE, allowed_methods=("password",))])
    with pytest.raises(MappingError, match="allowedMethods has carrier-pigeon"):
        desired_objects([replace(ROUTE, allowed_methods=("carrier-pigeon",))])
    with pytest.raises(MappingError, match="both map to Authentik policy 'hecate-staff-groups'"):
        desired_objects([ROUTE, replace(ROUTE, route="b", domain="b.example.com", groups=("admins",))])
    with pytest.raises(MappingError, match="sessionDuration must be positive"):
        desired_objects([replace(ROUTE, session_duration=0)])


def test_groups_expression_passes_a_member_of_any_group() -> None:
    expression = groups_expression(["employees", "contractors"])
    assert evaluate(expression, {"contractors"}, {}) == (True, [])
    assert evaluate(expression, {"employees", "x"}, {})[0] is True
    passed, messages = evaluate(expression, {"visitors"}, {})
    assert passed is False and messages


def test_attributes_expression_needs_every_attribute_present_and_non_empty() -> None:
    expression = attributes_expression(["employee_id", "department"])
    assert evaluate(expression, set(), {"employee_id": "42", "department": "ops"})[0] is True
    assert evaluate(expression, set(), {"employee_id": 0, "department": False})[0] is True  # present, not empty
    for missing in ({"employee_id": "42"}, {"employee_id": "42", "department": ""},
                    {"employee_id": "  ", "department": "ops"}, {"employee_id": [], "department": "ops"},
                    {"employee_id": None, "department": "ops"}, {}, None):
        passed, messages = evaluate(expression, set(), missing)
        assert passed is False, missing
        assert messages and messages[0].startswith("Missing required attribute: ")


def test_names_are_quoted_so_they_stay_data() -> None:
    hostile = ["it's \"odd\"\n", "x'); import os; os.system('true'); ('"]
    expression = attributes_expression(hostile)
    assert evaluate(expression, set(), {hostile[0]: "v", hostile[1]: "v"})[0] is True
    assert evaluate(expression, set(), {hostile[0]: "v"})[0] is False
    groups = groups_expression(hostile)
    assert evaluate(groups, {hostile[1]}, {})[0] is True
    assert evaluate(groups, {"x"}, {})[0] is False


# --- plan ------------------------------------------------------------------------------------

def live_from(desired: list[Any], **overrides: dict[str, Any]) -> LiveState:
    objects = []
    index: dict[tuple[str, str], str | int] = {("flow", s): f"uuid-{s}" for s in (
        "default-authentication-flow", "default-provider-invalidation-flow",
        "default-provider-authorization-implicit-consent")}
    for n, obj in enumerate(desired):
        fields = {**obj.fields, **overrides.get(obj.key, {})}
        objects.append(LiveObject(obj.kind, obj.key, n, fields))
        index[(obj.kind, obj.key)] = n
    return LiveState(tuple(objects), index, {"default-authentication-flow": "authentication"},
                     ("application:grafana",), "goauthentik.io/outposts/embedded", "outpost-uuid", ())


def test_plan_creates_everything_in_dependency_order_then_nothing() -> None:
    desired = desired_objects([ROUTE])
    empty = LiveState(index={("flow", "default-authentication-flow"): "a",
                             ("flow", "default-provider-invalidation-flow"): "b"},
                      flow_designations={"default-authentication-flow": "authentication"}, outpost_pk="o")
    changes = plan(desired, empty)
    assert [c.action for c in changes.changes] == ["create"] * len(desired)
    kinds = [c.kind for c in changes.changes]
    assert kinds.index("flow") < kinds.index("flow_binding") < kinds.index("provider") < kinds.index("application")
    assert kinds.index("application") < kinds.index("policy_binding") < kinds.index("outpost_provider")
    assert not changes.problems
    assert plan(desired, live_from(desired)).empty


def test_server_rewritten_fields_are_not_drift_but_owned_fields_are() -> None:
    desired = desired_objects([ROUTE])
    live = live_from(desired, **{"hecate-app": {"property_mappings": ["m1", "m2", "m3", "m4"],
                                                "redirect_uris": [{"url": "x"}]}})
    assert plan(desired, live).empty
    drifted = live_from(desired, **{"hecate-app": {"external_host": "https://evil.example.com"}})
    changes = plan(desired, drifted)
    (change,) = changes.changes
    assert (change.action, change.kind, change.key) == ("update", "provider", "hecate-app")
    assert [(d.name, d.before, d.after) for d in change.diff] == [
        ("external_host", "https://evil.example.com", "https://app.example.com")]
    assert "    external_host: 'https://evil.example.com' -> 'https://app.example.com'" in changes.lines()


def test_list_order_is_not_drift() -> None:
    desired = desired_objects([ROUTE])
    live = live_from(desired, **{"hecate-staff-mfa": {"device_classes": ["totp", "webauthn"]}})
    assert plan(desired, live).empty


def test_removed_routes_delete_ours_in_reverse_order_and_leave_the_rest() -> None:
    old = desired_objects([ROUTE])
    live = live_from(old)
    changes = plan([], live)
    assert {c.action for c in changes.changes} == {"delete"}
    kinds = [c.kind for c in changes.changes]
    assert kinds[0] == "outpost_provider" and kinds.index("application") < kinds.index("provider")
    assert kinds.index("provider") < kinds.index("flow")
    assert changes.unmanaged == ("application:grafana",)
    assert "  authentik unmanaged (left alone): application:grafana" in changes.lines()


def test_plan_reports_a_missing_or_wrong_authentication_flow() -> None:
    desired = desired_objects([replace(ROUTE, flow="nope")])
    assert any("names flow:nope" in p for p in plan(desired, live_from([])).problems)
    live = replace(live_from([]), flow_designations={"default-authentication-flow": "enrollment"})
    problems = plan(desired_objects([ROUTE]), live).problems
    assert any("designation is 'enrollment'" in p for p in problems)


def test_plan_lines_hide_registered_secrets() -> None:
    from hecate_agent import redaction

    secret = "s3cr3t-token-value-1234"
    redaction.register([secret])
    desired = desired_objects([replace(ROUTE, domain=f"{secret}.example.com")])
    text = "\n".join(plan(desired, live_from([])).lines())
    assert secret not in text and redaction.MASK in text


def test_change_sets_serialise_with_refs_and_without_secrets() -> None:
    import json

    from hecate_agent import redaction

    secret = "another-s3cr3t-value-5678"
    redaction.register([secret])
    data = plan(desired_objects([replace(ROUTE, domain=f"{secret}.example.com")]), live_from([])).to_dict()
    text = json.dumps(data)
    assert secret not in text
    provider = next(c for c in data["changes"] if c["kind"] == "provider")
    assert provider["action"] == "create"
    assert {"name": "invalidation_flow", "before": None,
            "after": {"$ref": "flow:default-provider-invalidation-flow"}} in provider["fields"]
