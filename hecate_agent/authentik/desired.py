"""What Authentik must hold for the routes an AuthPolicy protects: a pure mapping.

Input is one `ProtectedRoute` per Route that names an AuthPolicy; output is the
list of `DesiredObject`s (kind + `hecate-` prefixed name/slug + the fields we
own), in dependency order. Objects refer to each other with `Ref(kind, key)`,
never by primary key: the adapter resolves keys to pks when it writes, and
turns pks back into keys when it reads, so desired and live compare directly.

Per route: a proxy provider (`forward_single`) and an application. Per policy:
expression policies for groups (any of them) and required attributes (all
present and non-empty), an authorization flow with an authenticator validation
stage when MFA is required or optional, and a user-login stage carrying the
session duration. Checked against authentik-client 2026.8.5 (see README).
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hecate_agent.spec.types import AUTH_METHODS

PREFIX = "hecate-"
PUBLISHER = "hecate"
DEFAULT_AUTHORIZATION_FLOW = "default-provider-authorization-implicit-consent"
DEFAULT_INVALIDATION_FLOW = "default-provider-invalidation-flow"
EMBEDDED_OUTPOST = "goauthentik.io/outposts/embedded"
# Authentik's own model default for ProxyProvider.access_token_validity (authentik/providers/oauth2/models.py).
DEFAULT_TOKEN_VALIDITY = "hours=1"

Mfa = Literal["required", "optional", "disabled"]
Scheme = Literal["https", "http"]
METHODS = AUTH_METHODS  # the sign-in methods an AuthPolicy names (spec/types.py)
DEVICE_CLASSES = ("webauthn", "totp", "static", "duo", "sms", "email")  # DeviceClassesEnum, without password

# Dependency order: everything a later kind refers to comes earlier. Deletes run in reverse.
Kind = Literal[
    "flow",
    "validate_stage",
    "login_stage",
    "flow_binding",
    "policy",
    "provider",
    "application",
    "policy_binding",
    "outpost_provider",
]
KINDS: tuple[Kind, ...] = typing.get_args(Kind)

ORDER_VALIDATE = 10
ORDER_LOGIN = 100
ORDER_GROUPS = 10
ORDER_ATTRIBUTES = 20
_SLUG = re.compile(r"[^-a-zA-Z0-9_]+")


class MappingError(ValueError):
    """A route cannot be expressed in Authentik as given (the message names the route and field)."""


@dataclass(frozen=True)
class ProtectedRoute:
    """One Route that names an AuthPolicy, with the policy's settings flattened in."""

    route: str
    domain: str
    scheme: Scheme
    policy: str
    flow: str  # slug of the Authentik authentication flow
    groups: tuple[str, ...] = ()
    mfa: Mfa = "disabled"
    allowed_methods: tuple[str, ...] = ()  # subset of METHODS; empty: any MFA device class
    session_duration: int | None = None  # seconds
    required_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ref:
    """A reference to another Authentik object by kind and key (name or slug), resolved to a pk on write."""

    kind: str
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class DesiredObject:
    kind: str
    key: str
    fields: Mapping[str, Any] = field(hash=False)
    fingerprint: str = ""

    @property
    def ident(self) -> tuple[str, str]:
        return (self.kind, self.key)


def canonical(value: Any) -> Any:
    """JSON-able form of field values (refs become `kind:key` strings)."""
    if isinstance(value, Ref):
        return {"$ref": str(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def uncanonical(value: Any) -> Any:
    """The inverse of `canonical`: `{"$ref": "kind:key"}` back into a Ref."""
    if isinstance(value, Mapping):
        if set(value) == {"$ref"}:
            kind, _, key = str(value["$ref"]).partition(":")
            return Ref(kind, key)
        return {str(k): uncanonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [uncanonical(v) for v in value]
    return value


def fingerprint(kind: str, key: str, fields: Mapping[str, Any]) -> str:
    text = json.dumps({"kind": kind, "key": key, "fields": canonical(fields)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make(kind: Kind, key: str, fields: Mapping[str, Any]) -> DesiredObject:
    return DesiredObject(kind, key, dict(fields), fingerprint(kind, key, fields))


def duration(seconds: int) -> str:
    """Seconds in Authentik's `timedelta_from_string` format: `hours=4`, `hours=1;minutes=30`, `seconds=0`."""
    if seconds < 0:
        raise MappingError(f"a duration cannot be negative, got {seconds} seconds")
    parts = []
    rest = seconds
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{unit}={amount}")
    return ";".join(parts) or "seconds=0"


def slug(text: str) -> str:
    cleaned = _SLUG.sub("-", text).strip("-").lower()
    return cleaned or "x"


def provider_name(route: str) -> str:
    return f"{PREFIX}{route}"


def application_slug(route: str) -> str:
    return f"{PREFIX}{slug(route)}"


def flow_slug(policy: str) -> str:
    return f"{PREFIX}{slug(policy)}-authorization"


def groups_expression(groups: Iterable[str]) -> str:
    """An expression policy body: the user is a member of at least one of the groups."""
    names = ", ".join(repr(str(g)) for g in groups)
    return (
        f"for name in ({names},):\n"
        "    if ak_is_group_member(request.user, name=name):\n"
        "        return True\n"
        'ak_message("You are not in a group this application requires.")\n'
        "return False\n"
    )


def attributes_expression(attributes: Iterable[str]) -> str:
    """An expression policy body: every attribute is present and non-empty on the user."""
    names = ", ".join(repr(str(a)) for a in attributes)
    return (
        "attributes = request.user.attributes or {}\n"
        f"for name in ({names},):\n"
        "    value = attributes.get(name)\n"
        "    if value is None or (isinstance(value, str) and not value.strip()):\n"
        '        ak_message("Missing required attribute: " + name)\n'
        "        return False\n"
        "    if isinstance(value, (list, tuple, dict, set)) and not value:\n"
        '        ak_message("Missing required attribute: " + name)\n'
        "        return False\n"
        "return True\n"
    )


def device_classes(route: ProtectedRoute) -> list[str]:
    unknown = sorted(set(route.allowed_methods) - set(METHODS))
    if unknown:
        raise MappingError(
            f"route {route.route!r}: policy {route.policy!r} allowedMethods has {', '.join(unknown)}; "
            f"expected some of {', '.join(METHODS)}"
        )
    if not route.allowed_methods:
        return list(DEVICE_CLASSES)
    classes = [c for c in DEVICE_CLASSES if c in route.allowed_methods]
    if not classes and route.mfa != "disabled":
        raise MappingError(
            f"route {route.route!r}: policy {route.policy!r} has mfa {route.mfa!r} but allowedMethods names no "
            f"second factor (only password); add one of {', '.join(DEVICE_CLASSES)} or set mfa: disabled"
        )
    return classes


def _policy_objects(route: ProtectedRoute) -> list[DesiredObject]:
    """The objects one AuthPolicy owns, shared by every route that names it."""
    base = f"{PREFIX}{route.policy}"
    objects: list[DesiredObject] = []
    if route.groups:
        objects.append(make("policy", f"{base}-groups", {"expression": groups_expression(route.groups)}))
    if route.required_attributes:
        expression = attributes_expression(route.required_attributes)
        objects.append(make("policy", f"{base}-attributes", {"expression": expression}))
    if not _owns_flow(route):
        return objects
    flow = flow_slug(route.policy)
    objects.append(
        make(
            "flow",
            flow,
            {
                "name": f"{base} authorization",
                "title": f"{route.policy}: verifying your access",
                "designation": "authorization",
                "authentication": "require_authenticated",
            },
        )
    )
    if route.mfa != "disabled":
        stage: dict[str, Any] = {
            "device_classes": device_classes(route),
            "not_configured_action": "deny" if route.mfa == "required" else "skip",
        }
        # MFA is not asked again within the session; "seconds=0" (Authentik's default) asks every time.
        stage["last_auth_threshold"] = duration(route.session_duration or 0)
        objects.append(make("validate_stage", f"{base}-mfa", stage))
        objects.append(
            make(
                "flow_binding",
                f"{flow}/{base}-mfa",
                {"target": Ref("flow", flow), "stage": Ref("validate_stage", f"{base}-mfa"), "order": ORDER_VALIDATE},
            )
        )
    if route.session_duration is not None:
        objects.append(make("login_stage", f"{base}-login", {"session_duration": duration(route.session_duration)}))
        objects.append(
            make(
                "flow_binding",
                f"{flow}/{base}-login",
                {"target": Ref("flow", flow), "stage": Ref("login_stage", f"{base}-login"), "order": ORDER_LOGIN},
            )
        )
    return objects


def _owns_flow(route: ProtectedRoute) -> bool:
    return route.mfa != "disabled" or route.session_duration is not None


def _route_objects(route: ProtectedRoute, outpost: str, authorization_flow: str, invalidation_flow: str) -> list[Any]:
    name = provider_name(route.route)
    app = application_slug(route.route)
    validity = DEFAULT_TOKEN_VALIDITY if route.session_duration is None else duration(route.session_duration)
    authorization = flow_slug(route.policy) if _owns_flow(route) else authorization_flow
    objects = [
        make(
            "provider",
            name,
            {
                "mode": "forward_single",
                "external_host": f"{route.scheme}://{route.domain}",
                "authorization_flow": Ref("flow", authorization),
                "invalidation_flow": Ref("flow", invalidation_flow),
                "authentication_flow": Ref("flow", route.flow),
                "access_token_validity": validity,
            },
        ),
        make(
            "application",
            app,
            {
                "name": name,
                "provider": Ref("provider", name),
                "meta_publisher": PUBLISHER,
                "meta_launch_url": f"{route.scheme}://{route.domain}",
                "policy_engine_mode": "all",
            },
        ),
    ]
    base = f"{PREFIX}{route.policy}"
    for suffix, wanted, order in (
        ("groups", route.groups, ORDER_GROUPS),
        ("attributes", route.required_attributes, ORDER_ATTRIBUTES),
    ):
        if wanted:
            fields = {
                "target": Ref("application", app),
                "policy": Ref("policy", f"{base}-{suffix}"),
                "order": order,
                "enabled": True,
                "negate": False,
            }
            objects.append(make("policy_binding", f"{app}/{base}-{suffix}", fields))
    objects.append(
        make("outpost_provider", f"{outpost}/{name}", {"outpost": outpost, "provider": Ref("provider", name)})
    )
    return objects


def desired_objects(
    routes: Iterable[ProtectedRoute],
    *,
    outpost: str = EMBEDDED_OUTPOST,
    authorization_flow: str = DEFAULT_AUTHORIZATION_FLOW,
    invalidation_flow: str = DEFAULT_INVALIDATION_FLOW,
) -> list[DesiredObject]:
    """Every object Authentik must hold for these routes, in dependency order (pure, deterministic).

    `outpost` is the outpost's `managed` identifier for the embedded one, otherwise its name.
    """
    by_ident: dict[tuple[str, str], DesiredObject] = {}
    owner: dict[tuple[str, str], str] = {}
    for route in sorted(routes, key=lambda r: r.route):
        if route.session_duration is not None and route.session_duration <= 0:
            raise MappingError(f"route {route.route!r}: policy {route.policy!r} sessionDuration must be positive")
        for obj in _policy_objects(route) + _route_objects(route, outpost, authorization_flow, invalidation_flow):
            previous = by_ident.get(obj.ident)
            if previous is not None and previous.fingerprint != obj.fingerprint:
                raise MappingError(
                    f"route {route.route!r} and route {owner[obj.ident]!r} both map to Authentik {obj.kind} "
                    f"{obj.key!r} with different settings; give them distinct names"
                )
            by_ident[obj.ident] = obj
            owner.setdefault(obj.ident, route.route)
    return sorted(by_ident.values(), key=lambda o: (KINDS.index(o.kind), o.key))
