"""Secrets from Vault through the real hvac client (against the protocol-level test server; tests/optin
runs the same paths against a real Vault) and onto a real Caddy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hecate_agent import redaction
from hecate_agent.secrets import Reference, SecretError, SecretResolver, SecretUnavailableError, VaultClient
from hecate_agent.settings import VaultSettings
from tests.helpers import config, dump_yaml, route, write_repo
from tests.support.http import Upstream, http_get
from tests.support.node import NodeUnderTest
from tests.support.servers import serving
from tests.support.vault_server import FakeVault

pytestmark = pytest.mark.integration
PLAIN = {"autoHTTPS": False, "forceHTTPS": False}
CANARY = "canary-7f3a9c1e-secret-value"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    server = FakeVault()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    redaction.forget_all()
    yield
    redaction.forget_all()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ref(name: str) -> Reference:
    return Reference(name, "Route/app: headers.upstream.set.X-Api-Key")


def token_settings(vault: FakeVault, tmp_path: Path, token: str) -> VaultSettings:
    token_file = tmp_path / "vault-token"
    token_file.write_text(token + "\n")
    return VaultSettings.model_validate({"address": vault.address, "tokenFile": str(token_file)})


def test_a_token_file_reads_kv_v2_and_every_value_is_registered_for_redaction(vault, tmp_path) -> None:
    vault.put("apps/app", {"api_key": CANARY, "other": "x"})
    resolver = SecretResolver({}, VaultClient(token_settings(vault, tmp_path, vault.token())))
    resolution = resolver.resolve_references([ref("vault:apps/app#api_key"), ref("vault:apps/app#api_key")])
    assert resolution.values == {"vault:apps/app#api_key": CANARY}
    assert resolution.sensitive == {CANARY}
    assert vault.count("GET", "/v1/secret/data/apps/app") == 1  # one read per path per resolution
    assert redaction.scrub(f"header was {CANARY}") == "header was <redacted>"


def test_missing_secret_key_and_path_name_the_reference_never_a_value(vault, tmp_path) -> None:
    vault.put("apps/app", {"api_key": CANARY})
    resolver = SecretResolver({}, VaultClient(token_settings(vault, tmp_path, vault.token())))
    with pytest.raises(SecretError) as missing_key:
        resolver.resolve_references([ref("vault:apps/app#nope")])
    assert str(missing_key.value) == (
        "Route/app: headers.upstream.set.X-Api-Key references ${vault:apps/app#nope}: the secret 'apps/app' "
        "has no key 'nope' (it has: api_key)"
    )
    with pytest.raises(SecretError) as missing_path:
        resolver.resolve_references([ref("vault:apps/gone#k")])
    assert "does not exist" in str(missing_path.value) and "${vault:apps/gone#…}" in str(missing_path.value)
    assert CANARY not in str(missing_key.value) + str(missing_path.value)


def test_a_vault_reference_without_vault_settings_is_an_error_that_says_what_to_configure() -> None:
    with pytest.raises(SecretError, match=r"agent\.yaml has no 'vault' section; configure vault\.address"):
        SecretResolver({}).resolve_references([ref("vault:apps/app#k")])


def test_vault_down_is_unavailable_not_a_crash_and_the_message_holds_no_token(vault, tmp_path) -> None:
    token = vault.token()
    client = VaultClient(token_settings(vault, tmp_path, token))
    vault.down = True  # sealed: 503
    with pytest.raises(SecretUnavailableError) as sealed:
        client.read("apps/app")
    vault.close()  # nothing listening at all
    with pytest.raises(SecretUnavailableError) as gone:
        client.read("apps/app")
    for error in (sealed.value, gone.value):
        assert "is unavailable" in str(error) and token not in str(error)


def test_the_token_is_renewed_at_two_thirds_of_its_ttl(vault, tmp_path) -> None:
    clock = Clock()
    client = VaultClient(token_settings(vault, tmp_path, vault.token(ttl=30)), clock=clock)
    client.ensure_token()
    assert (client.logins, client.renewals) == (1, 0)
    clock.now += 19
    client.ensure_token()
    assert client.renewals == 0  # not yet
    clock.now += 2  # 21 s > 2/3 of 30 s
    client.ensure_token()
    assert client.renewals == 1 and vault.count("POST", "/v1/auth/token/renew-self") == 1
    assert client.renew_at == pytest.approx(clock.now + 20, abs=1.5)


def test_approle_logs_in_again_when_renewal_hits_the_max_ttl(vault, tmp_path) -> None:
    (tmp_path / "role-id").write_text("role-1")
    (tmp_path / "secret-id").write_text("secret-id-1")
    vault.approle("role-1", "secret-id-1", ttl=3, max_ttl=3)
    vault.put("apps/app", {"api_key": CANARY})
    settings = VaultSettings.model_validate({"address": vault.address, "approle": {
        "roleIdFile": str(tmp_path / "role-id"), "secretIdFile": str(tmp_path / "secret-id")}})
    clock = Clock()
    client = VaultClient(settings, clock=clock)
    assert client.read("apps/app")["api_key"] == CANARY
    first = client.client.token
    assert client.logins == 1 and redaction.scrub(f"x{first}x") == "x<redacted>x"
    assert redaction.scrub("secret-id-1") == "<redacted>"  # login material is never logged either
    import time

    time.sleep(3.2)  # the server-side max TTL passes
    clock.now += 2.5  # and our clock says: renew (past 2/3), not yet expired
    assert client.read("apps/app")["api_key"] == CANARY
    assert client.logins == 2 and client.client.token != first
    assert vault.count("POST", "/v1/auth/approle/login") == 2


def test_a_revoked_token_is_replaced_from_the_token_file(vault, tmp_path) -> None:
    vault.put("apps/app", {"api_key": CANARY})
    settings = token_settings(vault, tmp_path, vault.token())
    client = VaultClient(settings)
    assert client.read("apps/app")["api_key"] == CANARY
    vault.revoke_all()
    assert settings.token_file is not None
    settings.token_file.write_text(vault.token())  # vault-agent wrote a fresh one
    assert client.read("apps/app")["api_key"] == CANARY
    assert client.logins == 2


def test_wrong_approle_credentials_are_a_clear_error(vault, tmp_path) -> None:
    (tmp_path / "role-id").write_text("role-1")
    (tmp_path / "secret-id").write_text("wrong")
    vault.approle("role-1", "right")
    settings = VaultSettings.model_validate({"address": vault.address, "approle": {
        "roleIdFile": str(tmp_path / "role-id"), "secretIdFile": str(tmp_path / "secret-id")}})
    with pytest.raises(SecretError) as caught:
        VaultClient(settings).read("apps/app")
    assert "authenticating to Vault" in str(caught.value) and "wrong" not in str(caught.value)


# --- end to end on a real Caddy ----------------------------------------------------------------------------


def secret_repo(root: Path, dial: str) -> Path:
    headers = {"upstream": {"set": {"X-Api-Key": "Key ${vault:apps/app#api_key}", "X-Env-Token": "${APP_TOKEN}"}}}
    return write_repo(root, {
        "routes/app.yaml": dump_yaml(route("app", "app.example.com", tls=PLAIN, upstreams=[{"dial": dial}],
                                           headers=headers)),
        "config.yaml": dump_yaml(config()),
    })


def test_vault_and_env_secrets_reach_the_backend_and_no_output_shows_them(node: NodeUnderTest, vault, tmp_path) -> None:
    env_canary = "env-canary-51d0b2-token"
    vault.put("apps/app", {"api_key": CANARY})
    token_file = tmp_path / "vault-token"
    token_file.write_text(vault.token())
    node.configure(vault={"address": vault.address, "tokenFile": str(token_file)})
    upstream = Upstream("a")
    with serving(upstream):
        repo = secret_repo(tmp_path / "repo", upstream.dial)
        env = {"APP_TOKEN": env_canary}
        outputs = [node.cli("plan", str(repo), "--format", fmt, env=env) for fmt in ("text", "json", "markdown")]
        applied = node.cli("apply", str(repo), "--yes", env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        seen = http_get(node.caddy.http_port, "app.example.com").json()["headers"]
        assert seen["X-Api-Key"] == f"Key {CANARY}" and seen["X-Env-Token"] == env_canary

        # Rotation: the spec did not change, the secret did. The plan says so, and shows neither value.
        vault.put("apps/app", {"api_key": CANARY + "-rotated"})
        rotated = node.cli("plan", str(repo), env=env)
        assert rotated.returncode == 2, rotated.stdout + rotated.stderr
        assert "(sensitive value changed)" in rotated.stdout
        outputs.append(rotated)
        outputs.append(node.cli("apply", str(repo), "--yes", env=env))
        assert http_get(node.caddy.http_port, "app.example.com").json()["headers"]["X-Api-Key"].endswith("-rotated")

        # Vault down: apply fails cleanly, nothing changes, and the error names the reference, not the value.
        vault.put("apps/app", {"api_key": CANARY + "-third"})
        vault.down = True
        down = node.cli("apply", str(repo), "--yes", env=env)
        assert down.returncode == 1 and "is unavailable" in down.stderr
        assert http_get(node.caddy.http_port, "app.example.com").json()["headers"]["X-Api-Key"].endswith("-rotated")
        outputs.append(down)
        outputs += [node.cli("status", "--format", "json"), node.cli("history"), node.cli("render", str(repo), env=env)]

    text = "\n".join(r.stdout + r.stderr for r in outputs)
    state_files = {p: p.read_text() for p in node.state_dir.rglob("*") if p.is_file()}
    for secret in (CANARY, env_canary):
        assert secret not in text
        for path, content in state_files.items():
            if path.name in ("last-applied.json", "journal.json") or path.parent.name == "snapshots":
                assert path.stat().st_mode & 0o077 == 0  # they hold the rendered values, to restore them: owner only
            else:
                assert secret not in content, path
    assert (node.state_dir.stat().st_mode & 0o077) == 0
    status = json.loads(outputs[-3].stdout)
    assert status["appliedRevision"] is not None
