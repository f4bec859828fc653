"""The Caddy renderer's per-route parts: the HTTPS site route, its plain-HTTP copy or redirect, rate
limit, response headers and the reverse proxy with its upstreams and health checks."""

from __future__ import annotations

from typing import Any

from hecate_agent.spec.checks import effective_health_check
from hecate_agent.spec.headers import REQUEST_ID_HEADER
from hecate_agent.spec.loader import Located
from hecate_agent.spec.middleware import Compression, RateLimit, RequestId
from hecate_agent.spec.models import RouteDocument
from hecate_agent.spec.types import (
    Duration,
)

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text, slower
    _orjson = None  # type: ignore[assignment]

from hecate_agent.render.caddy_common import (
    RATE_LIMIT_MODULE,
    WEIGHTED_POLICY_MODULE,
    _duration,
    _plain_copy,
    _upstream_counts,
    caddy_id,
    smooth_sequence,
)
from hecate_agent.render.caddy_parts import RendererParts


class RouteParts(RendererParts):
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
