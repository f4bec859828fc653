"""The agent's Consul and Vault client paths against real servers, when you have them.

    CONSUL_HTTP_ADDR=http://127.0.0.1:8500 VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=... pytest tests/optin

Each half is skipped unless its variables are set; CI (no licensed builds to
install) runs the same paths against tests/support's protocol-level servers.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from hecate_agent import redaction
from hecate_agent.runtime.rollout import RolloutCoordinator, RolloutHaltedError, resume
from hecate_agent.secrets import Reference, SecretError, SecretResolver, VaultClient
from hecate_agent.settings import VaultSettings
from hecate_agent.store.consul_status import ConsulPublisher

CONSUL = os.environ.get("CONSUL_HTTP_ADDR")
VAULT = os.environ.get("VAULT_ADDR")
needs_consul = pytest.mark.skipif(not CONSUL, reason="opt-in: set CONSUL_HTTP_ADDR to run against a real Consul")
needs_vault = pytest.mark.skipif(not (VAULT and os.environ.get("VAULT_TOKEN")),
                                 reason="opt-in: set VAULT_ADDR and VAULT_TOKEN to run against a real Vault")


def publisher(tmp_path: Path, node: str, prefix: str) -> ConsulPublisher:
    token = os.environ.get("CONSUL_HTTP_TOKEN")
    token_file = None
    if token:
        token_file = tmp_path / f"consul-token-{node}"
        token_file.write_text(token)
    return ConsulPublisher(CONSUL or "", node, prefix=prefix, token_file=token_file, session_ttl=10)


@needs_consul
def test_status_is_written_under_a_session_and_goes_with_it(tmp_path) -> None:
    prefix = f"hecate-agent-test-{uuid.uuid4().hex[:8]}"
    p = publisher(tmp_path, "optin-node", prefix)
    assert p.publish({"node": "optin-node", "phase": "Synced"})
    assert p.heartbeat()
    assert [s["phase"] for s in p.fleet()] == ["Synced"]
    p.close()  # destroying the session deletes the key (behavior delete)
    assert p.fleet() == []
    p.client.agent.service.deregister(p.service_id)


@needs_consul
def test_the_semaphore_and_halts_on_a_real_consul(tmp_path) -> None:
    prefix = f"hecate-agent-test-{uuid.uuid4().hex[:8]}"
    stopping = threading.Event()
    a, b = (RolloutCoordinator(publisher(tmp_path, n, prefix), max_concurrent=1, soak=0, wait_timeout=2,
                               stopping=stopping) for n in ("a", "b"))
    try:
        assert a.acquire("rev1")
        assert not b.acquire("rev1")
        a.release("rev1")
        b.wait_timeout = 10
        assert b.acquire("rev1")
        b.release("rev1")
        a.halt("rev2", "rolled_back: test")
        with pytest.raises(RolloutHaltedError, match="halted by node a"):
            b.acquire("rev2")
        assert resume(b.client, prefix, "rev2")
    finally:
        for c in (a, b):
            c.publisher.close()
            c.client.kv.delete(prefix, recurse=True)
            c.client.agent.service.deregister(c.publisher.service_id)


@needs_consul
def test_leader_election_on_a_real_consul(tmp_path) -> None:
    from hecate_agent.runtime.leader import LeaderElection

    prefix = f"hecate-agent-test-{uuid.uuid4().hex[:8]}"
    a, b = (LeaderElection(publisher(tmp_path, n, prefix), "dns") for n in ("a", "b"))
    try:
        assert a.try_acquire() and not b.try_acquire()
        assert a.is_leader() and b.leader() == "a"
        a.publisher.close()  # the holder's session ends: the key goes with it (behavior delete)
        assert b.wait(timeout=20) and b.is_leader()
    finally:
        for election in (a, b):
            assert election.publisher is not None
            election.publisher.close()
            election.publisher.client.kv.delete(prefix, recurse=True)


@needs_vault
def test_kv_v2_lookup_renew_and_redaction_on_a_real_vault(tmp_path) -> None:
    import hvac

    canary = f"optin-canary-{uuid.uuid4().hex}"
    admin = hvac.Client(url=VAULT, token=os.environ["VAULT_TOKEN"])
    admin.secrets.kv.v2.create_or_update_secret(path="hecate-agent-test/app", secret={"api_key": canary},
                                                mount_point="secret")
    child = admin.auth.token.create(ttl="1h", renewable=True)["auth"]["client_token"]
    token_file = tmp_path / "token"
    token_file.write_text(child)
    client = VaultClient(VaultSettings.model_validate({"address": VAULT, "tokenFile": str(token_file)}))
    resolver = SecretResolver({}, client)
    ref = Reference("vault:hecate-agent-test/app#api_key", "Route/app: headers.upstream.set.X-Api-Key")
    assert resolver.resolve_references([ref]).values[ref.name] == canary
    assert redaction.scrub(canary) == "<redacted>"
    client.renew_at = 0.0  # due now
    client.ensure_token()
    assert client.renewals == 1
    with pytest.raises(SecretError, match="has no key 'missing'"):
        resolver.resolve_references([Reference("vault:hecate-agent-test/app#missing", "x")])
    admin.secrets.kv.v2.delete_metadata_and_all_versions(path="hecate-agent-test/app", mount_point="secret")
