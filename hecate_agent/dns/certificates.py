"""Certificates across a fleet: what Caddy must be able to do, and what a plan should warn about (pure).

Let's Encrypt validates a wildcard name only through the ACME DNS-01 challenge,
which Caddy runs through a DNS provider module (`dns.providers.hetzner`).
Debian's Caddy 2.6.2 has no such module and cannot load plugins; the plugin
that speaks Hetzner's current (Cloud) API, `github.com/caddy-dns/hetzner/v2`,
needs Caddy 2.10.2 or newer (see shared/research/dns-certs-caddy-modules.md).
Several nodes behind one balancer each keep their own certificates when the
storage is node-local, and so each asks Let's Encrypt for the same names.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# provider -> (Caddy module, plugin Go module, lowest Caddy version the plugin builds with)
PLUGINS = {"hetzner": ("dns.providers.hetzner", "github.com/caddy-dns/hetzner/v2", (2, 10, 2))}
NODE_LOCAL_STORAGE = ("file", "file_system", "local")


@dataclass(frozen=True)
class CertRoute:
    route: str
    domain: str
    auto_https: bool = True  # false: plain HTTP, no certificate


def dns_challenge_issuer(acme: Mapping[str, Any], provider: str, token: str) -> dict[str, Any]:
    """An ACME issuer that answers the DNS-01 challenge through Caddy's `dns.providers.<provider>` module."""
    return {**acme, "challenges": {"dns": {"provider": {"name": provider, "api_token": token}}}}


def _version(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"v?([0-9]+)\.([0-9]+)\.([0-9]+)", text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def dns_challenge_problems(
    routes: Iterable[CertRoute],
    certificates_provider: str | None,
    dns_provider: str | None,
    caddy_version: str,
    caddy_modules: Collection[str],
) -> list[str]:
    """One capability error per wildcard route that needs a Let's Encrypt certificate this Caddy cannot get."""
    if certificates_provider != "letsencrypt":
        return []
    wildcards = sorted((r for r in routes if r.auto_https and r.domain.startswith("*.")), key=lambda r: r.route)
    problems = []
    for route in wildcards:
        head = (
            f"Route/{route.route}: a wildcard certificate for {route.domain} from Let's Encrypt needs the ACME "
            "DNS-01 challenge"
        )
        if not dns_provider:
            problems.append(
                f"{head}, which needs a DNS provider; set global.dns.provider (hetzner), or list explicit host names "
                "instead of the wildcard"
            )
            continue
        module, plugin, lowest = PLUGINS.get(
            dns_provider, (f"dns.providers.{dns_provider}", f"github.com/caddy-dns/{dns_provider}", (0, 0, 0))
        )
        if module in caddy_modules:
            continue
        present = sorted(m for m in caddy_modules if m.startswith("dns.providers."))
        has = f"has only {', '.join(present)}" if present else "has no dns.providers.* module"
        version = _version(caddy_version)
        too_old = version is not None and version < lowest
        pinned = lowest > (0, 0, 0)
        how = f"xcaddy build v{_dotted(lowest)} --with {plugin}" if pinned else f"xcaddy build --with {plugin}"
        build = f"Caddy {_dotted(lowest)} or newer" if pinned else "Caddy"
        problems.append(
            f"{head}, which needs the Caddy module {module}. This Caddy ({caddy_version}) {has} (caddy list-modules)"
            + (
                f", and the plugin {plugin} needs Caddy {_dotted(lowest)} or newer, so no plugin can give this "
                "Caddy the module (Debian's caddy package cannot add plugins)"
                if too_old
                else ""
            )
            + f". Install a custom {build} built with {plugin} ({how}; replace the packaged binary with "
            "dpkg-divert as Caddy's install docs describe), or list explicit host names instead of the wildcard "
            "(HTTP-01, with certificate storage shared by the nodes)"
        )
    return problems


def certificate_storage_warnings(
    balanced_nodes: Collection[str], storage: str | None, certificates_provider: str | None
) -> list[str]:
    """The plan warning when nodes behind one balancer each request their own Let's Encrypt certificates."""
    nodes = sorted(set(balanced_nodes))
    if len(nodes) < 2:
        return []
    return _storage_warning(
        f"the {len(nodes)} nodes behind one balancer ({', '.join(nodes)})",
        f"{len(nodes)} orders",
        storage,
        certificates_provider,
    )


def balancer_storage_warnings(storage: str | None, certificates_provider: str | None) -> list[str]:
    """The same warning when config.yaml says the nodes share names (`global.dns.target`: a balancer)."""
    return _storage_warning(
        "the nodes behind one balancer (global.dns.target)", "one order per node", storage, certificates_provider
    )


def _storage_warning(nodes: str, orders: str, storage: str | None, certificates_provider: str | None) -> list[str]:
    backend = storage or "file"
    if certificates_provider != "letsencrypt" or backend not in NODE_LOCAL_STORAGE:
        return []
    return [
        f"certificates: {nodes} keep certificates in node-local storage ({backend}), so each node requests its own "
        f"certificate for every domain from Let's Encrypt: {orders} per name, which runs into Let's Encrypt's rate "
        "limits (5 certificates for the same names per week, 50 per registered domain per week) and fails HTTP-01 "
        "challenges the balancer sends to another node. Set global.certificates.storage to storage the nodes share"
    ]
