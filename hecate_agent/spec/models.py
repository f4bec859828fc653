"""The Hecate spec format (apiVersion hecate.io/v1) as pydantic models.

The models are the single source of truth: the JSON Schemas in `schemas/` are
generated from them. Fields are camelCase in YAML and snake_case in Python.
Every model forbids unknown fields and is strict (no silent coercion of
`"3"` into `3`): a typo in a spec is an error, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hecate_agent.spec.base import (
    Metadata,
    ProbeInterval,
    ProbeTimeout,
    SpecModel,
)
from hecate_agent.spec.headers import (
    AUTHENTIK_HEADERS,
    GROUP_NAME_PATTERN,
    IDENTITY_NAME_PATTERN,
    check_group_name,
    check_header_rules,
    check_request_id,
    refuse_identity_header,
)
from hecate_agent.spec.middleware import Middleware, RateLimit, RequestId
from hecate_agent.spec.streams import (
    StreamDocument,
)
from hecate_agent.spec.templates import UpstreamHeaderValue
from hecate_agent.spec.types import (
    AUTH_METHODS,
    HEADER_NAME_PATTERN,
    HTTP_METHODS,
    AttributeName,
    AuthMethod,
    Dial,
    Domain,
    DurationField,
    HeaderName,
    HeaderValue,
    HttpMethod,
    HttpPath,
    ResourceName,
    TlsVersion,
)

# --- Route ----------------------------------------------------------------------


class Upstream(SpecModel):
    dial: Dial = Field(description="Backend address, host:port.")
    weight: int = Field(default=1, ge=1, le=100, description="Share of requests relative to the others, 1-100.")


class RouteTls(SpecModel):
    auto_https: bool = Field(
        default=True,
        alias="autoHTTPS",
        description="Obtain and serve a certificate for the domain; false serves plain HTTP only.",
    )
    force_https: bool = Field(default=True, alias="forceHTTPS", description="Redirect plain HTTP requests to HTTPS.")
    min_version: TlsVersion | None = Field(
        default=None,
        description="Minimum TLS version for this domain; defaults to global.security.tlsMinVersion.",
    )


class RouteHealthCheck(SpecModel):
    path: HttpPath = Field(description="Path probed on every upstream, e.g. /healthz.")
    interval: ProbeInterval | None = Field(
        default=None, description="Time between probes, at most 1d; defaults to global.healthChecks.default.interval."
    )
    timeout: ProbeTimeout | None = Field(
        default=None,
        description="Probe timeout, shorter than interval; defaults to global.healthChecks.default.timeout.",
    )
    unhealthy_threshold: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Failures in a row before an upstream is taken out; defaults to global.healthChecks.default.",
    )


class HeaderRules(SpecModel):
    set: dict[HeaderName, HeaderValue] = Field(default_factory=dict, description="Headers to set (replacing).")
    remove: list[HeaderName] = Field(default_factory=list, description="Header names to remove.")

    @model_validator(mode="after")
    def _one_spelling_per_header(self) -> HeaderRules:
        check_header_rules(type(self).__name__, self.set, self.remove)
        return self


# A header of the proxied request: any name but the identity headers forward auth supplies.
UpstreamHeaderName = Annotated[
    str,
    Field(
        pattern=HEADER_NAME_PATTERN,
        max_length=256,
        description="An HTTP header name (RFC 9110 token), not an X-Authentik-* identity header "
        "(those come from the AuthPolicy's forward auth only).",
        json_schema_extra={"pattern": f"^(?!{IDENTITY_NAME_PATTERN}){HEADER_NAME_PATTERN[1:]}"},
    ),
    AfterValidator(refuse_identity_header),
]


class UpstreamHeaderRules(SpecModel):
    set: dict[UpstreamHeaderName, UpstreamHeaderValue] = Field(
        default_factory=dict,
        description="Headers to set (replacing) on the proxied request; values may hold ${ENV_VAR} or "
        "${vault:path#key} references (e.g. a backend's API key).",
    )
    remove: list[UpstreamHeaderName] = Field(default_factory=list, description="Header names to remove.")

    @model_validator(mode="after")
    def _one_spelling_per_header(self) -> UpstreamHeaderRules:
        check_header_rules(type(self).__name__, self.set, self.remove)
        return self


class RouteHeaders(HeaderRules):
    """Response headers (`set`/`remove`) and, under `upstream`, headers of the proxied request."""

    upstream: UpstreamHeaderRules = Field(
        default_factory=UpstreamHeaderRules, description="Headers changed on the request sent to the upstream."
    )


class Canary(SpecModel):
    upstream: Dial = Field(description="The canary backend, host:port.")
    percentage: int = Field(ge=0, le=100, description="Share of requests (0-100) sent to the canary.")


# Each kind of middleware at most once (`_one_of_each_middleware`), said in JSON Schema.
_MIDDLEWARE_KINDS: tuple[dict[str, Any], ...] = (
    {"type": "string", "pattern": "^rate-limit:"},
    {"const": "compression"},
    {"const": "request-id"},
)


def _at_most_once(item: dict[str, Any]) -> dict[str, Any]:
    return {"contains": item, "minContains": 0, "maxContains": 1}


def _not_named(pattern: str) -> dict[str, Any]:
    """JSON Schema: a header rule (`set` keys, `remove` items) that never names a header matching `pattern`."""
    return {
        "properties": {
            "set": {"propertyNames": {"not": {"pattern": pattern}}},
            "remove": {"items": {"not": {"pattern": pattern}}},
        }
    }


# `check_request_id`, said in JSON Schema: with the request-id middleware, no rule names X-Request-ID (any case).
_REQUEST_ID_NAME = "^" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in "X-Request-ID") + "$"
_ROUTE_RULES: dict[str, Any] = {
    "if": {"required": ["middleware"], "properties": {"middleware": {"contains": {"const": "request-id"}}}},
    "then": {
        "properties": {
            "headers": {
                "allOf": [
                    _not_named(_REQUEST_ID_NAME),
                    {"properties": {"upstream": _not_named(_REQUEST_ID_NAME)}},
                ]
            }
        }
    },
}


class RouteSpec(SpecModel):
    model_config = ConfigDict(json_schema_extra=_ROUTE_RULES)

    domain: Domain = Field(description="Host this route answers for; unique across routes.")
    upstreams: list[Upstream] = Field(min_length=1, max_length=100, description="Backends, at least one.")
    auth_policy: ResourceName | None = Field(default=None, description="Name of an AuthPolicy that guards this route.")
    tls: RouteTls = Field(default_factory=RouteTls, description="TLS behaviour of the domain.")
    health_check: RouteHealthCheck | None = Field(default=None, description="Active health checks.")
    headers: RouteHeaders = Field(default_factory=RouteHeaders, description="Header rules.")
    middleware: list[Middleware] = Field(
        default_factory=list,
        description="Middleware applied in order: rate-limit, compression, request-id.",
        json_schema_extra={"allOf": [_at_most_once(item) for item in _MIDDLEWARE_KINDS]},
    )
    canary: Canary | None = Field(default=None, description="Progressive rollout to a canary backend.")

    @model_validator(mode="after")
    def _one_of_each_middleware(self) -> RouteSpec:
        seen: set[str] = set()
        for item in self.middleware:
            kind = "rate-limit" if isinstance(item, RateLimit) else str(item)
            if kind in seen:
                raise PydanticCustomError("hecate", f"middleware {kind!r} is listed twice; keep one")
            seen.add(kind)
        if any(isinstance(item, RequestId) for item in self.middleware):
            check_request_id(self.headers)
        return self


class RouteDocument(SpecModel):
    api_version: Literal["hecate.io/v1"] = Field(description="Always hecate.io/v1.")
    kind: Literal["Route"] = Field(description="Route: an HTTP(S) site served by Caddy.")
    metadata: Metadata = Field(description="Name and labels.")
    spec: RouteSpec = Field(description="What the route does.")


# --- AuthPolicy -------------------------------------------------------------------

# User attributes the Authentik outpost sends as X-Authentik-* headers: the proxy itself can
# require these. Any other attribute is checked by Authentik (a policy the agent provisions).
HEADER_ATTRIBUTES = tuple(AUTHENTIK_HEADERS)
MFA_BOOLEAN_ALIASES = {True: "required", False: "disabled"}


def _mfa_from_boolean(value: object) -> object:
    """`mfa: true/false` (the old spelling) means required/disabled; `validate` warns about it."""
    if isinstance(value, bool):
        return MFA_BOOLEAN_ALIASES[value]
    return value


GroupName = Annotated[
    str,
    Field(
        max_length=1024,
        json_schema_extra={"pattern": GROUP_NAME_PATTERN},
        description="An Authentik group name: not empty, no '|' (it separates the groups Authentik sends), "
        "no control characters or braces, no whitespace at either end.",
    ),
    AfterValidator(check_group_name),
]


class AuthRequirements(SpecModel):
    groups: list[GroupName] = Field(
        default_factory=list, description="The user must be in at least one of these Authentik groups."
    )
    mfa: Annotated[
        Literal["required", "optional", "disabled"],
        BeforeValidator(_mfa_from_boolean),
        WithJsonSchema(
            {"anyOf": [{"enum": ["required", "optional", "disabled"]}, {"type": "boolean", "deprecated": True}]}
        ),
    ] = Field(
        default="disabled",
        description="Multi-factor authentication in the Authentik flow: required (no access without a second "
        "factor), optional (asked for when the user has one), disabled. true/false are deprecated aliases of "
        "required/disabled. Needs Authentik provisioning on the node unless disabled.",
    )
    session_duration: DurationField | None = Field(
        default=None,
        description="How long an authenticated session lasts, e.g. 8h. Needs Authentik provisioning on the node.",
    )


class AuthMetadata(SpecModel):
    required: list[AttributeName] = Field(
        default_factory=list,
        description="User attributes a user must have for access, e.g. employee_id. username, groups, email, name, "
        "uid and entitlements are checked by the proxy on the outpost's X-Authentik-* headers; any other "
        "attribute needs Authentik provisioning on the node.",
    )


def _only_authentik(value: object) -> object:
    if isinstance(value, str) and value != "authentik":
        raise PydanticCustomError(
            "hecate",
            f"provider {value!r} is not supported; 'authentik' is the only provider for now "
            "(forward auth to its outpost)",
        )
    return value


def _authentication_methods(value: object) -> object:
    """The old meaning of allowedMethods (HTTP methods) gets a message saying where they went."""
    if isinstance(value, list):
        http = [v for v in value if isinstance(v, str) and v.upper() in HTTP_METHODS]
        if http:
            raise PydanticCustomError(
                "hecate",
                f"allowedMethods lists authentication methods ({', '.join(AUTH_METHODS)}); "
                f"{', '.join(map(repr, http))} {'is an HTTP method' if len(http) == 1 else 'are HTTP methods'}: "
                "move HTTP methods to allowedHttpMethods",
            )
    return value


class AuthPolicySpec(SpecModel):
    provider: Annotated[Literal["authentik"], BeforeValidator(_only_authentik)] = Field(
        description="Identity provider. Only 'authentik' is supported for now (forward auth to its outpost)."
    )
    flow: ResourceName | None = Field(
        default=None,
        description="Slug of the Authentik authentication flow, e.g. default-authentication-flow; without it the "
        "brand's default flow applies. Needs Authentik provisioning on the node.",
    )
    requirements: AuthRequirements = Field(
        default_factory=AuthRequirements, description="What a user needs to get through."
    )
    metadata: AuthMetadata = Field(default_factory=AuthMetadata, description="User attributes a user must have.")
    allowed_methods: Annotated[list[AuthMethod], BeforeValidator(_authentication_methods)] = Field(
        default_factory=list,
        description="Authentication methods a user may sign in with: password, webauthn, totp, static, duo, sms, "
        "email; empty means whatever the flow offers. Needs Authentik provisioning on the node.",
    )
    allowed_http_methods: list[HttpMethod] = Field(
        default_factory=list,
        description="HTTP methods let through to the upstream (others get 405); empty means all.",
    )


class AuthPolicyDocument(SpecModel):
    api_version: Literal["hecate.io/v1"] = Field(description="Always hecate.io/v1.")
    kind: Literal["AuthPolicy"] = Field(description="AuthPolicy: who may reach the routes that name it.")
    metadata: Metadata = Field(description="Name and labels.")
    spec: AuthPolicySpec = Field(description="The policy.")


SpecDocument = RouteDocument | AuthPolicyDocument | StreamDocument
DOCUMENT_MODELS: dict[str, type[RouteDocument] | type[AuthPolicyDocument] | type[StreamDocument]] = {
    "Route": RouteDocument,
    "AuthPolicy": AuthPolicyDocument,
    "Stream": StreamDocument,
}
