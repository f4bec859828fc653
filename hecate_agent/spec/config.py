"""The root `config.yaml` (`global:`) as pydantic models: settings for every node and route.

Split from models.py (which holds the three document kinds); the same rules
apply: camelCase in YAML, strict, unknown fields refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from hecate_agent.spec.base import ProbeInterval, ProbeTimeout, SpecModel
from hecate_agent.spec.headers import check_header_rules
from hecate_agent.spec.templates import SecretReference, Templated, UrlOrReference
from hecate_agent.spec.types import (
    Duration,
    DurationField,
    HeaderName,
    HeaderValue,
    HttpPath,
    PlainText,
    Port,
    TlsVersion,
)


def _only_hetzner(value: object) -> object:
    if isinstance(value, str) and value != "hetzner":
        raise PydanticCustomError(
            "hecate", f"DNS provider {value!r} is not supported; 'hetzner' is the only provider for now"
        )
    return value


def _present(key: str) -> dict[str, Any]:
    """JSON Schema: `key` is present and not null (what `is not None` means to the model)."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


# `_token_with_provider`, said in JSON Schema so editors refuse what the agent refuses.
_DNS_RULES: dict[str, Any] = {
    "allOf": [
        {"if": _present("provider"), "then": _present("apiToken")},
        {"if": {"anyOf": [_present("apiToken"), {"required": ["defaultTTL"]}]}, "then": _present("provider")},
    ]
}


class DnsRecordTarget(SpecModel):
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["addresses"]}, {"required": ["cname"]}]})

    addresses: list[Annotated[str, Field(pattern=r"^[0-9A-Fa-f.:]+$")]] | None = Field(
        default=None,
        description="The load balancer's IPv4/IPv6 addresses: each route's domain gets A and AAAA records.",
    )
    cname: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")] | None = Field(
        default=None, description="A host name every route's domain points to with a CNAME record."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DnsRecordTarget:
        if (self.addresses is None) == (self.cname is None):
            raise PydanticCustomError("hecate", "set exactly one of addresses and cname")
        return self


class DnsSettings(SpecModel):
    model_config = ConfigDict(json_schema_extra=_DNS_RULES)

    provider: Annotated[Literal["hetzner"], BeforeValidator(_only_hetzner)] | None = Field(
        default=None,
        description="DNS provider whose records point each route's domain at the nodes: hetzner. Record management "
        "needs DNS provisioning on the node (agent.yaml dns.provisioning).",
    )
    api_token: SecretReference | None = Field(
        default=None, description="The provider's API token, as a ${ENV_VAR} or ${vault:path#key} reference."
    )
    default_ttl: int = Field(
        default=300, ge=30, le=86_400, alias="defaultTTL", description="TTL of the records, in seconds (30-86400)."
    )
    target: DnsRecordTarget | None = Field(
        default=None,
        description="Where each route's domain points: the balancer's addresses or a CNAME host. With a provider "
        "and a target, the agent keeps a record per route domain (agent.yaml dns.provisioning: agent).",
    )
    policy: Literal["upsert-only", "sync"] = Field(
        default="upsert-only",
        description="upsert-only: records of removed routes are kept; sync: they are deleted (after the route).",
    )
    adopt: bool = Field(
        default=False,
        description="Take over an existing record of the same name and type that the agent did not create.",
    )
    resolvers: list[Templated] = Field(
        default_factory=list,
        description="DNS resolvers (IP or IP:port) Caddy uses to look up upstream host names; Nginx resolves stream "
        "upstreams with the system resolver when it loads its config.",
    )

    @model_validator(mode="after")
    def _token_with_provider(self) -> DnsSettings:
        if self.provider is not None and self.api_token is None:
            raise PydanticCustomError(
                "hecate", f"provider {self.provider!r} needs apiToken, e.g. apiToken: ${{HETZNER_API_TOKEN}}"
            )
        if self.provider is None and (self.api_token is not None or "default_ttl" in self.model_fields_set):
            # Without a provider they would change nothing: refused rather than silently ignored.
            raise PydanticCustomError("hecate", "apiToken and defaultTTL need a provider; add provider: hetzner")
        return self


# Caddy storage modules for each `certificates.storage` value (file is built in).
STORAGE_MODULES = {"file": "file_system", "vault": "vault", "consul": "consul", "redis": "redis"}


class CertificateSettings(SpecModel):
    provider: Literal["letsencrypt", "internal"] = Field(
        default="letsencrypt",
        description="letsencrypt: public ACME certificates. internal: Caddy's local CA (offline, for tests).",
    )
    email: Templated | None = Field(default=None, description="ACME account e-mail.")
    storage: Literal["file", "vault", "consul", "redis"] = Field(
        default="file",
        description="Where Caddy keeps certificates: file (the node's disk), or vault, consul, redis (shared "
        "between nodes; each needs the matching Caddy storage plugin, caddy.storage.<name>).",
    )
    renewal_window: DurationField = Field(
        default=Duration(30 * 86_400_000), description="Renew certificates this long before they expire."
    )


class HealthCheckDefault(SpecModel):
    path: HttpPath | None = Field(
        default=None,
        description="With a path, every route without its own healthCheck is probed there (active health check).",
    )
    interval: ProbeInterval | None = Field(default=None, description="Time between probes, at most 1d (default 10s).")
    timeout: ProbeTimeout | None = Field(default=None, description="Probe timeout, shorter than interval (default 2s).")
    unhealthy_threshold: int | None = Field(
        default=None, ge=1, le=100, description="Failures in a row before an upstream is taken out (default 3)."
    )


@dataclass(frozen=True)
class EffectiveHealthDefaults:
    path: str | None
    interval: Duration
    timeout: Duration
    unhealthy_threshold: int


class HealthCheckDefaults(SpecModel):
    default: HealthCheckDefault = Field(
        default_factory=HealthCheckDefault,
        description="The health check of every route that has none of its own, and the values a route's own "
        "check leaves out.",
    )
    interval: ProbeInterval | None = Field(
        default=None,
        description="Deprecated: write healthChecks.default.interval.",
        json_schema_extra={"deprecated": True},
    )
    timeout: ProbeTimeout | None = Field(
        default=None,
        description="Deprecated: write healthChecks.default.timeout.",
        json_schema_extra={"deprecated": True},
    )
    unhealthy_threshold: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Deprecated: write healthChecks.default.unhealthyThreshold.",
        json_schema_extra={"deprecated": True},
    )

    @model_validator(mode="after")
    def _one_spelling(self) -> HealthCheckDefaults:
        for name in ("interval", "timeout", "unhealthy_threshold"):
            if getattr(self, name) is not None and getattr(self.default, name) is not None:
                camel = to_camel(name)
                raise PydanticCustomError(
                    "hecate",
                    f"both {camel} and default.{camel} are set; keep default.{camel} (the other is deprecated)",
                )
        effective = self.effective
        if effective.timeout >= effective.interval:
            raise PydanticCustomError(
                "hecate",
                f"timeout ({effective.timeout}) must be shorter than interval ({effective.interval}); "
                "a probe must finish before the next one starts",
            )
        return self

    @property
    def effective(self) -> EffectiveHealthDefaults:
        """The defaults with the deprecated top-level spelling and the built-in values filled in."""
        d = self.default
        return EffectiveHealthDefaults(
            path=d.path,
            interval=d.interval or self.interval or Duration(10_000),
            timeout=d.timeout or self.timeout or Duration(2_000),
            unhealthy_threshold=d.unhealthy_threshold or self.unhealthy_threshold or 3,
        )


class PrometheusSettings(SpecModel):
    enabled: bool = Field(default=False, description="Turn on Caddy's request metrics and serve them on `port`.")
    port: Port = Field(default=9090, description="Port of the listener serving /metrics (on every address).")


class TracingSettings(SpecModel):
    enabled: bool = Field(
        default=False, description="Trace every request (Caddy's tracing handler, module http.handlers.tracing)."
    )
    endpoint: PlainText | None = Field(
        default=None,
        description="OTLP/gRPC endpoint, e.g. http://jaeger:4317. Caddy reads it from its own environment "
        "(OTEL_EXPORTER_OTLP_ENDPOINT); the agent checks that the running Caddy has it.",
    )

    @model_validator(mode="after")
    def _endpoint_when_enabled(self) -> TracingSettings:
        if self.enabled and not self.endpoint:
            raise PydanticCustomError("hecate", "tracing is enabled but has no endpoint, e.g. endpoint: jaeger:4317")
        return self


class MonitoringSettings(SpecModel):
    prometheus: PrometheusSettings = Field(
        default_factory=PrometheusSettings, description="Request metrics in Prometheus format."
    )
    tracing: TracingSettings = Field(
        default_factory=TracingSettings, description="Distributed tracing (OpenTelemetry)."
    )
    access_logs: bool = Field(default=False, description="Write proxy access logs.")
    metrics: bool | None = Field(
        default=None,
        description="Deprecated: write prometheus.enabled. true turns Caddy's request metrics on (served by "
        "Caddy's admin endpoint /metrics) without a listener of their own.",
        json_schema_extra={"deprecated": True},
    )

    @property
    def request_metrics(self) -> bool:
        return self.prometheus.enabled or bool(self.metrics)


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
        "e.g. http://authentik-outpost:9000. Without it, each node's agent.yaml authentik.outpostUrl is used.",
    )


class GlobalConfig(SpecModel):
    dns: DnsSettings = Field(default_factory=DnsSettings, description="Name resolution.")
    certificates: CertificateSettings = Field(
        default_factory=CertificateSettings, description="Where TLS certificates come from."
    )
    health_checks: HealthCheckDefaults = Field(
        default_factory=HealthCheckDefaults, description="The default health check of every route."
    )
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings, description="Metrics, tracing, logs.")
    security: SecuritySettings = Field(
        default_factory=SecuritySettings, description="TLS floor and default response headers."
    )
    authentik: AuthentikSettings | None = Field(
        default=None,
        description="The Authentik outpost for every node; a node without it uses its agent.yaml authentik.outpostUrl.",
    )


class ConfigDocument(SpecModel):
    """The root `config.yaml`."""

    global_: GlobalConfig = Field(
        alias="global", default_factory=GlobalConfig, description="Settings for every node and route."
    )
