"""The Caddy renderer's state and the parts of the config that are not per route: values resolved for
this node, monitoring, certificate storage, TLS policies, resolvers and the Authentik outpost."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from hecate_agent.dns.certificates import dns_challenge_issuer
from hecate_agent.render.caddy_auth import forward_auth_routes
from hecate_agent.render.caddy_guard import brace_problems, inspect
from hecate_agent.spec.addresses import AddressError, parse_http_url
from hecate_agent.spec.config import STORAGE_MODULES, GlobalConfig
from hecate_agent.spec.loader import DesiredState, Located
from hecate_agent.spec.models import AuthPolicyDocument, RouteDocument
from hecate_agent.spec.templates import header_references, template_references

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text, slower
    _orjson = None  # type: ignore[assignment]

from hecate_agent.render.caddy_common import (
    _REFERENCE_IN_TEXT,
    _UNSAFE_VALUE,
    STORAGE_PLUGINS,
    TRACING_MODULE,
    CaddyCapabilities,
    CaddySettings,
    RenderCache,
    _catch_all,
    _port_of,
    caddy_id,
)


class RendererParts:
    def __init__(
        self,
        state: DesiredState,
        settings: CaddySettings,
        capabilities: CaddyCapabilities,
        environment: Mapping[str, str],
        cache: RenderCache | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.capabilities = capabilities
        self.environment = environment
        self.config: GlobalConfig = state.config
        self.problems: list[str] = []
        self.ids: list[str] = []  # every @id of the rendered routes, checked for uniqueness
        self.policies = {p.name: p for p in state.auth_policies}
        self.https_port = _port_of(settings.https_listen[0]) if settings.https_listen else 443
        self._outpost: tuple[str, bool] | None = None
        self.cache = cache
        self.context = self._context() if cache is not None else ""

    def _context(self) -> str:
        """A digest of everything besides its own document that a route's output depends on."""
        parts = [
            self.config.model_dump(mode="json", by_alias=True),
            [
                p.doc.model_dump(mode="json", by_alias=True)
                for p in sorted(self.policies.values(), key=lambda p: p.name)
            ],
            [self.capabilities.version, sorted(self.capabilities.modules)],
            [
                self.settings.server,
                list(self.settings.http_listen),
                list(self.settings.https_listen),
                self.settings.outpost_url,
            ],
            sorted(self.environment.items()),
        ]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _cached(self, kind: str, located: Located[RouteDocument], make: Callable[[], Any]) -> Any:
        if self.cache is None:
            return self._checked(located, make)
        hit = self.cache.route(kind, located.doc, self.context)
        if hit is not None:
            self.problems.extend(hit[1])
            self.ids.extend(hit[2])
            return hit[0]
        before, ids_before = len(self.problems), len(self.ids)
        output = self._checked(located, make)
        self.cache.keep_route(
            kind, located.doc, self.context, output=output, problems=self.problems[before:], ids=self.ids[ids_before:]
        )
        return output

    def _checked(self, located: Located[RouteDocument], make: Callable[[], Any]) -> Any:
        """A route's output, walked once (then cached with it): its @ids, and no brace it did not write."""
        output = make()
        found = inspect(output)
        self.problems.extend(brace_problems(f"Route/{located.name}", found))
        self.ids.extend(found.ids)
        return output

    # --- values -------------------------------------------------------------------

    def resolve(self, template: str, where: str, *, dollar_escapes: bool = True) -> str:
        """Substitute `${NAME}` / `${vault:path#key}` with the values resolved for this node.

        In config.yaml `$$` is a literal `$`; in header values (`dollar_escapes=False`) a `$`
        not followed by `{` simply stays. A resolved value never reaches Caddy if it holds a
        brace (Caddy would expand `{env.*}` placeholders in it) or a control character (header
        injection); the message names the reference, never the value.
        """
        names = template_references(template) if dollar_escapes else header_references(template)
        missing = [name for name in names if name not in self.environment]
        if missing:
            if missing[0].startswith("vault:"):
                self.problems.append(f"{where} references ${{{missing[0]}}}, which was not resolved (no Vault value)")
            else:
                self.problems.append(
                    f"{where} references ${{{missing[0]}}}, which is not set in the agent's environment; "
                    "set it (e.g. in the systemd unit's EnvironmentFile) or write the value in config.yaml"
                )
            return ""  # reported: nothing unresolved reaches the output
        for name in names:
            if _UNSAFE_VALUE.search(self.environment[name]):
                self.problems.append(
                    f"{where}: the value of ${{{name}}} contains a line break, control character or '{{' / '}}'; "
                    "Caddy would read braces as placeholders and a line break would inject headers. "
                    "Store the value without them"
                )
                return ""

        def substitute(part: str) -> str:
            return _REFERENCE_IN_TEXT.sub(lambda m: self.environment[m.group(1)], part)

        if not dollar_escapes:
            return substitute(template)
        return "$".join(substitute(part) for part in template.split("$$"))

    def monitoring(self, servers: dict[str, Any]) -> None:
        """Request metrics (per server before Caddy 2.9, per host in the http app from 2.9), the
        Prometheus listener, and the tracing module check."""
        monitoring = self.config.monitoring
        if monitoring.request_metrics and not self.capabilities.at_least(2, 9):
            for body in servers.values():
                body["metrics"] = {}
        if monitoring.prometheus.enabled:
            servers[self.settings.metrics_server] = {
                "@id": caddy_id("server", "metrics"),
                "listen": [f":{monitoring.prometheus.port}"],
                "automatic_https": {"disable": True},
                "routes": [
                    {
                        "@id": caddy_id("metrics"),
                        "match": [{"path": ["/metrics"]}],
                        "handle": [{"handler": "metrics"}],
                        "terminal": True,
                    },
                    {**_catch_all(), "@id": caddy_id("not-found", "metrics")},
                ],
            }
        if monitoring.tracing.enabled and not self.capabilities.has(TRACING_MODULE):
            self.problems.append(
                f"global.monitoring.tracing: tracing needs the Caddy module {TRACING_MODULE}, which this Caddy "
                f"({self.capabilities.version}) does not have (Debian's build disables it). Install an upstream "
                "Caddy build (caddyserver.com/download, or xcaddy build) or set monitoring.tracing.enabled: false"
            )

    def storage_problem(self) -> None:
        storage = self.config.certificates.storage
        module = f"caddy.storage.{STORAGE_MODULES[storage]}"
        if storage != "file" and not self.capabilities.has(module):
            self.problems.append(
                f"global.certificates.storage: {storage} needs the Caddy module {module}, which this Caddy "
                f"({self.capabilities.version}) does not have; build Caddy with it (xcaddy build --with "
                f"{STORAGE_PLUGINS[storage]}) or use storage: file"
            )

    # --- TLS ------------------------------------------------------------------------

    def connection_policies(self, routes: list[Located[RouteDocument]]) -> list[dict[str, Any]]:
        by_version: dict[str, list[str]] = {}
        for located in routes:
            spec = located.doc.spec
            if spec.tls.auto_https:
                version = spec.tls.min_version or self.config.security.tls_min_version
                by_version.setdefault(version, []).append(spec.domain)
        policies: list[dict[str, Any]] = [
            {
                "@id": caddy_id("tls-min", version),
                "match": {"sni": sorted(domains)},
                "protocol_min": f"tls{version}",
            }
            for version, domains in sorted(by_version.items(), reverse=True)
        ]
        default_version = self.config.security.tls_min_version
        policies.append({"@id": caddy_id("tls-default"), "protocol_min": f"tls{default_version}"})
        return policies

    def automation_policies(self, routes: list[Located[RouteDocument]]) -> list[dict[str, Any]]:
        subjects = sorted(r.doc.spec.domain for r in routes if r.doc.spec.tls.auto_https)
        if not subjects:
            return []
        certificates = self.config.certificates
        policy: dict[str, Any] = {"@id": caddy_id("certificates"), "subjects": subjects}
        if certificates.storage != "file":
            # The plugin reads its connection settings (address, token) from Caddy's environment.
            policy["storage"] = {"module": STORAGE_MODULES[certificates.storage]}
        if certificates.provider == "internal":
            policy["issuers"] = [{"module": "internal"}]
        else:
            issuer: dict[str, Any] = {"module": "acme"}
            if certificates.email:
                issuer["email"] = self.resolve(certificates.email, "global.certificates.email")
            policy["issuers"] = [issuer]
            # Caddy wants the window as a share of the certificate's lifetime (90 days at Let's Encrypt).
            ratio = min(0.9, certificates.renewal_window.milliseconds / (90 * 86_400_000))
            policy["renewal_window_ratio"] = round(ratio, 4)
            return self.dns_challenge(policy)
        return [policy]

    def dns_challenge(self, policy: dict[str, Any]) -> list[dict[str, Any]]:
        """Wildcard names get their own policy whose ACME issuer uses the DNS-01 challenge, when this Caddy
        has the provider's module (without it, render_all reports the capability error)."""
        dns = self.config.dns
        wild = [s for s in policy["subjects"] if s.startswith("*.")]
        if not wild or dns.provider is None or dns.api_token is None:
            return [policy]
        if not self.capabilities.has(f"dns.providers.{dns.provider}"):
            return [policy]
        token = self.resolve(dns.api_token, "global.dns.apiToken")
        issuer = dns_challenge_issuer(policy["issuers"][0], dns.provider, token)
        wildcard = {**policy, "@id": caddy_id("certificates", "dns-01"), "subjects": wild, "issuers": [issuer]}
        rest = [s for s in policy["subjects"] if s not in wild]
        return [wildcard, {**policy, "subjects": rest}] if rest else [wildcard]

    # --- routes ---------------------------------------------------------------------

    def resolvers(self) -> list[str]:
        return [
            self.resolve(value, f"global.dns.resolvers[{index}]")
            for index, value in enumerate(self.config.dns.resolvers)
        ]

    # --- auth -----------------------------------------------------------------------

    def outpost(self) -> tuple[str, bool]:
        """(dial address, use TLS) of the Authentik outpost, resolved once per render."""
        if self._outpost is None:
            self._outpost = self._resolve_outpost()
        return self._outpost

    def _resolve_outpost(self) -> tuple[str, bool]:
        if self.config.authentik is not None:
            template, where = self.config.authentik.outpost_url, "global.authentik.outpostUrl"
        elif self.settings.outpost_url is not None:
            template, where = self.settings.outpost_url, "agent.yaml authentik.outpostUrl"
        else:
            self.problems.append(
                "routes use an AuthPolicy, but neither config.yaml (global.authentik.outpostUrl) nor this node's "
                "agent.yaml (authentik.outpostUrl) sets the Authentik outpost URL; set one of them"
            )
            return "invalid:0", False
        before = len(self.problems)
        url = self.resolve(template, where)
        if len(self.problems) > before:
            return "invalid:0", False
        try:
            return parse_http_url(url)
        except AddressError as exc:
            # The value may be a secret: name the reference and what is wrong, never any part of the value.
            holder = f"{template} does not hold" if template.startswith("${") else "it is not"
            self.problems.append(f"{where}: {holder} a usable URL: {exc}")
            return "invalid:0", False

    def forward_auth(
        self, located: Located[RouteDocument], policy: Located[AuthPolicyDocument]
    ) -> list[dict[str, Any]]:
        dial, tls = self.outpost()
        # Ids name the policy and the route, so a plan can attribute these objects to AuthPolicy/<policy>.
        return forward_auth_routes(
            policy.doc.spec, dial, tls, lambda piece: caddy_id("auth", policy.name, located.name, piece)
        )
