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
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hecate_agent.errors import HecateError
from hecate_agent.render.caddy_auth import forward_auth_routes
from hecate_agent.render.caddy_guard import brace_problems, duplicate_id_problems, inspect
from hecate_agent.render.caddy_layout import group_routes
from hecate_agent.spec.addresses import AddressError, parse_http_url
from hecate_agent.spec.checks import effective_health_check
from hecate_agent.spec.config import STORAGE_MODULES, GlobalConfig
from hecate_agent.spec.headers import REQUEST_ID_HEADER
from hecate_agent.spec.loader import DesiredState, Located
from hecate_agent.spec.middleware import Compression, RateLimit, RequestId
from hecate_agent.spec.models import AuthPolicyDocument, RouteDocument
from hecate_agent.spec.templates import REFERENCE_BODY, header_references, template_references
from hecate_agent.spec.types import (
    Duration,
)

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text, slower
    _orjson = None  # type: ignore[assignment]

ID_PREFIX = "hecate-"
PLAIN_SUFFIX = ".http"  # the copy of an object on the plain-HTTP server
RATE_LIMIT_MODULE = "http.handlers.rate_limit"
TRACING_MODULE = "http.handlers.tracing"
# Where each certificate storage plugin comes from (shared/research/dns-certs-caddy-modules.md §5).
STORAGE_PLUGINS = {
    "vault": "github.com/gerolf-vent/caddy-vault-storage",
    "consul": "github.com/pteich/caddy-tlsconsul",
    "redis": "github.com/pberkel/caddy-storage-redis",
}
WEIGHTED_POLICY_MODULE = "http.reverse_proxy.selection_policies.weighted_round_robin"
MAX_EXPANDED_UPSTREAMS = 1000
# A value substituted into Caddy's JSON must not smuggle placeholders or header breaks.
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f{}]")
_REFERENCE_IN_TEXT = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}")


class RenderError(HecateError):
    """The specs cannot be rendered for this node (a missing module, an unset variable, ...)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def caddy_id(kind: str, *names: str, plain: bool = False) -> str:
    """The `@id` of an object the agent owns; every id is made here (or is one made here plus PLAIN_SUFFIX).

    `hecate-<kind>`, then one name as `-<name>` (`hecate-route-app`) or several as `.<a>.<b>…`
    (`hecate-auth.<policy>.<route>.<piece>`), then `.http` for the copy on the plain-HTTP server.
    Resource names are DNS labels and kinds and pieces fixed words: none holds a '.', so the parts
    of an id can be read back unambiguously and two objects never share one (with a `-http` suffix,
    route `foo` on plain HTTP and route `foo-http` once did).
    """
    body = ID_PREFIX + kind
    if len(names) == 1:
        body += f"-{names[0]}"
    elif names:
        body += "." + ".".join(names)
    return body + (PLAIN_SUFFIX if plain else "")


@dataclass(frozen=True)
class CaddySettings:
    """The node's side of the Caddy config (agent.yaml `caddy:`)."""

    server: str = "hecate"
    http_listen: tuple[str, ...] = (":80",)
    https_listen: tuple[str, ...] = (":443",)
    outpost_url: str | None = None  # agent.yaml authentik.outpostUrl, used when config.yaml sets none

    @property
    def metrics_server(self) -> str:
        return f"{self.server}_metrics"


@dataclass(frozen=True)
class CaddyCapabilities:
    """What the live Caddy can do: its version and module names (`caddy list-modules`)."""

    version: str = "2.6.2"
    modules: frozenset[str] = field(default_factory=frozenset)

    def has(self, module: str) -> bool:
        return module in self.modules

    def at_least(self, major: int, minor: int) -> bool:
        match = re.match(r"v?([0-9]+)\.([0-9]+)", self.version)
        if match is None:
            return False
        return (int(match.group(1)), int(match.group(2))) >= (major, minor)


def parse_listen(listen: str) -> tuple[str, int | None]:
    """(host, port) of a listen address such as ':443', '127.0.0.1:8080' or '[::1]:80'; '' host = all."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port) if port.isascii() and port.isdigit() else None


def _port_of(listen: str) -> int | None:
    return parse_listen(listen)[1]


def _upstream_counts(weights: list[int]) -> list[int]:
    """Integer shares with exact proportions, reduced; rescaled (largest remainder) if too long."""
    divisor = math.gcd(*weights) if weights else 1
    counts = [w // divisor for w in weights]
    total = sum(counts)
    if total <= MAX_EXPANDED_UPSTREAMS:
        return counts
    raw = [c * MAX_EXPANDED_UPSTREAMS / total for c in counts]
    floors = [max(1, math.floor(r)) if c else 0 for r, c in zip(raw, counts, strict=True)]
    order = sorted(range(len(raw)), key=lambda i: (floors[i] - raw[i], i))
    for i in order[: max(0, MAX_EXPANDED_UPSTREAMS - sum(floors))]:
        floors[i] += 1
    return floors


def smooth_sequence(counts: list[int]) -> list[int]:
    """Indexes in smooth weighted round-robin order (as Nginx does): even spread within a cycle."""
    current = [0] * len(counts)
    total = sum(counts)
    sequence = []
    for _ in range(total):
        for i, weight in enumerate(counts):
            current[i] += weight
        best = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[best] -= total
        sequence.append(best)
    return sequence


def _duration(value: Duration) -> str:
    return str(value)


class RenderCache:
    """Rendered routes reused while nothing they depend on changed.

    A daemon re-rendering 10,000 routes after a one-file change would otherwise redo
    all of them. An entry is keyed by the route's document (identity: the loader's
    ParseCache hands back the same object for an unchanged file) and by a digest of
    everything else a route's output depends on (global config, auth policies,
    capabilities, settings, resolved references); it also keeps the problems the
    route raised, so a cached render reports exactly what a fresh one would. Outputs
    are shared, never modified: every consumer (merge, plan, the admin client) copies
    what it changes.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[int, str], tuple[object, str, Any, list[str], list[str]]] = {}
        self._specs: dict[int, tuple[object, dict[str, Any]]] = {}

    def route(self, kind: str, doc: object, context: str) -> tuple[Any, list[str], list[str]] | None:
        """(output, problems, @ids of the output) of a route rendered before, if still valid."""
        found = self._routes.get((id(doc), kind))
        if found is None or found[0] is not doc or found[1] != context:
            return None
        return found[2], found[3], found[4]

    def keep_route(
        self, kind: str, doc: object, context: str, *, output: Any, problems: list[str], ids: list[str]
    ) -> None:
        self._routes[(id(doc), kind)] = (doc, context, output, problems, ids)

    def spec(self, doc: Any) -> dict[str, Any]:
        found = self._specs.get(id(doc))
        if found is None or found[0] is not doc:
            found = (doc, doc.model_dump(mode="json", by_alias=True, exclude={"api_version", "kind"}))
            self._specs[id(doc)] = found
        return found[1]

    def retain(self, docs: Iterable[object]) -> None:
        """Forget documents that are no longer in the revision (bounded memory)."""
        alive = {id(d) for d in docs}
        self._routes = {k: v for k, v in self._routes.items() if k[0] in alive}
        self._specs = {k: v for k, v in self._specs.items() if k in alive}


class _Renderer:
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
        if self.settings.https_listen:
            https: dict[str, Any] = {
                "@id": caddy_id("server"),
                "listen": list(self.settings.https_listen),
                "routes": group_routes(https_routes, functools.partial(caddy_id)),
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
                "routes": group_routes(http_routes, functools.partial(caddy_id, plain=True)),
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
        return [policy]

    # --- routes ---------------------------------------------------------------------

    def redirect_route(self, located: Located[RouteDocument]) -> dict[str, Any]:
        port = "" if self.https_port in (None, 443) else f":{self.https_port}"
        return {
            "@id": caddy_id("redirect", located.name),
            "match": [{"host": [located.doc.spec.domain]}],
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": 308,
                    "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
                }
            ],
            "terminal": True,
        }

    def site_route(self, located: Located[RouteDocument]) -> dict[str, Any]:
        spec = located.doc.spec
        handlers: list[dict[str, Any]] = []
        inner_routes: list[dict[str, Any]] = []
        request_id = any(isinstance(m, RequestId) for m in spec.middleware)
        if self.config.monitoring.tracing.enabled:
            # A route of its own first: Caddy chains routes, so the span covers forward auth too.
            inner_routes.append({"handle": [{"handler": "tracing", "span": located.name}]})
        for item in spec.middleware:
            if isinstance(item, RateLimit):
                handlers.append(self.rate_limit(located, item))
        response_headers = self.response_headers(located, request_id)
        if response_headers:
            handlers.append(response_headers)
        if any(isinstance(m, Compression) for m in spec.middleware):
            handlers.append({"handler": "encode", "encodings": {"zstd": {}, "gzip": {}}, "prefer": ["zstd", "gzip"]})
        if spec.auth_policy is not None:
            inner_routes.extend(self.forward_auth(located, self.policies[spec.auth_policy]))
        proxy_route: dict[str, Any] = {"handle": [*handlers, self.reverse_proxy(located, request_id)]}
        inner_routes.append(proxy_route)
        return {
            "@id": caddy_id("route", located.name),
            "match": [{"host": [spec.domain]}],
            "handle": [{"handler": "subroute", "routes": inner_routes}],
            "terminal": True,
        }

    def http_route(self, located: Located[RouteDocument]) -> dict[str, Any]:
        """The route on the plain-HTTP server: a redirect, or the site itself. The same route may be
        served on both servers, and @ids must stay unique: these get PLAIN_SUFFIX (see caddy_id)."""
        tls = located.doc.spec.tls
        route = self.redirect_route(located) if tls.auto_https and tls.force_https else self.site_route(located)
        return dict(_plain_copy(route))

    def rate_limit(self, located: Located[RouteDocument], limit: RateLimit) -> dict[str, Any]:
        if not self.capabilities.has(RATE_LIMIT_MODULE):
            self.problems.append(
                f"Route/{located.name}: middleware '{limit}' needs the Caddy module {RATE_LIMIT_MODULE}, which "
                f"this Caddy ({self.capabilities.version}) does not have. Build Caddy with it "
                "(xcaddy build --with github.com/mholt/caddy-ratelimit) or remove the middleware"
            )
        window = {"second": "1s", "minute": "1m", "hour": "1h"}[limit.per]
        return {
            "handler": "rate_limit",
            "rate_limits": {
                located.name: {
                    "key": "{http.request.remote.host}",
                    "window": window,
                    "max_events": limit.requests,
                }
            },
        }

    def response_headers(self, located: Located[RouteDocument], request_id: bool) -> dict[str, Any] | None:
        headers = located.doc.spec.headers
        removed = {name.lower() for name in headers.remove}
        # Header names are case-insensitive: one entry per header, the route's spelling and value
        # replacing a global one of any spelling (two entries would make Caddy pick one per request).
        chosen = {name.lower(): (name, value) for name, value in self.config.security.headers.items()}
        chosen.update({name.lower(): (name, value) for name, value in headers.set.items()})
        to_set = {name: [value] for key, (name, value) in chosen.items() if key not in removed}
        if request_id:
            to_set = {n: v for n, v in to_set.items() if n.lower() != REQUEST_ID_HEADER.lower()}
            to_set[REQUEST_ID_HEADER] = ["{http.request.uuid}"]
        response: dict[str, Any] = {}
        if to_set:
            response["set"] = to_set
        if headers.remove:
            response["delete"] = list(headers.remove)
        if not response:
            return None
        # Without `deferred`, response operations run before the proxy and the backend's
        # headers win (fact 22).
        response["deferred"] = True
        return {"handler": "headers", "response": response}

    def reverse_proxy(self, located: Located[RouteDocument], request_id: bool) -> dict[str, Any]:
        spec = located.doc.spec
        dials = [u.dial for u in spec.upstreams]
        weights = [u.weight for u in spec.upstreams]
        if spec.canary is not None:
            total = sum(weights)
            weights = [w * (100 - spec.canary.percentage) for w in weights]
            weights.append(total * spec.canary.percentage)
            dials.append(spec.canary.upstream)
        kept = [(d, w) for d, w in zip(dials, weights, strict=True) if w > 0]
        handler: dict[str, Any] = {"handler": "reverse_proxy"}
        counts = _upstream_counts([w for _, w in kept])
        unique_weights = len(set(counts)) == 1
        if self.capabilities.has(WEIGHTED_POLICY_MODULE) and not unique_weights:
            handler["upstreams"] = [{"dial": d} for d, _ in kept]
            selection: dict[str, Any] = {"policy": "weighted_round_robin", "weights": counts}
        else:
            # Caddy 2.6.2 has no weighted_round_robin: list each upstream as often as its
            # weight, in smooth order, and go round robin over the list.
            order = smooth_sequence(counts) if not unique_weights else list(range(len(kept)))
            handler["upstreams"] = [{"dial": kept[i][0]} for i in order]
            selection = {"policy": "round_robin"}
        load_balancing: dict[str, Any] = {"selection_policy": selection}
        if len({d for d, _ in kept}) > 1:
            load_balancing.update({"try_duration": "5s", "try_interval": "250ms"})
        handler["load_balancing"] = load_balancing
        resolvers = self.resolvers()
        if resolvers:
            # Upstream host names are looked up through these (Caddy's HTTP transport `resolver`).
            handler["transport"] = {"protocol": "http", "resolver": {"addresses": resolvers}}
        defaults = self.config.health_checks.effective
        if spec.health_check is not None or defaults.path is not None:
            path: str | None
            if spec.health_check is not None:
                path = spec.health_check.path
                interval, timeout, threshold = effective_health_check(spec.health_check, self.config)
            else:  # global.healthChecks.default is the check of every route without its own
                path = defaults.path
                interval, timeout, threshold = defaults.interval, defaults.timeout, defaults.unhealthy_threshold
            active: dict[str, Any] = {
                "uri": path,
                "interval": _duration(interval),
                "timeout": _duration(timeout),
                "expect_status": 2,
            }
            if self.capabilities.at_least(2, 8):
                active["fails"] = threshold  # 2.6.2 marks an upstream down after one failed probe
            handler["health_checks"] = {
                "active": active,
                "passive": {
                    "max_fails": threshold,
                    "fail_duration": _duration(Duration(max(10_000, interval.milliseconds * threshold))),
                },
            }
        upstream_set: dict[str, list[str]] = {
            n: [self.resolve(v, f"Route/{located.name}: headers.upstream.set.{n}", dollar_escapes=False)]
            for n, v in spec.headers.upstream.set.items()
        }
        if request_id:  # the models refuse a rule naming it next to the middleware
            upstream_set[REQUEST_ID_HEADER] = ["{http.request.uuid}"]
        request_headers: dict[str, Any] = {}
        if upstream_set:
            request_headers["set"] = upstream_set
        if spec.headers.upstream.remove:
            request_headers["delete"] = list(spec.headers.upstream.remove)
        if request_headers:
            handler["headers"] = {"request": request_headers}
        return handler

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


def _plain_copy(node: Any) -> Any:
    """`node` with PLAIN_SUFFIX on every `@id` (see caddy_id): the same route served on the plain-HTTP server."""
    if isinstance(node, dict):
        return {k: (v + PLAIN_SUFFIX if k == "@id" else _plain_copy(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain_copy(v) for v in node]
    return node


def _catch_all() -> dict[str, Any]:
    return {
        "@id": caddy_id("not-found"),
        "handle": [{"handler": "static_response", "status_code": 404, "body": "no route for this host\n"}],
        "terminal": True,
    }


def _specificity(located: Located[RouteDocument]) -> tuple[int, int, str]:
    """Exact hosts first, then wildcards with more labels; ties broken by name for stability."""
    domain = located.doc.spec.domain
    wildcard = domain.startswith("*.")
    return (1 if wildcard else 0, -domain.count("."), located.name)


def render_caddy(
    state: DesiredState,
    settings: CaddySettings = CaddySettings(),
    capabilities: CaddyCapabilities = CaddyCapabilities(),
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
