"""Grouped host routes (render/caddy_layout.py): same routing as the flat list, stable groups, plans per route."""

from __future__ import annotations

import copy
import re
from typing import Any

from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, caddy_id, render_caddy
from hecate_agent.render.caddy_layout import GROUP_MIN_ROUTES, group_routes
from hecate_agent.targets.caddy import caddy_resources
from tests.helpers import desired_state, route

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}


def many(exact: int, wildcards: int, extra: tuple[dict[str, Any], ...] = ()) -> Any:
    docs = [route(f"r{i}", f"r{i}.example.com", tls=PLAIN) for i in range(exact)]
    docs += [route(f"w{i}", f"*.w{i}.example.com", tls=PLAIN) for i in range(wildcards)]
    docs += [route(f"d{i}", f"*.d{i}.deep.example.com", tls=PLAIN) for i in range(wildcards // 2)]
    return desired_state(*docs, *extra)


def plain_routes(owned: dict[str, Any]) -> list[dict[str, Any]]:
    return list(owned["apps"]["http"]["servers"]["hecate_http"]["routes"])


# --- a model of how Caddy 2.6.2 picks a route (modules/caddyhttp/matchers.go, routes.go, headers.go) -----------


def _labels_match(pattern: str, host: str) -> bool:
    parts, incoming = pattern.split("."), host.split(".")
    return len(parts) == len(incoming) and all(p == "*" or p.lower() == h.lower() for p, h in zip(parts, incoming, strict=True))


def _host_matches(hosts: list[str], host: str) -> bool:
    if len(hosts) > 100:  # large(): binary search of the exact names, case-sensitive; then the fuzzy ones
        if host in {h for h in hosts if "*" not in h}:
            return True
        return any(_labels_match(h, host) for h in hosts if "*" in h)
    return any(_labels_match(h, host) if "*" in h else h.lower() == host.lower() for h in hosts)


def _matches(matcher: dict[str, Any], host: str) -> bool:
    (kind, value), = matcher.items()
    if kind == "host":
        return _host_matches(value, host)
    if kind == "vars":
        (key, values), = value.items()
        index = int(re.fullmatch(r"\{http\.request\.host\.labels\.(\d+)\}", key).group(1))  # type: ignore[union-attr]
        labels = host.split(".")
        return index < len(labels) and labels[len(labels) - index - 1] in values
    if kind == "header_regexp":
        return re.search(value["Host"]["pattern"], host) is not None
    raise AssertionError(f"unexpected matcher {kind}")


def pick(routes: list[dict[str, Any]], host: str) -> tuple[str | None, str]:
    """(@id of the route that answers, the host as the handlers see it)."""
    for r in routes:
        if "match" in r and not any(_matches(m, host) for m in r["match"]):
            continue
        handler = r["handle"][0]
        if handler["handler"] == "headers":
            for rule in handler["request"]["replace"]["Host"]:
                host = host.replace(rule["search"], rule["replace"])
            continue
        if handler["handler"] == "subroute" and not r.get("terminal"):
            found, host = pick(handler["routes"], host)
            if found is not None:
                return found, host
            continue
        return r["@id"], host
    return None, host


# --- tests ---------------------------------------------------------------------------------------------------------


def test_small_configs_keep_the_flat_list() -> None:
    owned = render_caddy(many(GROUP_MIN_ROUTES - 1, 0), CaddySettings(), CaddyCapabilities())
    assert all(r["@id"].startswith(("hecate-route-", "hecate-not-found")) for r in plain_routes(owned))


def test_grouped_routes_answer_every_host_as_the_flat_list_does() -> None:
    state = many(400, 60)
    grouped = plain_routes(render_caddy(state, CaddySettings(), CaddyCapabilities()))
    assert any(r["@id"].startswith("hecate-group.exact.") for r in grouped)
    assert any(r["@id"].startswith("hecate-group.wildcard-4.") for r in grouped)
    assert grouped[0]["@id"] == "hecate-host-case.http" and grouped[-2]["@id"] == "hecate-not-found.http"
    # Never reached (after the catch-all), but where Caddy's automatic HTTPS looks for names to manage.
    assert grouped[-1]["@id"] == "hecate-host-names.http"
    assert len(grouped[-1]["match"][0]["host"]) == 90 and all(h.startswith("*.") for h in grouped[-1]["match"][0]["host"])
    top_level_hosts = {h for r in grouped for m in r.get("match", []) for h in m.get("host", [])}
    assert top_level_hosts == {r.doc.spec.domain for r in state.routes}
    hosts = [f"r{i}.example.com" for i in range(400)] + [f"x.w{i}.example.com" for i in range(60)]
    hosts += [f"x.d{i}.deep.example.com" for i in range(30)]
    expected = [f"hecate-route-r{i}.http" for i in range(400)] + [f"hecate-route-w{i}.http" for i in range(60)]
    expected += [f"hecate-route-d{i}.http" for i in range(30)]
    for host, route_id in zip(hosts, expected, strict=True):
        assert pick(grouped, host)[0] == route_id, host
        assert pick(grouped, host.upper())[0] == route_id, host  # case-insensitive, as a one-host matcher is
        assert pick(grouped, host.upper())[1] == host  # the backend sees the host lowercased
    for miss in ("a.b.w1.example.com", "w1.example.com", "r1.example.org", "x.r1.example.com", "example.com"):
        assert pick(grouped, miss)[0] == "hecate-not-found.http", miss


def test_large_host_lists_are_case_insensitive_through_the_host_case_route() -> None:
    """Thousands of hosts: host lists over 100 entries, which Caddy 2.6.2 compares case-sensitively."""
    def site(i: int, host: str) -> dict[str, Any]:
        return {"@id": f"hecate-route-{i}", "match": [{"host": [host]}], "handle": [{"handler": "subroute"}],
                "terminal": True}

    hosts = [f"h{i}.example.com" for i in range(3000)] + [f"*.t{i}.example.com" for i in range(300)]
    catch_all = {"@id": "hecate-not-found", "handle": [{"handler": "x"}], "terminal": True}
    flat = [site(i, h) for i, h in enumerate(hosts)] + [catch_all]
    grouped = group_routes(flat, caddy_id)
    groups = [r for r in grouped if r["@id"].startswith("hecate-group.exact.")]
    assert len(groups) == 16 and all(len(g["match"][0]["host"]) > 100 for g in groups)
    for i, host in enumerate(hosts):
        asked = host.replace("*", "x")
        assert pick(grouped, asked)[0] == pick(flat, asked)[0] == f"hecate-route-{i}"
        assert pick(grouped, asked.title())[0] == f"hecate-route-{i}"
    without_case_route = [r for r in grouped if r["@id"] != "hecate-host-case"]
    assert pick(without_case_route, "H7.example.com")[0] == "hecate-not-found"  # what the case route is for


def test_exact_host_wins_over_a_wildcard_in_groups() -> None:
    state = many(300, 10, (route("special", "x.w3.example.com", tls=PLAIN),))
    grouped = plain_routes(render_caddy(state, CaddySettings(), CaddyCapabilities()))
    assert pick(grouped, "x.w3.example.com")[0] == "hecate-route-special.http"
    assert pick(grouped, "y.w3.example.com")[0] == "hecate-route-w3.http"


def test_inner_routes_are_the_flat_routes_unchanged() -> None:
    state = many(300, 20)
    flat_owned = render_caddy(state, CaddySettings(), CaddyCapabilities())
    inner = [r for g in plain_routes(flat_owned) if g["@id"].startswith("hecate-group.") for r in g["handle"][0]["routes"]]
    assert len(inner) == 330
    assert all(r["terminal"] is True and r["match"] == [{"host": [r["match"][0]["host"][0]]}] for r in inner)
    assert len({r["@id"] for r in inner}) == 330


def test_adding_a_route_changes_one_group() -> None:
    before = plain_routes(render_caddy(many(500, 0), CaddySettings(), CaddyCapabilities()))
    after = plain_routes(
        render_caddy(many(500, 0, (route("new", "new.example.com", tls=PLAIN),)), CaddySettings(), CaddyCapabilities())
    )
    changed = [a["@id"] for a, b in zip(before, after, strict=True) if a != b]
    assert len(before) == len(after) and len(changed) == 1 and changed[0].startswith("hecate-group.exact.")


def test_group_routes_leaves_other_layouts_alone() -> None:
    make = caddy_id
    odd = [{"@id": f"x{i}", "match": [{"host": [f"h{i}.example.com"]}, {"path": ["/a"]}]} for i in range(300)]
    assert group_routes(odd, make) == odd
    wildcard_first = [{"@id": "w", "match": [{"host": ["*.example.com"]}]}] + [
        {"@id": f"r{i}", "match": [{"host": [f"r{i}.example.com"]}]} for i in range(300)
    ]
    assert group_routes(wildcard_first, make) == wildcard_first  # not the renderer's order: not regrouped
    no_catch_all = [{"@id": f"r{i}", "match": [{"host": [f"r{i}.example.com"]}]} for i in range(300)]
    assert group_routes(no_catch_all, make) == no_catch_all  # the route naming wildcards could be reached


def test_plan_resources_are_per_route_whatever_the_layout() -> None:
    state = many(300, 20)
    owned = render_caddy(state, CaddySettings(), CaddyCapabilities())
    resources, unmanaged = caddy_resources(owned, "hecate")
    assert unmanaged == []
    assert len([k for k in resources if k.startswith("Route/")]) == 330
    assert resources["Route/r7"]["http"]["@id"] == "hecate-route-r7.http"
    server_ids = [r["@id"] for r in resources["Server/hecate_http"]["routes"]]
    assert server_ids == ["hecate-host-case.http", "hecate-not-found.http"]  # the groups derive from the routes

    # An outer route changed behind the agent's back is drift of the server, not hidden.
    live = copy.deepcopy(owned)
    group = next(r for r in plain_routes(live) if r["@id"].startswith("hecate-group.exact."))
    group["match"][0]["host"].pop()
    live_resources, _ = caddy_resources(live, "hecate")
    assert live_resources["Server/hecate_http"] != resources["Server/hecate_http"]
    names = copy.deepcopy(owned)
    plain_routes(names)[-1]["match"][0]["host"].pop()
    assert caddy_resources(names, "hecate")[0]["Server/hecate_http"] != resources["Server/hecate_http"]
    removed = copy.deepcopy(owned)
    assert removed["apps"]["http"]["servers"]["hecate_http"]["routes"].pop()["@id"] == "hecate-host-names.http"
    assert caddy_resources(removed, "hecate")[0]["Server/hecate_http"] != resources["Server/hecate_http"]
    assert {k: v for k, v in live_resources.items() if k.startswith("Route/")} == {
        k: v for k, v in resources.items() if k.startswith("Route/")
    }


def test_a_new_wildcard_changes_its_route_only_in_the_plan() -> None:
    before, _ = caddy_resources(render_caddy(many(300, 20), CaddySettings(), CaddyCapabilities()), "hecate")
    extra = (route("extra", "*.extra.example.com", tls=PLAIN),)
    after, _ = caddy_resources(render_caddy(many(300, 20, extra), CaddySettings(), CaddyCapabilities()), "hecate")
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} == {"Route/extra"}


def test_foreign_route_inside_a_group_is_reported_and_kept() -> None:
    owned = render_caddy(many(300, 0), CaddySettings(), CaddyCapabilities())
    live = copy.deepcopy(owned)
    group = next(r for r in plain_routes(live) if r["@id"].startswith("hecate-group.exact."))
    group["handle"][0]["routes"].append({"@id": "theirs", "match": [{"host": ["t.example.com"]}]})
    resources, unmanaged = caddy_resources(live, "hecate")
    assert any("theirs" in u for u in unmanaged)
    assert {"@id": "theirs", "match": [{"host": ["t.example.com"]}]} in resources["Server/hecate_http"]["routes"]
