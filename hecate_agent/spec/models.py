"""The Hecate spec format (apiVersion hecate.io/v1) as pydantic models.

The models are the single source of truth: the JSON Schemas in `schemas/` are
generated from them. Fields are camelCase in YAML and snake_case in Python.
Every model forbids unknown fields and is strict (no silent coercion of
`"3"` into `3`): a typo in a spec is an error, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from hecate_agent.spec.addresses import AddressError, parse_server
from hecate_agent.spec.headers import (
    GROUP_NAME_PATTERN,
    IDENTITY_NAME_PATTERN,
    check_group_name,
    check_header_rules,
    check_request_id,
    refuse_identity_header,
)
from hecate_agent.spec.types import (
    HEADER_NAME_PATTERN,
    Dial,
    Domain,
    Duration,
    DurationField,
    HeaderName,
    HeaderValue,
    HttpMethod,
    HttpPath,
    LabelKey,
    LabelValue,
    ListenAddress,
    Middleware,
    Port,
    RateLimit,
    RequestId,
    ResourceName,
    StreamServer,
    Templated,
    TlsVersion,
    UpstreamHeaderValue,
    UrlOrReference,
)

API_VERSION = "hecate.io/v1"

# Ports each stream preset opens; every one is TCP (DESIGN.md, "Spec format").
PRESET_PORTS: dict[str, tuple[int, ...]] = {
    "mailcow": (25, 465, 587, 143, 993, 110, 995),
    "jenkins": (50000,),
    "wazuh": (1514, 1515),
}


def _timeout_below_interval(timeout: Duration | None, info: ValidationInfo) -> Duration | None:
    """A probe must finish before the next one starts (`interval` is declared, so validated, first)."""
    interval = info.data.get("interval")
    if timeout is not None and isinstance(interval, Duration) and timeout >= interval:
        raise PydanticCustomError(
            "hecate",
            f"timeout ({timeout}) must be shorter than interval ({interval}); "
            "a probe must finish before the next one starts",
        )
    return timeout


ProbeTimeout = Annotated[DurationField, AfterValidator(_timeout_below_interval)]


class SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=False,
    )


class Metadata(SpecModel):
    name: ResourceName = Field(description="Name of the resource, unique among resources of its kind.")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description='Free-form key/value labels. The agent reads one: hecate.io/verify: "true" on a Route '
        "makes the daemon check after each change that it answers through Caddy (else it rolls back).",
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
    interval: DurationField | None = Field(
        default=None, description="Time between probes; defaults to global.healthChecks.interval."
    )
    timeout: ProbeTimeout | None = Field(
        default=None,
        description="Probe timeout, shorter than interval; defaults to global.healthChecks.timeout.",
    )
    unhealthy_threshold: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Failures in a row before an upstream is taken out; defaults to global.healthChecks.",
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


class RouteSpec(SpecModel):
    domain: Domain = Field(description="Host this route answers for; unique across routes.")
    upstreams: list[Upstream] = Field(min_length=1, max_length=100, description="Backends, at least one.")
    auth_policy: ResourceName | None = Field(default=None, description="Name of an AuthPolicy that guards this route.")
    tls: RouteTls = Field(default_factory=RouteTls, description="TLS behaviour of the domain.")
    health_check: RouteHealthCheck | None = Field(default=None, description="Active health checks.")
    headers: RouteHeaders = Field(default_factory=RouteHeaders, description="Header rules.")
    middleware: list[Middleware] = Field(
        default_factory=list, description="Middleware applied in order: rate-limit, compression, request-id."
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

AuthentikAttribute = Literal["username", "groups", "email", "name", "uid", "entitlements"]


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
    mfa: bool = Field(default=False, description="Require the Authentik flow to enforce MFA.")
    session_duration: DurationField | None = Field(
        default=None, description="How long an authenticated session lasts, e.g. 8h."
    )


class AuthMetadata(SpecModel):
    required: list[AuthentikAttribute] = Field(
        default_factory=list,
        description="User attributes the outpost must return (as X-Authentik-* headers) for access.",
    )


def _only_authentik(value: object) -> object:
    if isinstance(value, str) and value != "authentik":
        raise PydanticCustomError(
            "hecate",
            f"provider {value!r} is not supported; 'authentik' is the only provider for now "
            "(forward auth to its outpost)",
        )
    return value


class AuthPolicySpec(SpecModel):
    provider: Annotated[Literal["authentik"], BeforeValidator(_only_authentik)] = Field(
        description="Identity provider. Only 'authentik' is supported for now (forward auth to its outpost)."
    )
    flow: ResourceName = Field(description="Slug of the Authentik authentication flow.")
    requirements: AuthRequirements = Field(
        default_factory=AuthRequirements, description="What a user needs to get through."
    )
    metadata: AuthMetadata = Field(default_factory=AuthMetadata, description="User attributes the outpost must supply.")
    allowed_methods: list[HttpMethod] = Field(
        default_factory=list, description="HTTP methods allowed through; empty means all."
    )


class AuthPolicyDocument(SpecModel):
    api_version: Literal["hecate.io/v1"] = Field(description="Always hecate.io/v1.")
    kind: Literal["AuthPolicy"] = Field(description="AuthPolicy: who may reach the routes that name it.")
    metadata: Metadata = Field(description="Name and labels.")
    spec: AuthPolicySpec = Field(description="The policy.")


# --- Stream -------------------------------------------------------------------------


class StreamUpstream(SpecModel):
    server: StreamServer
    weight: int = Field(default=1, ge=1, le=100, description="Relative share of connections, 1-100.")
    max_fails: int = Field(default=1, ge=0, le=100, description="Failed attempts before the server is marked down.")
    fail_timeout: DurationField = Field(
        default=Duration(10_000), description="Window for max_fails and how long a failed server rests."
    )
    backup: bool = Field(default=False, description="Only used when every non-backup server is down.")


class StreamListen(SpecModel):
    address: ListenAddress = Field(default="0.0.0.0", description="Address to listen on.")
    port: Port | None = Field(default=None, description="Port to listen on; omitted with a preset.")


class StreamHealthCheck(SpecModel):
    interval: DurationField = Field(default=Duration(10_000), description="Time between agent-side probes.")
    timeout: ProbeTimeout = Field(
        default=Duration(2_000), validate_default=True, description="Probe timeout, shorter than interval."
    )
    unhealthy_threshold: int = Field(default=3, ge=1, le=100, description="Failures in a row before unhealthy.")


class StreamSpec(SpecModel):
    protocol: Literal["tcp", "udp"] = Field(default="tcp", description="tcp or udp.")
    preset: Literal["mailcow", "jenkins", "wazuh"] | None = Field(
        default=None, description="Open the ports of a known service: mailcow, jenkins or wazuh (all TCP)."
    )
    listen: StreamListen = Field(default_factory=StreamListen, description="Where this node listens.")
    upstreams: list[StreamUpstream] = Field(
        min_length=1, max_length=100, description="Backends; at least one that is not a backup."
    )
    health_check: StreamHealthCheck | None = Field(default=None, description="Agent-side active checks.")

    @model_validator(mode="after")
    def _listen_and_upstreams_fit(self) -> StreamSpec:
        if self.preset is not None:
            if self.listen.port is not None:
                raise PydanticCustomError(
                    "hecate",
                    f"listen.port is set, but preset {self.preset!r} decides the ports "
                    f"({', '.join(map(str, PRESET_PORTS[self.preset]))}); remove listen.port",
                )
            if self.protocol != "tcp":
                raise PydanticCustomError("hecate", f"preset {self.preset!r} is TCP only; remove protocol: udp")
        elif self.listen.port is None:
            raise PydanticCustomError("hecate", "listen.port is required (or use a preset)")
        for upstream in self.upstreams:
            _check_stream_server(upstream.server, with_port=self.preset is None, preset=self.preset)
        if all(upstream.backup for upstream in self.upstreams):
            raise PydanticCustomError(
                "hecate", "every upstream is a backup; at least one must be a primary (backup: false)"
            )
        return self

    def listeners(self) -> list[tuple[str, int, str]]:
        """Every (address, port, protocol) this stream listens on."""
        ports = PRESET_PORTS[self.preset] if self.preset else (self.listen.port or 0,)
        return [(self.listen.address, port, self.protocol) for port in ports]


def _check_stream_server(server: str, *, with_port: bool, preset: str | None) -> None:
    """The field checked the syntax; here, whether a port must or must not be given."""
    try:
        host, port = parse_server(server, with_port=with_port)
    except AddressError as exc:
        raise PydanticCustomError("hecate", f"upstream {server!r}: {exc}") from None
    if not with_port and port is not None:
        raise PydanticCustomError(
            "hecate",
            f"upstream {server!r}: with preset {preset!r} give the host only ({host!r}); "
            f"each preset port is forwarded to the same port on it",
        )


class StreamDocument(SpecModel):
    api_version: Literal["hecate.io/v1"] = Field(description="Always hecate.io/v1.")
    kind: Literal["Stream"] = Field(description="Stream: a TCP or UDP listener proxied by Nginx.")
    metadata: Metadata = Field(description="Name and labels.")
    spec: StreamSpec = Field(description="What the stream does.")


# --- global config -------------------------------------------------------------------


class DnsSettings(SpecModel):
    resolvers: list[Templated] = Field(
        default_factory=list, description="DNS resolvers (IP or IP:port) used for upstream names and ACME."
    )


class CertificateSettings(SpecModel):
    provider: Literal["letsencrypt", "internal"] = Field(
        default="letsencrypt",
        description="letsencrypt: public ACME certificates. internal: Caddy's local CA (offline, for tests).",
    )
    email: Templated | None = Field(default=None, description="ACME account e-mail.")
    renewal_window: DurationField = Field(
        default=Duration(30 * 86_400_000), description="Renew certificates this long before they expire."
    )


class HealthCheckDefaults(SpecModel):
    interval: DurationField = Field(default=Duration(10_000), description="Time between probes.")
    timeout: ProbeTimeout = Field(
        default=Duration(2_000), validate_default=True, description="Probe timeout, shorter than interval."
    )
    unhealthy_threshold: int = Field(
        default=3, ge=1, le=100, description="Failures in a row before an upstream is taken out."
    )


class MonitoringSettings(SpecModel):
    metrics: bool = Field(default=True, description="Expose proxy metrics.")
    access_logs: bool = Field(default=False, description="Write proxy access logs.")


class SecuritySettings(SpecModel):
    tls_min_version: TlsVersion = Field(default="1.2", description="Default minimum TLS version.")
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        description="Response headers set on every route unless the route overrides them (in any spelling: "
        "header names are case-insensitive).",
    )

    @model_validator(mode="after")
    def _one_spelling_per_header(self) -> SecuritySettings:
        check_header_rules(type(self).__name__, self.headers, set_field="headers")
        return self


class AuthentikSettings(SpecModel):
    outpost_url: UrlOrReference = Field(
        description="Base URL of the Authentik outpost that answers forward-auth requests, "
        "e.g. http://authentik-outpost:9000.",
    )


class GlobalConfig(SpecModel):
    dns: DnsSettings = Field(default_factory=DnsSettings, description="Name resolution.")
    certificates: CertificateSettings = Field(
        default_factory=CertificateSettings, description="Where TLS certificates come from."
    )
    health_checks: HealthCheckDefaults = Field(
        default_factory=HealthCheckDefaults, description="Defaults for every route's health check."
    )
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings, description="Metrics and logs.")
    security: SecuritySettings = Field(
        default_factory=SecuritySettings, description="TLS floor and default response headers."
    )
    authentik: AuthentikSettings | None = Field(default=None, description="Required when a route uses an AuthPolicy.")


class ConfigDocument(SpecModel):
    """The root `config.yaml`."""

    global_: GlobalConfig = Field(
        alias="global", default_factory=GlobalConfig, description="Settings for every node and route."
    )


SpecDocument = RouteDocument | AuthPolicyDocument | StreamDocument
DOCUMENT_MODELS: dict[str, type[RouteDocument] | type[AuthPolicyDocument] | type[StreamDocument]] = {
    "Route": RouteDocument,
    "AuthPolicy": AuthPolicyDocument,
    "Stream": StreamDocument,
}
