"""Cross-file rules and problem collection over a whole snapshot."""

from __future__ import annotations

from hecate_agent.spec.loader import SourceFile, load_specs
from tests.helpers import auth_policy, config, dump_yaml, route, stream


def snapshot(files: dict[str, object]) -> list[SourceFile]:
    out = []
    for path, docs in files.items():
        docs_list = docs if isinstance(docs, list) else [docs]
        out.append(SourceFile(path, dump_yaml(*docs_list).encode()))
    return out


def problems(files: dict[str, object]) -> list[tuple[str, int, str, str]]:
    result = load_specs(snapshot(files))
    return [(p.file, p.line, p.field, p.message) for p in result.problems]


def test_names_are_unique_per_kind_but_may_repeat_across_kinds() -> None:
    found = problems({
        "a.yaml": route(name="web", domain="a.example.com"),
        "b.yaml": route(name="web", domain="b.example.com"),
        "c.yaml": stream(name="web"),
    })
    assert len(found) == 1
    file, _, field, message = found[0]
    assert (file, field) == ("b.yaml", "metadata.name")
    assert "Route name 'web' is already used at a.yaml:" in message


def test_domains_are_unique_case_insensitively() -> None:
    found = problems({
        "a.yaml": route(name="one", domain="App.Example.com"),
        "b.yaml": route(name="two", domain="app.EXAMPLE.com"),
    })
    assert [(f, fld) for f, _, fld, _ in found] == [("b.yaml", "spec.domain")]
    assert "already served by Route/one" in found[0][3]


def test_auth_policy_must_exist_and_needs_the_outpost() -> None:
    found = problems({"r.yaml": route(authPolicy="staff"), "p.yaml": auth_policy(name="admins")})
    assert [(fld, "does not exist" in m and "known: admins" in m) for _, _, fld, m in found] == [
        ("spec.authPolicy", True)
    ]
    # Without global.authentik.outpostUrl each node's agent.yaml supplies it: a warning, not an error.
    result = load_specs(snapshot({"r.yaml": route(authPolicy="staff"), "p.yaml": auth_policy(name="staff")}))
    assert result.problems == [] and result.state is not None
    assert [(w.field, w.severity) for w in result.warnings] == [("spec.authPolicy", "warning")]
    assert "needs authentik.outpostUrl in its agent.yaml" in result.warnings[0].message
    assert problems({
        "r.yaml": route(authPolicy="staff"),
        "p.yaml": auth_policy(name="staff"),
        "config.yaml": config(authentik={"outpostUrl": "http://outpost:9000"}),
    }) == []


def test_stream_listeners_conflict_including_preset_ports() -> None:
    found = problems({
        "a.yaml": stream(name="smtp", port=25),
        "b.yaml": stream(name="mail", port=None, preset="mailcow", upstreams=[{"server": "mail"}]),
        "c.yaml": stream(name="dns-tcp", port=53),
        "d.yaml": stream(name="dns-udp", port=53, protocol="udp"),  # same port, other protocol: fine
        "e.yaml": stream(name="local", port=53, listen={"address": "127.0.0.1", "port": 53}),  # other address
    })
    assert [(f, fld) for f, _, fld, _ in found] == [("b.yaml", "spec.listen")]
    assert "tcp 0.0.0.0:25 is already taken by Stream/smtp" in found[0][3]


def test_effective_health_check_uses_global_defaults() -> None:
    found = problems({
        "config.yaml": config(healthChecks={"interval": "30s", "timeout": "10s"}),
        "r.yaml": route(healthCheck={"path": "/h", "interval": "5s"}),
    })
    assert len(found) == 1 and "effective timeout (10s) must be shorter than interval (5s)" in found[0][3]


def test_every_problem_is_collected_and_sorted() -> None:
    found = problems({
        "z.yaml": route(name="Bad", domain="z.example.com"),
        "a.yaml": [route(name="one", upstreams=[]), route(name="two", domain="two.example.com", tls={"minVersion": "1.0"})],
        "m.yaml": "not: [valid",
    })
    assert [f for f, *_ in found] == ["a.yaml", "a.yaml", "m.yaml", "z.yaml"]
    lines = [line for f, line, *_ in found if f == "a.yaml"]
    assert lines == sorted(lines) and lines[0] < lines[1]


def test_kind_problems() -> None:
    found = problems({"a.yaml": {"apiVersion": "hecate.io/v1", "metadata": {"name": "x"}},
                      "b.yaml": {"kind": "Ingress"}, "c.yaml": ["a", "list"],
                      "d.yaml": {"global": {}}})
    messages = {f: m for f, _, _, m in found}
    assert "'kind' is missing; expected one of Route, AuthPolicy, Stream" in messages["a.yaml"]
    assert "'kind' is 'Ingress'" in messages["b.yaml"]
    assert "must be a mapping" in messages["c.yaml"]
    assert "belongs in config.yaml" in messages["d.yaml"]


def test_config_yaml_only_at_the_root_is_the_global_config() -> None:
    assert problems({"config.yaml": config(), "routes/r.yaml": route()}) == []
    found = problems({"sub/config.yaml": config()})
    assert "belongs in config.yaml at the root" in found[0][3]


def test_a_valid_state_is_ordered_by_name() -> None:
    result = load_specs(snapshot({"b.yaml": route(name="b", domain="b.example.com"),
                                  "a.yaml": route(name="c", domain="c.example.com"),
                                  "c.yaml": route(name="a", domain="a.example.com")}))
    assert result.state is not None
    assert [r.name for r in result.state.routes] == ["a", "b", "c"]
    assert result.counts == {"Route": 3, "AuthPolicy": 0, "Stream": 0, "Config": 0}


def test_parallel_check_agrees_with_the_serial_load(monkeypatch) -> None:
    from hecate_agent.spec import loader

    files = {f"routes/r{i}.yaml": route(name=f"r{i}", domain=f"r{i}.example.com") for i in range(40)}
    files["routes/dup.yaml"] = route(name="r3", domain="R7.example.com", upstreams=[{"dial": "x"}])
    files["routes/dup2.yaml"] = route(name="r5", domain="r9.example.com", authPolicy="nope")
    files["streams/s.yaml"] = [stream(name="a"), stream(name="b")]
    files["config.yaml"] = config(healthChecks={"interval": "3s"})
    snap = snapshot(files)
    serial = load_specs(snap)
    monkeypatch.setattr(loader, "PARALLEL_THRESHOLD", 2)
    problems, counts = loader.check_snapshot(snap, workers=2)
    assert [p for p in problems if p.is_error] == serial.problems and len(serial.problems) == 5
    assert [p for p in problems if not p.is_error] == serial.warnings and len(serial.warnings) == 1
    assert counts == serial.counts == {"Route": 41, "AuthPolicy": 0, "Stream": 2, "Config": 1}
