"""Plans without proxies: diffs, resource extraction from Caddy configs, drift, output formats."""

from __future__ import annotations

import json

from hecate_agent.plan import FieldChange, json_diff, make_plan, offline_plan
from hecate_agent.plan_report import render_json, render_markdown, render_text
from hecate_agent.render.bundle import render_all, spec_documents
from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings
from hecate_agent.targets.caddy import caddy_resources
from tests.helpers import auth_policy, config, desired_state, route


def state(*docs):
    return desired_state(*docs, global_config=config(authentik={"outpostUrl": "http://o:9000"}))


def rendered(*docs):
    return render_all(state(*docs), "r", caddy=CaddySettings(), capabilities=CaddyCapabilities(), environment={})


def test_json_diff_paths() -> None:
    before = {"a": {"b": [1, 2]}, "c": "x", "gone": True}
    after = {"a": {"b": [1, 3, 4]}, "c": "x", "new": 1}
    assert json_diff(before, after) == [
        FieldChange("a.b[1]", 2, 3), FieldChange("a.b[2]", None, 4),
        FieldChange("gone", True, None), FieldChange("new", None, 1),
    ]


def test_caddy_resources_attribute_auth_objects_to_their_policy() -> None:
    r = rendered(route("app", authPolicy="staff"), auth_policy("staff", requirements={"groups": ["ops"]}))
    resources, unmanaged = caddy_resources(r.caddy_owned, "hecate")
    assert {"Route/app", "AuthPolicy/staff", "Server/hecate", "Server/hecate_http", "TLS/certificates"} <= set(resources)
    assert "hecate-auth.staff.app.groups" in resources["AuthPolicy/staff"]
    assert '"@ref": "hecate-auth.staff.app.forward"' in json.dumps(resources["Route/app"])
    assert unmanaged == []


def test_unmanaged_objects_are_listed() -> None:
    live = {"apps": {"http": {"servers": {"theirs": {}, "hecate": {"routes": [{"handle": []}]}}}, "layer4": {}}}
    _, unmanaged = caddy_resources(live, "hecate")
    assert unmanaged == ["route (no @id) in Caddy server 'hecate'", "Caddy server 'theirs'", "Caddy app 'layer4'"]


def _plan(desired, live, last=None):
    desired_resources = caddy_resources(desired.caddy_owned, "hecate")[0]
    live_resources = caddy_resources(live.caddy_owned, "hecate")[0] if live else {}
    last_resources = caddy_resources(last.caddy_owned, "hecate")[0] if last else None
    return make_plan(revision="new", desired=desired_resources, desired_specs=desired.specs, live=live_resources,
                     last=last_resources, last_specs=last.specs if last else None, last_revision="old" if last else None,
                     desired_fingerprint=desired.fingerprint, live_fingerprint="x")


def test_field_level_change_is_explained_in_spec_terms() -> None:
    old = rendered(route("app", upstreams=[{"dial": "a:3000"}, {"dial": "b:3000"}]))
    new = rendered(route("app", upstreams=[{"dial": "a:3000"}, {"dial": "c:3000"}]))
    plan = _plan(new, old, old)
    [change] = [c for c in plan.changes if c.action != "unchanged"]
    assert (change.key, change.action) == ("Route/app", "update")
    assert change.fields == (FieldChange("spec.upstreams[1].dial", "b:3000", "c:3000"),)
    assert not change.drift
    assert plan.summary_line().startswith("Plan: 0 to create, 1 to update, 0 to delete")


def test_drift_is_reported_and_healed() -> None:
    good = rendered(route("app", upstreams=[{"dial": "a:3000"}]))
    tampered = rendered(route("app", upstreams=[{"dial": "evil:3000"}]))
    plan = _plan(good, tampered, good)
    [change] = [c for c in plan.changes if c.key == "Route/app"]
    assert change.action == "update" and change.drift
    assert any(d.after == "evil:3000" for d in change.drift)
    assert "drift" in render_text(plan)


def test_create_and_delete_and_no_changes() -> None:
    one = rendered(route("a", "a.example.com"))
    two = rendered(route("b", "b.example.com"))
    plan = _plan(two, one, one)
    actions = {c.key: c.action for c in plan.changes if c.kind == "Route"}
    assert actions == {"Route/a": "delete", "Route/b": "create"}
    assert not _plan(one, one, one).has_changes


def test_outputs() -> None:
    old = rendered(route("app", upstreams=[{"dial": "a:1"}]))
    new = rendered(route("app", upstreams=[{"dial": "b:1"}]))
    plan = _plan(new, old, old)
    text = render_text(plan)
    assert '  ~ Route/app  (update)\n      spec.upstreams[0].dial: "a:1" → "b:1"' in text
    assert "\033[" not in text and "\033[33m" in render_text(plan, colour=True)
    data = json.loads(render_json(plan))
    assert data["formatVersion"] == 1 and data["summary"]["update"] == 1
    assert data["changes"][0]["fields"] == [{"path": "spec.upstreams[0].dial", "before": "a:1", "after": "b:1"}]
    markdown = render_markdown(plan)
    assert "| ~ | `Route/app` | update; `spec.upstreams[0].dial` |" in markdown and "<details>" in markdown


def test_offline_plan_compares_specs_only() -> None:
    base = spec_documents(state(route("a", "a.example.com"), route("gone", "g.example.com")))
    head = spec_documents(state(route("a", "a.example.com", upstreams=[{"dial": "x:1"}]), route("new", "n.example.com")))
    plan = offline_plan("HEAD", "HEAD~1", head, base)
    actions = {c.key: c.action for c in plan.changes if c.action != "unchanged"}
    assert actions == {"Route/a": "update", "Route/gone": "delete", "Route/new": "create"}
    assert plan.offline and "specs only" in render_text(plan)


def test_secrets_are_redacted_in_field_changes() -> None:
    plan = make_plan(revision="r", desired={"Route/a": {"x": "token-SECRET-1"}}, desired_specs={},
                     live={"Route/a": {"x": "old"}}, last=None, last_specs=None, last_revision=None,
                     desired_fingerprint="", live_fingerprint="", secrets=frozenset({"token-SECRET-1"}))
    assert "token-SECRET-1" not in render_json(plan) and "<redacted>" in render_json(plan)
    assert "(sensitive value changed)" in render_text(plan)
    assert "old" not in render_json(plan)  # the value before a rotation is not shown either
