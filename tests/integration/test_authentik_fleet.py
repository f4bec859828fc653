"""One node writes to Authentik for the fleet: two agents, one Consul test server, one Authentik test server.

The nodes are engines with the real Authentik target (real authentik-client, real py-consul) and an
in-memory Caddy. Each agent has its own Authentik token, so every write is attributed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.reconcile import Engine
from hecate_agent.engine.transaction import recover
from hecate_agent.runtime.wiring import authentik_target
from hecate_agent.settings import AgentSettings
from hecate_agent.targets.authentik import AuthentikEngineTarget
from tests.fakes import Crash, CrashingStore, MemorySource, MemoryTarget, Verifier, fake_node
from tests.helpers import auth_policy, dump_yaml, route
from tests.support.authentik_server import FakeAuthentik
from tests.support.consul_server import FakeConsul
from tests.support.vault_server import FakeVault

pytestmark = pytest.mark.integration

PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
POLICY = {"requirements": {"groups": ["staff"], "mfa": "required", "sessionDuration": "4h"},
          "allowedMethods": ["webauthn", "totp"], "metadata": {"required": ["employee_id", "department"]}}


@pytest.fixture
def servers() -> Iterator[tuple[FakeConsul, FakeAuthentik]]:
    consul, authentik = FakeConsul(), FakeAuthentik()
    yield consul, authentik
    authentik.close()
    consul.close()
    assert authentik.state.problems == []


class Agent:
    def __init__(self, root: Path, name: str, consul: FakeConsul | None, authentik: FakeAuthentik,
                 source: MemorySource, vault: FakeVault | None = None, **authentik_settings: Any) -> None:
        self.token = f"ak-token-of-{name}-0123456789"
        authentik.add_token(self.token)
        token_file = root / f"{name}-token"
        root.mkdir(parents=True, exist_ok=True)
        token_file.write_text(self.token)
        settings: dict[str, Any] = {
            "stateDir": str(root / name), "node": {"name": name},
            "authentik": {"provisioning": "agent", "url": authentik.url, "tokenFile": str(token_file),
                          "outpostUrl": "http://127.0.0.1:9", "followerWait": "1s", **authentik_settings},
        }
        if vault is not None:  # the token from Vault instead of a file
            vault.put(f"{name}/authentik", {"token": self.token})
            vault_token = root / f"{name}-vault-token"
            vault_token.write_text(vault.token())
            settings["vault"] = {"address": vault.address, "tokenFile": str(vault_token)}
            del settings["authentik"]["tokenFile"]
            settings["authentik"]["token"] = f"${{vault:{name}/authentik#token}}"
        if consul is not None:
            settings["consul"] = {"address": f"http://127.0.0.1:{consul.port}", "sessionTtl": "10s"}
        self.events: list[str] = []
        self.caddy = MemoryTarget("caddy", 30, pick=lambda r: r.caddy_owned, keyed=lambda s: {}, key="caddy_config",
                                  events=self.events)
        target = authentik_target(AgentSettings.model_validate(settings))
        assert isinstance(target, AuthentikEngineTarget)
        self.authentik = target
        self.engine = Engine(fake_node(root / name, [self.caddy, target], verifier=Verifier(), settings=settings))
        self.source = source

    def reconcile(self) -> Any:
        revision = self.source.tip
        found, problems = self.source.snapshot(revision)
        result, _ = self.engine.reconcile(revision, found, problems, source="test")
        return result

    def routes(self) -> set[str]:
        text = repr(self.caddy.state)
        return {name for name in ("one", "two", "three") if f"{name}.example.com" in text}


def push(source: MemorySource, *names: str) -> None:
    files = {f"routes/{n}.yaml": dump_yaml(route(n, f"{n}.example.com", tls=PLAIN, authPolicy="staff"))
             for n in names}
    files["routes/open.yaml"] = dump_yaml(route("open", "open.example.com", tls=PLAIN))
    files["policies/staff.yaml"] = dump_yaml(auth_policy("staff", **POLICY))
    source.push(files)


def providers(authentik: FakeAuthentik) -> set[str]:
    return {p["name"] for p in authentik.all("provider")}


def writers(authentik: FakeAuthentik) -> set[str]:
    return {token for token, _, _ in authentik.state.writes}


def test_only_the_lock_holder_writes_and_the_other_takes_over(servers: tuple[FakeConsul, FakeAuthentik],
                                                              tmp_path: Path) -> None:
    consul, authentik = servers
    source = MemorySource()
    a = Agent(tmp_path, "edge-1", consul, authentik, source)
    b = Agent(tmp_path, "edge-2", consul, authentik, source)
    push(source, "one")
    found, _ = source.snapshot(source.tip)
    state, _ = b.engine.validate(source.tip, found)
    assert state is not None
    prepared, refused = b.engine.prepare(state, source.tip)  # planning takes no lock, writes nothing
    assert refused is None and prepared is not None
    assert "hecate/leaders/authentik" not in consul.state.kv and authentik.state.writes == []
    assert "AuthentikProvider/hecate-one" in {f"{c.kind}/{c.name}" for c in prepared.plan.changes}

    assert a.reconcile().outcome is Outcome.APPLIED  # takes hecate/leaders/authentik, provisions
    assert consul.state.kv["hecate/leaders/authentik"]["Session"]
    assert providers(authentik) == {"hecate-one"} and writers(authentik) == {a.token}
    result = b.reconcile()  # a follower: Authentik already has what its routes need
    assert result.outcome is Outcome.APPLIED, result.error
    assert writers(authentik) == {a.token} and b.routes() == {"one"}
    assert b.engine.publish(result)["components"]["authentik"]["role"].startswith("read-only (edge-1 holds")

    push(source, "one", "two")  # the follower is first: it waits (bounded), then fails without touching Caddy
    waited = b.reconcile()
    assert waited.outcome is Outcome.ERROR
    assert "does not provision Authentik" in (waited.error or "") and "provider hecate-two" in (waited.error or "")
    assert b.routes() == {"one"} and writers(authentik) == {a.token}
    assert a.reconcile().outcome is Outcome.APPLIED
    assert b.reconcile().outcome is Outcome.APPLIED  # retried: now it is there
    assert b.routes() == {"one", "two"} and providers(authentik) == {"hecate-one", "hecate-two"}
    assert writers(authentik) == {a.token}

    # The holder's session dies (invalidated): the key goes with it and the other node takes over.
    holder = consul.state.kv["hecate/leaders/authentik"]["Session"]
    with consul.state.lock:
        consul.state.invalidate(holder)
    before = len(authentik.state.writes)
    push(source, "one", "three")
    assert b.reconcile().outcome is Outcome.APPLIED
    assert providers(authentik) == {"hecate-one", "hecate-three"}
    assert {t for t, _, _ in authentik.state.writes[before:]} == {b.token}
    assert consul.state.kv["hecate/leaders/authentik"]["Session"] != holder
    after = len(authentik.state.writes)
    assert a.reconcile().outcome is Outcome.APPLIED  # the old holder now plans read-only
    assert len(authentik.state.writes) == after and a.routes() == {"one", "three"}


def test_without_consul_manage_decides(servers: tuple[FakeConsul, FakeAuthentik], tmp_path: Path) -> None:
    _, authentik = servers
    source = MemorySource()
    manager = Agent(tmp_path, "edge-1", None, authentik, source, manage=True)
    follower = Agent(tmp_path, "edge-2", None, authentik, source)
    push(source, "one")
    assert follower.reconcile().outcome is Outcome.ERROR  # nobody provisioned it yet
    assert providers(authentik) == set() and follower.routes() == set()
    assert manager.reconcile().outcome is Outcome.APPLIED
    assert follower.reconcile().outcome is Outcome.APPLIED
    assert writers(authentik) == {manager.token}


def test_a_crash_mid_apply_recovers_authentik_to_one_revision(servers: tuple[FakeConsul, FakeAuthentik],
                                                              tmp_path: Path) -> None:
    _, authentik = servers
    source = MemorySource()
    agent = Agent(tmp_path, "edge-1", None, authentik, source, manage=True)
    push(source, "one", "two")
    assert agent.reconcile().outcome is Outcome.APPLIED
    store = agent.engine.node.store
    assert isinstance(store, CrashingStore)

    # Died after Caddy let go of route two, before Authentik's deletes: recovery finishes them.
    push(source, "one")
    store.crash_at = "retire:authentik"
    with pytest.raises(Crash):
        agent.reconcile()
    assert providers(authentik) == {"hecate-one", "hecate-two"}
    store.crash_at = None
    assert "completed revision" in (recover(agent.engine.node) or "")
    assert providers(authentik) == {"hecate-one"} and agent.routes() == {"one"}

    # Died after Authentik's creates, before Caddy: recovery puts Authentik back as it was.
    push(source, "one", "three")
    store.crash_at = "caddy"
    with pytest.raises(Crash):
        agent.reconcile()
    assert providers(authentik) == {"hecate-one", "hecate-three"}
    store.crash_at = None
    assert "restored the state before" in (recover(agent.engine.node) or "")
    assert providers(authentik) == {"hecate-one"} and agent.routes() == {"one"}


def test_the_token_can_come_from_vault(servers: tuple[FakeConsul, FakeAuthentik], tmp_path: Path) -> None:
    _, authentik = servers
    vault = FakeVault()
    try:
        source = MemorySource()
        agent = Agent(tmp_path, "edge-1", None, authentik, source, vault=vault, manage=True)
        assert vault.count("GET", "/v1/secret/data/edge-1/authentik") == 0  # read on first use, not at start
        push(source, "one")
        result = agent.reconcile()
        assert result.outcome is Outcome.APPLIED, result.error
        assert writers(authentik) == {agent.token} and providers(authentik) == {"hecate-one"}
        assert vault.count("GET", "/v1/secret/data/edge-1/authentik") == 1
        status = agent.engine.publish(result)
        assert agent.token not in repr(status)
    finally:
        vault.close()
