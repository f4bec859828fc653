"""Issue 11, security holes: group matchers that cannot match everyone, identity headers no route can
forge, one entry per header whatever its spelling, collision-free @ids, and a last walk over the rendered
JSON that refuses any brace the renderer did not write."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hecate_agent.render.caddy_common as caddy_module
from hecate_agent.render.caddy import RenderError, caddy_id, render_caddy
from hecate_agent.spec.loader import LoadResult, SourceFile, load_specs
from hecate_agent.targets.caddy import caddy_resources
from tests.helpers import auth_policy, config, desired_state, dump_yaml, route

OUTPOST = config(authentik={"outpostUrl": "http://127.0.0.1:9000"})


def load(*docs: dict[str, Any], global_config: dict[str, Any] | None = None) -> LoadResult:
    files = [SourceFile(f"specs/{i}.yaml", dump_yaml(d).encode()) for i, d in enumerate(docs)]
    if global_config is not None:
        files.append(SourceFile("config.yaml", dump_yaml(global_config).encode()))
    return load_specs(files)


def ids(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "@id"] + [i for v in node.values() for i in ids(v)]
    if isinstance(node, list):
        return [i for v in node for i in ids(v)]
    return []


def find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [f for v in node.values() for f in find(v, key)]
    if isinstance(node, list):
        return [f for v in node for f in find(v, key)]
    return []


# --- 1. groups -----------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["", " ", "\t", "\u3000", "|", "a|b", " admins", "admins ", "a\nb", "{x}"])
def test_a_group_that_could_match_users_outside_it_is_refused(group: str) -> None:
    doc = auth_policy(requirements={"groups": ["staff", group]})
    result = load(doc)
    assert result.state is None
    [problem] = result.problems
    assert problem.field == "spec.requirements.groups[1]", problem
    line = dump_yaml(doc).splitlines()[problem.line - 1]
    assert line[: problem.column - 1].strip() == "-" and "staff" not in line, (line, problem)
    assert "group name" in problem.message


def group_pattern(groups: list[str]) -> str:
    state = desired_state(route(authPolicy="staff"), auth_policy(requirements={"groups": groups}),
                          global_config=OUTPOST)
    owned = render_caddy(state)
    [matcher] = [m for m in find(owned, "header_regexp") if "X-Authentik-Groups" in m]
    return str(matcher["X-Authentik-Groups"]["pattern"])


GROUP_TEXT = st.text(st.sampled_from([*"ab .*+?()[]{}^$\\|-_", "\u3000", "é", "\t"]), max_size=8)


@settings(max_examples=400, deadline=None)
@given(groups=st.lists(GROUP_TEXT, min_size=1, max_size=3))
def test_an_accepted_group_matcher_matches_its_groups_and_nothing_else(groups: list[str]) -> None:
    result = load(route(authPolicy="staff"), auth_policy(requirements={"groups": groups}), global_config=OUTPOST)
    if result.state is None:
        return  # refused with a message
    pattern = re.compile(group_pattern(groups))  # RE2 and Python agree on escaped text, anchors and '|'
    for group in groups:
        assert pattern.search(group) and pattern.search(f"other|{group}|more"), (groups, group)
    for unrelated in ["", "|", "||", "other", "other|another", "x||y", " ", "admins"]:
        if unrelated not in groups and not any(g in unrelated.split("|") for g in groups):
            assert not pattern.search(unrelated), (groups, unrelated)


# --- 2. identity headers -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X-Authentik-Username", "x-authentik-groups", "X-AUTHENTIK-UID", "X_Authentik_Email",
                                  "x-authentik-anything"])
@pytest.mark.parametrize("where", ["set", "remove"])
@pytest.mark.parametrize("guarded", [True, False])
def test_a_route_cannot_set_or_remove_the_identity_forward_auth_supplies(name: str, where: str, guarded: bool) -> None:
    upstream: dict[str, Any] = {"set": {name: "admin"}} if where == "set" else {"remove": [name]}
    doc = route(headers={"upstream": upstream}, **({"authPolicy": "staff"} if guarded else {}))
    result = load(doc, auth_policy(), global_config=OUTPOST)
    assert result.state is None
    [problem] = result.problems
    expected = f"spec.headers.upstream.set.{name}" if where == "set" else "spec.headers.upstream.remove[0]"
    assert problem.field == expected and problem.line >= 1
    assert "identity header" in problem.message and "forge" in problem.message


def test_response_headers_may_still_name_authentik() -> None:
    assert load(route(headers={"set": {"X-Authentik-Info": "x"}})).state is not None


# --- 5. header names are case-insensitive ----------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "field", "fragment"),
    [
        ({"set": {"X-A": "1", "x-a": "2"}}, "spec.headers.set.x-a", "one header"),
        ({"set": {"X-A": "1"}, "remove": ["x-A"]}, "spec.headers.remove[0]", "either set or removed"),
        ({"remove": ["X-A", "x-a"]}, "spec.headers.remove[1]", "already listed"),
        ({"upstream": {"set": {"X-Key": "1", "x-key": "2"}}}, "spec.headers.upstream.set.x-key", "one header"),
        ({"upstream": {"set": {"X-Key": "1"}, "remove": ["X-KEY"]}}, "spec.headers.upstream.remove[0]",
         "either set or removed"),
    ],
)
def test_two_spellings_of_one_header_in_one_rule_are_an_error(headers: dict[str, Any], field: str,
                                                              fragment: str) -> None:
    result = load(route(headers=headers))
    assert result.state is None
    [problem] = result.problems
    assert (problem.field, problem.file) == (field, "specs/0.yaml") and problem.line > 1 and problem.column > 1
    assert fragment in problem.message


def test_the_position_is_the_second_spelling() -> None:
    result = load(route(headers={"set": {"X-A": "1", "x-a": "2"}}))
    text = dump_yaml(route(headers={"set": {"X-A": "1", "x-a": "2"}})).splitlines()
    [problem] = result.problems
    assert text[problem.line - 1][problem.column - 1:].startswith("x-a:")


def test_global_headers_in_two_spellings_are_an_error() -> None:
    result = load(route(), global_config=config(security={"headers": {"X-A": "1", "x-a": "2"}}))
    assert [p.field for p in result.problems] == ["global.security.headers.x-a"]


@pytest.mark.parametrize("headers", [{"set": {"x-request-id": "1"}}, {"upstream": {"set": {"X-Request-Id": "1"}}},
                                     {"remove": ["X-REQUEST-ID"]}])
def test_request_id_middleware_owns_its_header(headers: dict[str, Any]) -> None:
    result = load(route(headers=headers, middleware=["request-id"]))
    assert result.state is None and "request-id middleware" in result.problems[0].message
    assert load(route(headers=headers)).state is not None


def test_a_route_header_replaces_a_global_one_of_any_spelling() -> None:
    state = desired_state(route(headers={"set": {"strict-transport-security": "max-age=0"}}),
                          route("b", "b.example.com"),
                          global_config=config(security={"headers": {"Strict-Transport-Security": "max-age=1",
                                                                     "X-Frame-Options": "DENY"}}))
    owned = render_caddy(state)
    servers = owned["apps"]["http"]["servers"]["hecate"]["routes"]
    by_id = {r["@id"]: r for r in servers}
    [app_set] = [h["response"]["set"] for h in find(by_id["hecate-route-app"], "handle")[0][0]["routes"][0]["handle"]
                 if h.get("handler") == "headers"]
    assert app_set == {"strict-transport-security": ["max-age=0"], "X-Frame-Options": ["DENY"]}
    [b_set] = [h["response"]["set"] for h in find(by_id["hecate-route-b"], "handle")[0][0]["routes"][0]["handle"]
               if h.get("handler") == "headers"]
    assert b_set == {"Strict-Transport-Security": ["max-age=1"], "X-Frame-Options": ["DENY"]}


def test_request_id_replaces_a_global_header_of_any_spelling() -> None:
    state = desired_state(route(middleware=["request-id"]),
                          global_config=config(security={"headers": {"x-request-id": "fixed"}}))
    responses = find(render_caddy(state), "response")
    assert responses and all(r["set"] == {"X-Request-ID": ["{http.request.uuid}"]} for r in responses), responses


# --- 6. collision-free ids -----------------------------------------------------------------------


PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def test_routes_foo_on_plain_http_and_foo_http_get_different_ids() -> None:
    state = desired_state(route("foo", "foo.example.com", tls=PLAIN), route("foo-http", "bar.example.com"),
                          route("x", "x.example.com", authPolicy="staff", tls=PLAIN), auth_policy(),
                          global_config=OUTPOST)
    owned = render_caddy(state)
    found = ids(owned)
    assert len(found) == len(set(found)), sorted(found)
    assert {"hecate-route-foo.http", "hecate-route-foo-http", "hecate-redirect-foo-http.http"} <= set(found)
    resources, unmanaged = caddy_resources(owned, "hecate")
    assert not unmanaged
    assert {"Route/foo", "Route/foo-http", "Route/x", "AuthPolicy/staff"} <= set(resources)
    assert set(resources["Route/foo"]) == {"http"} and set(resources["Route/foo-http"]) == {"http", "https"}


def test_ids_from_before_the_dot_suffix_are_still_attributed() -> None:
    live = {"apps": {"http": {"servers": {"hecate_http": {"routes": [{"@id": "hecate-route-foo-http"}]}}}}}
    assert "Route/foo" in caddy_resources(live, "hecate")[0]


@pytest.mark.parametrize(("args", "plain", "expected"), [
    (("route", "app"), False, "hecate-route-app"), (("route", "app"), True, "hecate-route-app.http"),
    (("auth", "staff", "app", "groups"), False, "hecate-auth.staff.app.groups"), (("server",), True, "hecate-server.http"),
])
def test_the_id_scheme(args: tuple[str, ...], plain: bool, expected: str) -> None:
    assert caddy_id(*args, plain=plain) == expected


def test_a_duplicate_id_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caddy_module, "PLAIN_SUFFIX", "-http")  # the old scheme, which collided
    state = desired_state(route("foo", "foo.example.com", tls=PLAIN), route("foo-http", "bar.example.com"))
    with pytest.raises(RenderError) as caught:
        render_caddy(state)
    assert any("'hecate-route-foo-http'" in p and "share the @id" in p for p in caught.value.problems)


# --- 3. the last walk: no brace the renderer did not write -----------------------------------------


HOSTILE = st.lists(st.sampled_from(["{", "}", "{env.SECRET}", "{http.request.uri.query.x}", "a", "%", ":80", "[",
                                    "]", "{http.request.host}"]), min_size=1, max_size=6).map("".join)


def forged_state(field: str, value: str) -> Any:
    """A state whose route holds `value` in `field`, past every validator (as a bug in one would let it)."""
    state = desired_state(route(headers={"set": {"X-A": "1"}, "upstream": {"set": {"X-B": "2"}}},
                                healthCheck={"path": "/h"}, canary={"upstream": "10.0.0.2:80", "percentage": 5}))
    located = state.routes[0]
    spec = located.doc.spec
    headers = spec.headers
    assert spec.canary is not None and spec.health_check is not None
    update: dict[str, Any] = {
        "dial": lambda: {"upstreams": [spec.upstreams[0].model_copy(update={"dial": value})]},
        "canary": lambda: {"canary": spec.canary.model_copy(update={"upstream": value})},
        "response-header": lambda: {"headers": headers.model_copy(update={"set": {"X-A": value}})},
        "header-name": lambda: {"headers": headers.model_copy(update={"set": {value: "1"}})},
        "upstream-header": lambda: {"headers": headers.model_copy(
            update={"upstream": headers.upstream.model_copy(update={"set": {"X-B": value}})})},
        "path": lambda: {"health_check": spec.health_check.model_copy(update={"path": value})},
        "domain": lambda: {"domain": value},
    }[field]()
    doc = located.doc.model_copy(update={"spec": spec.model_copy(update=update)})
    return dataclasses.replace(state, routes=(dataclasses.replace(located, doc=doc),))


@settings(max_examples=300, deadline=None)
@given(value=HOSTILE, field=st.sampled_from(["dial", "canary", "response-header", "header-name", "upstream-header",
                                             "path", "domain"]))
def test_a_foreign_brace_anywhere_in_the_output_is_refused(value: str, field: str) -> None:
    rest = re.sub(r"\{http\.request\.host\}", "", value)
    try:
        owned = render_caddy(forged_state(field, value))
    except RenderError as exc:
        if "{" in rest or "}" in rest:
            assert any("Route/app: the rendered field" in p and "did not write" in p for p in exc.problems)
            if field != "header-name" and len(value) >= 4:  # the text itself is never quoted (a key is a path)
                assert all(value not in p for p in exc.problems if "did not write" in p)
        return
    assert "{" not in rest and "}" not in rest, owned


def test_the_refusal_names_route_and_field() -> None:
    with pytest.raises(RenderError) as caught:
        render_caddy(forged_state("dial", "[fe80::1%{http.request.uri.query.x}]:80"))
    assert any(p.startswith("Route/app: the rendered field handle[0].routes[") and ".dial " in p
               for p in caught.value.problems), caught.value.problems
