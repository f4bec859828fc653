"""The Caddy renderer without Caddy: ordering, weights, ids, redaction, merge, determinism."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from typing import Any

import pytest

from hecate_agent.render.caddy import (
    WEIGHTED_POLICY_MODULE,
    CaddyCapabilities,
    CaddySettings,
    RenderError,
    _upstream_counts,
    merge,
    render_caddy,
    smooth_sequence,
)
from hecate_agent.spec.loader import DesiredState
from tests.helpers import SAMPLE_REPO, auth_policy, config, desired_state, route

SETTINGS = CaddySettings()


def state_of(*docs: dict, global_config: dict | None = None) -> DesiredState:
    return desired_state(*docs, global_config=global_config)


def ids(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        if "@id" in node:
            found.append(node["@id"])
        for value in node.values():
            found += ids(value)
    elif isinstance(node, list):
        for value in node:
            found += ids(value)
    return found


def proxy_of(owned: dict, name: str) -> dict:
    server = owned["apps"]["http"]["servers"]["hecate"]
    site = next(r for r in server["routes"] if r["@id"] == f"hecate-route-{name}")
    return site["handle"][0]["routes"][-1]["handle"][-1]


def test_route_order_exact_before_wildcards_and_catch_all_last() -> None:
    owned = render_caddy(state_of(route("w", "*.a.example.com"), route("z", "z.example.com"),
                                  route("deep", "*.x.a.example.com")))
    order = [r["@id"] for r in owned["apps"]["http"]["servers"]["hecate"]["routes"]]
    assert order == ["hecate-route-z", "hecate-route-deep", "hecate-route-w", "hecate-not-found"]


def test_ids_are_unique_across_both_servers() -> None:
    owned = render_caddy(state_of(route("a", "a.example.com", tls={"forceHTTPS": False}),
                                  route("b", "b.example.com", tls={"autoHTTPS": False, "forceHTTPS": False})))
    found = ids(owned)
    assert len(found) == len(set(found)) and all(i.startswith("hecate-") for i in found)


@pytest.mark.parametrize(("weights", "expected"), [([90, 10], [9, 1]), ([2, 2, 2], [1, 1, 1]), ([3, 1], [3, 1])])
def test_upstream_counts_are_reduced(weights: list[int], expected: list[int]) -> None:
    assert _upstream_counts(weights) == expected


def test_long_expansions_are_capped_with_proportions_kept() -> None:
    counts = _upstream_counts([97, 89, 83, 100 * 97])
    assert sum(counts) <= 1000 and all(counts)


def test_smooth_sequence_spreads_evenly() -> None:
    sequence = smooth_sequence([9, 1])
    assert collections.Counter(sequence) == {0: 9, 1: 1}
    assert smooth_sequence([2, 1]) == [0, 1, 0]


def test_canary_and_weights_on_caddy_2_6_expand_the_list() -> None:
    owned = render_caddy(state_of(route("c", upstreams=[{"dial": "a:1", "weight": 2}, {"dial": "b:1"}],
                                        canary={"upstream": "k:1", "percentage": 10})))
    proxy = proxy_of(owned, "c")
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "round_robin"}
    assert collections.Counter(u["dial"] for u in proxy["upstreams"]) == {"a:1": 6, "b:1": 3, "k:1": 1}


def test_native_weighted_policy_where_caddy_has_it() -> None:
    capabilities = CaddyCapabilities("2.7.6", frozenset({WEIGHTED_POLICY_MODULE}))
    owned = render_caddy(state_of(route("c", upstreams=[{"dial": "a:1", "weight": 90}, {"dial": "b:1", "weight": 10}])),
                         capabilities=capabilities)
    proxy = proxy_of(owned, "c")
    assert proxy["upstreams"] == [{"dial": "a:1"}, {"dial": "b:1"}]
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "weighted_round_robin", "weights": [9, 1]}


def test_canary_zero_drops_the_canary() -> None:
    owned = render_caddy(state_of(route("c", canary={"upstream": "k:1", "percentage": 0})))
    assert [u["dial"] for u in proxy_of(owned, "c")["upstreams"]] == ["10.0.0.1:8080"]


def test_health_check_fails_only_where_caddy_supports_it() -> None:
    state = state_of(route("h", healthCheck={"path": "/hz", "interval": "5s", "timeout": "1s", "unhealthyThreshold": 3}))
    old = proxy_of(render_caddy(state), "h")["health_checks"]
    assert old["active"] == {"uri": "/hz", "interval": "5s", "timeout": "1s", "expect_status": 2}
    assert old["passive"] == {"max_fails": 3, "fail_duration": "15s"}
    new = proxy_of(render_caddy(state, capabilities=CaddyCapabilities("2.8.4")), "h")["health_checks"]
    assert new["active"]["fails"] == 3


def test_tls_policies_and_issuers() -> None:
    state = state_of(route("a", "a.example.com", tls={"minVersion": "1.3"}), route("b", "b.example.com"),
                     global_config=config(certificates={"provider": "letsencrypt", "email": "${ACME_EMAIL}",
                                                        "renewalWindow": "30d"}))
    owned = render_caddy(state, environment={"ACME_EMAIL": "ops@example.com"})
    policies = owned["apps"]["http"]["servers"]["hecate"]["tls_connection_policies"]
    assert policies[0] == {"@id": "hecate-tls-min-1.3", "match": {"sni": ["a.example.com"]}, "protocol_min": "tls1.3"}
    assert policies[1]["match"] == {"sni": ["b.example.com"]} and policies[-1].get("match") is None
    automation = owned["apps"]["tls"]["automation"]["policies"]
    assert automation == [{"@id": "hecate-certificates", "subjects": ["a.example.com", "b.example.com"],
                           "issuers": [{"module": "acme", "email": "ops@example.com"}], "renewal_window_ratio": 0.3333}]
    assert owned["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


def test_unset_environment_variable_is_a_render_error() -> None:
    state = state_of(route("a", authPolicy="p"), auth_policy("p"),
                     global_config=config(authentik={"outpostUrl": "${OUTPOST}"}))
    with pytest.raises(RenderError) as caught:
        render_caddy(state)
    assert caught.value.problems == [
        "global.authentik.outpostUrl references ${OUTPOST}, which is not set in the agent's environment; set it "
        "(e.g. in the systemd unit's EnvironmentFile) or write the value in config.yaml"
    ]


def test_upstream_headers_take_env_and_vault_values_and_refuse_unsafe_ones() -> None:
    headers = {"upstream": {"set": {"X-Api-Key": "Key ${vault:apps/a#api_key}", "X-Env": "$${PLAIN}"}}}
    state = state_of(route("a", headers=headers))
    owned = render_caddy(state, environment={"vault:apps/a#api_key": "k-123", "PLAIN": "p"})
    proxy = owned["apps"]["http"]["servers"]["hecate"]["routes"][0]["handle"][0]["routes"][-1]["handle"][-1]
    assert proxy["headers"]["request"]["set"] == {"X-Api-Key": ["Key k-123"], "X-Env": ["$p"]}  # in header values '$' is literal unless it starts a reference
    for unsafe in ("a{env.HOME}", "line\r\nX-Injected: 1", "nul\x00"):
        with pytest.raises(RenderError) as caught:
            render_caddy(state, environment={"vault:apps/a#api_key": unsafe, "PLAIN": "p"})
        assert caught.value.problems == [
            "Route/a: headers.upstream.set.X-Api-Key: the value of ${vault:apps/a#api_key} contains a line break, "
            "control character or '{' / '}'; Caddy would read braces as placeholders and a line break would inject "
            "headers. Store the value without them"
        ]
        assert unsafe not in str(caught.value)


def test_merge_replaces_only_owned_parts() -> None:
    live = {
        "admin": {"listen": "127.0.0.1:2999"},
        "apps": {
            "http": {"servers": {"hecate": {"listen": [":1"]}, "mine": {"listen": [":8080"]}}},
            "tls": {"automation": {"policies": [{"@id": "hecate-old"}, {"subjects": ["mine.example.com"]}]}},
            "pki": {"certificate_authorities": {"local": {"name": "mine", "install_trust": True}}},
            "other": {"x": 1},
        },
    }
    owned = render_caddy(state_of(route("a")))
    merged = merge(live, owned, SETTINGS)
    assert merged["admin"] == live["admin"] and merged["apps"]["other"] == {"x": 1}
    assert merged["apps"]["http"]["servers"]["mine"] == {"listen": [":8080"]}
    assert merged["apps"]["http"]["servers"]["hecate"] == owned["apps"]["http"]["servers"]["hecate"]
    assert [p.get("@id") for p in merged["apps"]["tls"]["automation"]["policies"]] == ["hecate-certificates", None]
    assert merged["apps"]["pki"]["certificate_authorities"]["local"] == {"name": "mine", "install_trust": False}
    assert live["apps"]["http"]["servers"]["hecate"] == {"listen": [":1"]}  # the input is not mutated


def test_rendering_is_identical_across_hash_seeds() -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from hecate_agent.sources.directory import read_directory\n"
        "from hecate_agent.spec.loader import load_specs\n"
        "from hecate_agent.render.caddy import render_caddy, to_json\n"
        f"files, _ = read_directory(Path({str(SAMPLE_REPO)!r}))\n"
        "sys.stdout.write(to_json(render_caddy(load_specs(files).state, environment={'AUTHENTIK_OUTPOST_URL': 'http://o:9000'})))\n"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
        for seed in ("0", "1", "4242", "random")
    }
    assert len(outputs) == 1
    assert json.loads(outputs.pop())["apps"]["http"]["servers"]["hecate"]["@id"] == "hecate-server"


def test_the_render_cache_gives_exactly_what_a_fresh_render_gives() -> None:
    from hecate_agent.render.caddy import RenderCache
    from hecate_agent.spec.loader import ParseCache, SourceFile, load_specs
    from tests.helpers import dump_yaml

    def files(version: int, policy_group: str = "staff") -> list[SourceFile]:
        docs = [route(f"r{i}", f"r{i}.example.com", upstreams=[{"dial": f"10.0.0.{i}:80"}],
                      authPolicy="staff" if i % 2 else None, middleware=["rate-limit:5/second"] if i == 3 else [])
                for i in range(6)]
        docs[0]["spec"]["upstreams"] = [{"dial": f"10.0.0.99:{8000 + version}"}]
        for doc in docs:
            doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
        out = [SourceFile(f"routes/r{i}.yaml", dump_yaml(d).encode()) for i, d in enumerate(docs)]
        out.append(SourceFile("policies/staff.yaml",
                              dump_yaml(auth_policy("staff", requirements={"groups": [policy_group]})).encode()))
        out.append(SourceFile("config.yaml", dump_yaml(config(authentik={"outpostUrl": "${OUTPOST}"})).encode()))
        return out

    parse_cache, render_cache = ParseCache(), RenderCache()
    with_module = CaddyCapabilities(modules=frozenset({"http.handlers.rate_limit"}))

    def both(snapshot: list[SourceFile], capabilities: CaddyCapabilities, env: dict[str, str]) -> tuple[Any, Any]:
        state = load_specs(snapshot, cache=parse_cache).state
        assert state is not None
        outcomes = []
        for cache in (None, render_cache):
            try:
                outcomes.append(render_caddy(state, SETTINGS, capabilities, env, cache))
            except RenderError as exc:
                outcomes.append(exc.problems)
        return outcomes[0], outcomes[1]

    env = {"OUTPOST": "http://127.0.0.1:9000"}
    for snapshot, capabilities, environment in [
        (files(1), with_module, env),                 # cold cache
        (files(1), with_module, env),                 # all hits
        (files(2), with_module, env),                 # one route changed
        (files(2, "sre"), with_module, env),          # a policy changed: every route depends on it
        (files(2, "sre"), with_module, {"OUTPOST": "https://auth.internal:9443"}),  # a resolved value changed
        (files(2, "sre"), CaddyCapabilities(), env),  # the module went away: the same problems, from the cache too
        (files(2, "sre"), CaddyCapabilities(), env),
    ]:
        fresh, cached = both(snapshot, capabilities, environment)
        assert cached == fresh
    # And it is a cache: an unchanged route comes back as the very same object.
    state = load_specs(files(2, "sre"), cache=parse_cache).state
    first = render_caddy(state, SETTINGS, with_module, env, render_cache)
    second = render_caddy(state, SETTINGS, with_module, env, render_cache)
    routes_of = lambda owned: owned["apps"]["http"]["servers"]["hecate"]["routes"]  # noqa: E731
    assert all(a is b for a, b in zip(routes_of(first)[:-1], routes_of(second)[:-1], strict=True))
