"""DesiredState → the parts of a Caddy JSON config the agent owns, and `merge` into a live config.

Pure and deterministic: the same state, settings, capabilities and environment
always give byte-identical JSON (`to_json` sorts keys). What the agent owns:

- the HTTPS server `<server>` and the plain-HTTP server `<server>_http`
  (redirects, plain-HTTP routes, ACME HTTP challenges), each ending with a
  catch-all 404 (Caddy 2.6.2 otherwise answers unknown hosts with an empty 200);
- TLS automation policies carrying an `@id` that starts with `hecate-`;
- `pki.certificate_authorities.local.install_trust = false` (never touch the
  host's trust stores);
- `http_port` / `https_port` of the http app when the listeners are not 80/443.

Everything else in the live config (other servers, apps, admin) is kept.
Facts about Caddy 2.6.2 used here are in shared/research/proxy-brief.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from hecate_agent.render.caddy_guard import brace_problems, duplicate_id_problems, inspect
from hecate_agent.render.caddy_layout import group_routes
from hecate_agent.spec.loader import DesiredState, Located
from hecate_agent.spec.models import RouteDocument

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text, slower
    _orjson = None  # type: ignore[assignment]

from hecate_agent.render.caddy_common import (
    DEFAULT_CAPABILITIES,
    DEFAULT_SETTINGS,
    ID_PREFIX,
    PLAIN_SUFFIX,
    RATE_LIMIT_MODULE,
    TRACING_MODULE,
    WEIGHTED_POLICY_MODULE,
    CaddyCapabilities,
    CaddySettings,
    RenderCache,
    RenderError,
    _catch_all,
    _plain_copy,
    _port_of,
    _upstream_counts,
    caddy_id,
    parse_listen,
    smooth_sequence,
)
from hecate_agent.render.caddy_routes import RouteParts

# The renderer's public face; its parts live in caddy_common, caddy_parts and caddy_routes.
__all__ = [
    "ID_PREFIX",
    "PLAIN_SUFFIX",
    "RATE_LIMIT_MODULE",
    "TRACING_MODULE",
    "WEIGHTED_POLICY_MODULE",
    "CaddyCapabilities",
    "CaddySettings",
    "RenderCache",
    "RenderError",
    "_upstream_counts",
    "caddy_id",
    "merge",
    "parse_listen",
    "render_caddy",
    "smooth_sequence",
    "to_json",
]


class _Renderer(RouteParts):
    # --- top level ----------------------------------------------------------------

    def render(self) -> dict[str, Any]:
        routes = sorted(self.state.routes, key=_specificity)
        https_routes = [
            self._cached("https", r, functools.partial(self.site_route, r)) for r in routes if r.doc.spec.tls.auto_https
        ]
        http_routes = [self._cached("http", r, functools.partial(self.http_route, r)) for r in routes]
        https_routes.append(_catch_all())
        http_routes.append(_plain_copy(_catch_all()))
        if self.cache is not None:
            self.cache.retain([r.doc for r in self.state.routes])
        server_name = self.settings.server
        servers: dict[str, Any] = {}
        groups = self.cache.groups if self.cache is not None else None
        if self.settings.https_listen:
            https: dict[str, Any] = {
                "@id": caddy_id("server"),
                "listen": list(self.settings.https_listen),
                "routes": group_routes(https_routes, functools.partial(caddy_id), groups),
                # Redirects are ours (in the _http server), so each route decides for itself.
                "automatic_https": {"disable_redirects": True},
                "tls_connection_policies": self.connection_policies(routes),
            }
            if self.config.monitoring.access_logs:
                https["logs"] = {}
            servers[server_name] = https
        if self.settings.http_listen:
            plain: dict[str, Any] = {
                "@id": caddy_id("server", plain=True),
                "listen": list(self.settings.http_listen),
                "routes": group_routes(http_routes, functools.partial(caddy_id, plain=True), groups),
            }
            if self.config.monitoring.access_logs:
                plain["logs"] = {}
            servers[f"{server_name}_http"] = plain
        self.monitoring(servers)
        http_app: dict[str, Any] = {"servers": servers}
        if self.config.monitoring.request_metrics and self.capabilities.at_least(2, 9):
            http_app["metrics"] = {"per_host": True}
        http_port = _port_of(self.settings.http_listen[0]) if self.settings.http_listen else None
        if http_port not in (None, 80):
            http_app["http_port"] = http_port
        if self.https_port not in (None, 443):
            http_app["https_port"] = self.https_port
        owned: dict[str, Any] = {
            "apps": {
                "http": http_app,
                "tls": {"automation": {"policies": self.automation_policies(routes)}},
                "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
            }
        }
        self.storage_problem()
        # The routes were checked as they were rendered; the rest (servers, catch-alls, TLS) now.
        rest = inspect(
            {
                **owned,
                "apps": {
                    **owned["apps"],
                    "http": {
                        **http_app,
                        "servers": {n: {**s, "routes": s["routes"][-1:]} for n, s in servers.items()},
                    },
                },
            }
        )
        self.problems.extend(brace_problems("the Caddy config", rest))
        self.problems.extend(duplicate_id_problems([*self.ids, *rest.ids]))
        if self.problems:
            raise RenderError(list(dict.fromkeys(self.problems)))
        return owned

    # --- monitoring -------------------------------------------------------------------


def _specificity(located: Located[RouteDocument]) -> tuple[int, int, str]:
    """Exact hosts first, then wildcards with more labels; ties broken by name for stability."""
    domain = located.doc.spec.domain
    wildcard = domain.startswith("*.")
    return (1 if wildcard else 0, -domain.count("."), located.name)


def render_caddy(
    state: DesiredState,
    settings: CaddySettings = DEFAULT_SETTINGS,
    capabilities: CaddyCapabilities = DEFAULT_CAPABILITIES,
    environment: Mapping[str, str] | None = None,
    cache: RenderCache | None = None,
) -> dict[str, Any]:
    """The owned parts of the Caddy config; raises RenderError listing everything that blocks it.

    With a `cache`, unchanged routes are reused from the previous render (same result)."""
    return _Renderer(state, settings, capabilities, environment or {}, cache).render()


def merge(live: Mapping[str, Any] | None, owned: Mapping[str, Any], settings: CaddySettings) -> dict[str, Any]:
    """`live` with the agent's parts replaced by `owned`; everything else untouched.

    Neither input is modified. Only the containers on the way to what changes are
    copied (a deep copy of a 10,000-route config costs seconds); the result shares
    the rest with its inputs, so treat it as read-only.
    """
    result: dict[str, Any] = dict(live or {})
    apps = result["apps"] = dict(result.get("apps") or {})
    owned_apps = owned["apps"]

    http = apps["http"] = dict(apps.get("http") or {})
    servers = http["servers"] = dict(http.get("servers") or {})
    for name in (settings.server, f"{settings.server}_http", settings.metrics_server):
        servers.pop(name, None)
    servers.update(owned_apps["http"]["servers"])
    for key in ("http_port", "https_port", "metrics"):
        if key in owned_apps["http"]:
            http[key] = owned_apps["http"][key]

    tls = apps["tls"] = dict(apps.get("tls") or {})
    automation = tls["automation"] = dict(tls.get("automation") or {})
    theirs = [p for p in automation.get("policies", []) if not str(p.get("@id", "")).startswith(ID_PREFIX)]
    # Ours first: a policy without subjects elsewhere would otherwise catch our domains.
    automation["policies"] = list(owned_apps["tls"]["automation"]["policies"]) + theirs
    if not automation["policies"]:
        del automation["policies"]

    pki = apps["pki"] = dict(apps.get("pki") or {})
    authorities = pki["certificate_authorities"] = dict(pki.get("certificate_authorities") or {})
    authorities["local"] = {**(authorities.get("local") or {}), "install_trust": False}
    return result


def to_json(config: Mapping[str, Any]) -> str:
    """Canonical text: sorted keys, no insignificant whitespace differences between runs.

    The standard library indents with its pure-Python encoder (seconds for 10,000 routes); orjson
    writes the same bytes for the values rendered here (strings, integers, booleans, null, and floats
    of four decimals) in a tenth of that, and is used when installed."""
    if _orjson is not None:
        return _orjson.dumps(config, option=_orjson.OPT_INDENT_2 | _orjson.OPT_SORT_KEYS).decode() + "\n"
    return json.dumps(config, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
