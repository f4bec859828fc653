"""Active stream health decided by the agent: thresholds, the never-all rule, and the rendered `down` marks."""

from __future__ import annotations

from hecate_agent.render.nginx import render_nginx
from hecate_agent.stream_health import (
    ProbeState,
    down_from_status,
    down_servers,
    health_notes,
    observe,
    upstream_blocks,
)
from tests.helpers import desired_state, stream


def run(results: list[bool], unhealthy: int = 3, healthy: int = 2) -> list[bool]:
    state, seen = ProbeState(), []
    for ok in results:
        state = observe(state, ok, unhealthy_threshold=unhealthy, healthy_threshold=healthy)
        seen.append(state.up)
    return seen


def test_thresholds_both_ways() -> None:
    assert run([False, False, False]) == [True, True, False]
    assert run([False, False, True, False, False]) == [True, True, True, True, True]  # a success resets the run
    assert run([False, False, False, True, True]) == [True, True, False, False, True]
    assert run([False, False, False, True, False, True, True]) == [True, True, False, False, False, False, True]
    assert run([False], unhealthy=1, healthy=1) == [False]
    assert run([False, True], unhealthy=1, healthy=1) == [False, True]


SPEC = {"upstreams": [{"server": "a:5432"}, {"server": "b:5432"}, {"server": "c:5432", "backup": True}]}


def test_unhealthy_servers_are_marked_but_never_all_of_a_block() -> None:
    sick = ProbeState(up=False)
    assert down_servers(SPEC, {"a:5432": sick}) == {"a:5432"}
    assert down_servers(SPEC, {"a:5432": sick, "b:5432": sick}) == {"a:5432", "b:5432"}  # the backup takes over
    assert down_servers(SPEC, {"a:5432": sick, "b:5432": sick, "c:5432": sick}) == frozenset()
    assert down_servers(SPEC, {}) == frozenset()


def test_presets_are_judged_per_port() -> None:
    spec = {"preset": "wazuh", "upstreams": [{"server": "m1"}, {"server": "m2"}]}
    assert upstream_blocks(spec) == [["m1:1514", "m2:1514"], ["m1:1515", "m2:1515"]]
    sick = ProbeState(up=False)
    assert down_servers(spec, {"m1:1514": sick, "m1:1515": sick, "m2:1515": sick}) == {"m1:1514"}


def test_marked_servers_are_rendered_down_and_only_with_a_health_check() -> None:
    checked = stream("db", healthCheck={"type": "tcp"}, upstreams=[{"server": "10.0.0.1:5432"},
                                                                   {"server": "10.0.0.2:5432"}])
    state = desired_state(checked)
    files = render_nginx(state, {"db": frozenset({"10.0.0.2:5432"})})
    assert "    server 10.0.0.1:5432 weight=1 max_fails=1 fail_timeout=10s;\n" in files["db.conf"]
    assert "    server 10.0.0.2:5432 weight=1 max_fails=1 fail_timeout=10s down;\n" in files["db.conf"]
    assert render_nginx(state) != files and " down;" not in render_nginx(state)["db.conf"]
    unchecked = desired_state(stream("db", upstreams=[{"server": "10.0.0.1:5432"}, {"server": "10.0.0.2:5432"}]))
    assert " down;" not in render_nginx(unchecked, {"db": frozenset({"10.0.0.2:5432"})})["db.conf"]


def test_marks_round_trip_through_status_and_show_as_health_in_plans() -> None:
    components = {"streams": {"db": {"a:1": {"up": False, "markedDown": True}, "b:1": {"up": True,
                                                                                  "markedDown": False}}}}
    down = down_from_status(components)
    assert down == {"db": frozenset({"a:1"})}
    assert health_notes(down) == [
        "Stream/db: a:1 marked down by the agent's health check (failing probes; put back after healthyThreshold "
        "good ones)"
    ]
    assert down_from_status({}) == {}
