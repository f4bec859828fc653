"""Wildcards + Let's Encrypt need a Caddy DNS module; node-local certificate storage behind a balancer is a warning."""

from __future__ import annotations

from hecate_agent.dns.certificates import CertRoute, certificate_storage_warnings, dns_challenge_problems

DEBIAN_MODULES = frozenset({"http.handlers.reverse_proxy", "tls.issuance.acme", "caddy.storage.file_system"})
ROUTES = [CertRoute("tenants", "*.tenants.example.com"), CertRoute("app", "app.example.com")]


def test_wildcard_with_letsencrypt_on_debian_caddy_is_a_capability_error() -> None:
    assert dns_challenge_problems(ROUTES, "letsencrypt", "hetzner", "2.6.2", DEBIAN_MODULES) == [
        "Route/tenants: a wildcard certificate for *.tenants.example.com from Let's Encrypt needs the ACME DNS-01 "
        "challenge, which needs the Caddy module dns.providers.hetzner. This Caddy (2.6.2) has no dns.providers.* "
        "module (caddy list-modules), and the plugin github.com/caddy-dns/hetzner/v2 needs Caddy 2.10.2 or newer, "
        "so no plugin can give this Caddy the module (Debian's caddy package cannot add plugins). Install a custom "
        "Caddy 2.10.2 or newer built with github.com/caddy-dns/hetzner/v2 (xcaddy build v2.10.2 --with "
        "github.com/caddy-dns/hetzner/v2; replace the packaged binary with dpkg-divert as Caddy's install docs "
        "describe), or list explicit host names instead of the wildcard (HTTP-01, with certificate storage shared "
        "by the nodes)"
    ]


def test_a_new_enough_caddy_without_the_module_is_told_to_rebuild() -> None:
    modules = DEBIAN_MODULES | {"dns.providers.cloudflare"}
    (problem,) = dns_challenge_problems(ROUTES, "letsencrypt", "hetzner", "v2.10.2 h1:abc", modules)
    assert "This Caddy (v2.10.2 h1:abc) has only dns.providers.cloudflare (caddy list-modules). Install" in problem
    assert "no plugin can give" not in problem


def test_no_problem_with_the_module_with_internal_certificates_or_without_tls() -> None:
    assert (
        dns_challenge_problems(ROUTES, "letsencrypt", "hetzner", "2.10.2", DEBIAN_MODULES | {"dns.providers.hetzner"})
        == []
    )
    assert dns_challenge_problems(ROUTES, "internal", "hetzner", "2.6.2", DEBIAN_MODULES) == []
    plain = [CertRoute("tenants", "*.tenants.example.com", auto_https=False)]
    assert dns_challenge_problems(plain, "letsencrypt", "hetzner", "2.6.2", DEBIAN_MODULES) == []
    assert dns_challenge_problems([ROUTES[1]], "letsencrypt", "hetzner", "2.6.2", DEBIAN_MODULES) == []


def test_wildcard_without_a_dns_provider() -> None:
    assert dns_challenge_problems(ROUTES, "letsencrypt", None, "2.6.2", DEBIAN_MODULES) == [
        "Route/tenants: a wildcard certificate for *.tenants.example.com from Let's Encrypt needs the ACME DNS-01 "
        "challenge, which needs a DNS provider; set global.dns.provider (hetzner), or list explicit host names "
        "instead of the wildcard"
    ]


def test_nodes_behind_one_balancer_with_node_local_storage_get_a_warning() -> None:
    assert certificate_storage_warnings(["edge-2", "edge-1", "edge-3"], "file", "letsencrypt") == [
        "certificates: the 3 nodes behind one balancer (edge-1, edge-2, edge-3) keep certificates in node-local "
        "storage (file), so each node requests its own certificate for every domain from Let's Encrypt: 3 orders "
        "per name, which runs into Let's Encrypt's rate limits (5 certificates for the same names per week, 50 per "
        "registered domain per week) and fails HTTP-01 challenges the balancer sends to another node. Set "
        "global.certificates.storage to storage the nodes share"
    ]
    assert certificate_storage_warnings(["edge-1", "edge-2"], None, "letsencrypt") != []  # file is the default


def test_no_storage_warning_for_one_node_shared_storage_or_internal_certificates() -> None:
    assert certificate_storage_warnings(["edge-1"], "file", "letsencrypt") == []
    assert certificate_storage_warnings(["edge-1", "edge-1"], "file", "letsencrypt") == []
    assert certificate_storage_warnings(["edge-1", "edge-2"], "vault", "letsencrypt") == []
    assert certificate_storage_warnings(["edge-1", "edge-2"], "file", "internal") == []


def test_with_the_module_a_wildcard_gets_an_acme_issuer_with_the_dns_challenge() -> None:
    from hecate_agent.render.caddy import CaddyCapabilities, CaddySettings, render_caddy
    from tests.helpers import config, desired_state, route

    dns = {"provider": "hetzner", "apiToken": "${HETZNER_API_TOKEN}"}
    state = desired_state(route("tenants", "*.tenants.example.com"), route("app", "app.example.com"),
                          global_config=config(dns=dns, certificates={"email": "ops@example.com"}))
    capabilities = CaddyCapabilities("2.10.2", DEBIAN_MODULES | {"dns.providers.hetzner"})
    owned = render_caddy(state, CaddySettings(), capabilities, {"HETZNER_API_TOKEN": "tok-123"})
    policies = owned["apps"]["tls"]["automation"]["policies"]
    assert [(p["@id"], p["subjects"]) for p in policies] == [
        ("hecate-certificates-dns-01", ["*.tenants.example.com"]),
        ("hecate-certificates", ["app.example.com"]),
    ]
    assert policies[0]["issuers"] == [{"module": "acme", "email": "ops@example.com", "challenges": {
        "dns": {"provider": {"name": "hetzner", "api_token": "tok-123"}}}}]
    assert policies[1]["issuers"] == [{"module": "acme", "email": "ops@example.com"}]
    # Without the module the policy stays as it was (render_all reports the capability error).
    plain = render_caddy(state, CaddySettings(), CaddyCapabilities("2.6.2", DEBIAN_MODULES), {"HETZNER_API_TOKEN": "x"})
    assert [p["@id"] for p in plain["apps"]["tls"]["automation"]["policies"]] == ["hecate-certificates"]
