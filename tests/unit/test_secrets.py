"""Secret references and the redaction registry, without Vault: which values are secrets, and how
every output hides them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hecate_agent import redaction
from hecate_agent.secrets import Reference, SecretResolver, is_sensitive, references_of, secret_name
from tests.helpers import config, desired_state, route


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    redaction.forget_all()
    yield
    redaction.forget_all()


@pytest.mark.parametrize(("name", "secret"), [
    ("AUTHENTIK_OUTPOST_URL", False), ("ACME_EMAIL", False), ("KEYCLOAK_URL", False), ("DNS_RESOLVER", False),
    ("ACME_API_KEY", True), ("BASIC_AUTH", True), ("DBPASSWORD", True), ("GITHUB_TOKEN", True),
    ("client_secret", True), ("SESSION_COOKIE", True), ("TLS_PRIVATE_PEM", True),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_references_are_found_where_they_may_stand_and_classified() -> None:
    state = desired_state(
        route("app", headers={"upstream": {"set": {"X-Key": "Key ${vault:apps/app#api_key}", "X-Env": "${PLAIN}",
                                                   "Authorization": "Bearer ${BACKEND}"}}}),
        global_config=config(authentik={"outpostUrl": "${AUTHENTIK_OUTPOST_URL}"},
                             certificates={"provider": "letsencrypt", "email": "${ACME_EMAIL}"}),
    )
    found = {r.name: r for r in references_of(state)}
    assert set(found) == {"vault:apps/app#api_key", "PLAIN", "BACKEND", "AUTHENTIK_OUTPOST_URL", "ACME_EMAIL"}
    assert found["vault:apps/app#api_key"].vault_path == "apps/app" and found["vault:apps/app#api_key"].vault_key == "api_key"
    # Vault, and a variable in a credential header; a plain variable in another header is an identifier.
    assert {n for n, r in found.items() if is_sensitive(r)} == {"vault:apps/app#api_key", "BACKEND"}


def test_only_secret_values_are_registered_and_an_unset_variable_is_left_to_the_renderer() -> None:
    refs = [Reference("PLAIN", "Route/app: headers.upstream.set.X-Api-Key"), Reference("ACME_EMAIL", "global.certificates"),
            Reference("MISSING", "global.dns.resolvers[0]")]
    resolution = SecretResolver({"PLAIN": "header-secret-1", "ACME_EMAIL": "ops@example.com"}).resolve_references(refs)
    assert resolution.values == {"PLAIN": "header-secret-1", "ACME_EMAIL": "ops@example.com"}
    assert resolution.sensitive == {"header-secret-1"}
    assert redaction.scrub("ops@example.com sent header-secret-1") == "ops@example.com sent <redacted>"


def test_scrub_hides_the_longest_match_and_skips_tiny_values() -> None:
    redaction.register(["abcd", "abcdefgh", "on"])
    assert redaction.scrub("xabcdefghx abcd on") == "x<redacted>x <redacted> on"
    assert redaction.scrub_value({"k-abcd": ["abcdefgh", 3]}) == {"k-<redacted>": ["<redacted>", 3]}
    assert redaction.contains_secret({"a": ["on"]}, frozenset({"on"}))  # plans hide short ones too


@pytest.mark.parametrize(("header", "secret"), [
    ("Authorization", True), ("proxy-authorization", True), ("X-Api-Key", True), ("X-Auth-Token", True),
    ("Cookie", True), ("X-Backend-Creds", True), ("X-Node", False), ("X-Forwarded-Host", False), ("X-Env", False),
])
def test_credential_headers(header: str, secret: bool) -> None:
    assert is_sensitive(Reference("PLAIN", f"Route/app: headers.upstream.set.{header}")) is secret


def test_an_identifier_in_an_upstream_header_is_not_redacted() -> None:
    """Issue 13 #6: every upstream header value was registered as a secret; a node named like one showed
    as <redacted> in the fleet table (status is scrubbed before it is written and published)."""
    refs = [Reference("NODE_NAME", "Route/app: headers.upstream.set.X-Node"),
            Reference("REGION", "Route/app: headers.upstream.set.X-Region"),
            Reference("API_TOKEN", "Route/app: headers.upstream.set.X-Token")]
    resolution = SecretResolver({"NODE_NAME": "edge-7", "REGION": "eu-west",
                                 "API_TOKEN": "tok-5f2a9c"}).resolve_references(refs)
    assert resolution.sensitive == {"tok-5f2a9c"}
    status = {"node": "edge-7", "lastAttempt": {"error": "upstream eu-west said no to tok-5f2a9c"}}
    assert redaction.scrub_value(status) == {"node": "edge-7",
                                             "lastAttempt": {"error": "upstream eu-west said no to <redacted>"}}
