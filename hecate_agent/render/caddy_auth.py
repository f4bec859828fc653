"""An AuthPolicy as Caddy routes: forward auth to the Authentik outpost, as Caddy's own `forward_auth`
expands to, and the checks made at the proxy (methods, required attributes, groups).

Pure: the caller gives the outpost's dial address and a function that makes each piece's `@id`
(ids are made in one place, `render.caddy.caddy_id`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hecate_agent.spec.headers import AUTHENTIK_HEADERS
from hecate_agent.spec.models import AuthPolicySpec

# Addresses whose X-Forwarded-* headers the outpost request may carry on (as Caddy's
# `trusted_proxies private_ranges` expands to in 2.6.2).
PRIVATE_RANGES = ["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/8", "127.0.0.1/8", "fd00::/8", "::1"]
# Client-sent identity headers in any spelling: Go canonicalizes names (X-Authentik-Username,
# X_authentik_username) and CGI-style backends read '_' as '-' (HTTP_X_AUTHENTIK_USERNAME), so both
# prefixes go (Caddy's `delete` takes a trailing '*' as a prefix match).
IDENTITY_DELETE = ("X-Authentik*", "X_authentik*")


def forward_auth_routes(
    spec: AuthPolicySpec, dial: str, tls: bool, piece_id: Callable[[str], str]
) -> list[dict[str, Any]]:
    def proxy_to_outpost(**extra: Any) -> dict[str, Any]:
        handler: dict[str, Any] = {"handler": "reverse_proxy", "upstreams": [{"dial": dial}], **extra}
        if tls:
            handler["transport"] = {"protocol": "http", "tls": {}}
        return handler

    copy_routes: list[dict[str, Any]] = [
        # Identity headers come only from the outpost: drop whatever the client sent.
        {"handle": [{"handler": "headers", "request": {"delete": list(IDENTITY_DELETE)}}]}
    ]
    for name in sorted(AUTHENTIK_HEADERS.values()):
        placeholder = f"{{http.reverse_proxy.header.{name}}}"
        # Caddy 2.6.2 would pass a missing header on as the literal placeholder text;
        # an absent placeholder compares equal to "<nil>" in the vars matcher (fact 25).
        copy_routes.append(
            {
                "match": [{"not": [{"vars": {placeholder: ["<nil>", ""]}}]}],
                "handle": [{"handler": "headers", "request": {"set": {name: [placeholder]}}}],
            }
        )
    routes: list[dict[str, Any]] = [
        {
            "@id": piece_id("outpost"),
            "match": [{"path": ["/outpost.goauthentik.io/*"]}],
            "handle": [proxy_to_outpost()],
            "terminal": True,
        }
    ]
    if spec.allowed_methods:
        routes.append(
            _deny(piece_id("methods"), {"not": [{"method": list(spec.allowed_methods)}]}, 405, "method not allowed")
        )
    routes.append(
        {
            "@id": piece_id("forward"),
            "handle": [
                proxy_to_outpost(
                    rewrite={"method": "GET", "uri": "/outpost.goauthentik.io/auth/caddy"},
                    headers={
                        "request": {
                            "set": {
                                "X-Forwarded-Method": ["{http.request.method}"],
                                "X-Forwarded-Uri": ["{http.request.uri}"],
                            }
                        }
                    },
                    trusted_proxies=PRIVATE_RANGES,
                    handle_response=[{"match": {"status_code": [2]}, "routes": copy_routes}],
                )
            ],
        }
    )
    for attribute in spec.metadata.required:
        header = AUTHENTIK_HEADERS[attribute]
        routes.append(
            _deny(
                piece_id(f"requires-{attribute}"),
                {"not": [{"header_regexp": {header: {"pattern": ".+"}}}]},
                403,
                "forbidden",
            )
        )
    if spec.requirements.groups:
        matcher = {"header_regexp": {"X-Authentik-Groups": {"pattern": groups_pattern(spec.requirements.groups)}}}
        routes.append(_deny(piece_id("groups"), {"not": [matcher]}, 403, "forbidden"))
    return routes


def groups_pattern(groups: list[str]) -> str:
    """A Go regexp matching a `|`-separated group list (as Authentik sends it) that holds one of
    `groups` as a whole item. Each name is escaped, and the models refuse empty names and names
    holding '|', so no name can widen the match (an empty one would let in users in no group)."""
    alternatives = "|".join(_go_regex_escape(g) for g in sorted(groups))
    return f"(^|\\|)({alternatives})(\\||$)"


def _deny(object_id: str, matcher: dict[str, Any], status: int, body: str) -> dict[str, Any]:
    return {
        "@id": object_id,
        "match": [matcher],
        "handle": [{"handler": "static_response", "status_code": status, "body": body + "\n"}],
        "terminal": True,
    }


def _go_regex_escape(text: str) -> str:
    """Go's regexp.QuoteMeta."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)
