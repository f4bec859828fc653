"""Fail closed: what this node must be configured for before it applies a revision. Pure.

A spec field the proxies cannot enforce (spec/requirements.py) stops `plan` and
`apply` with a message naming the resource, the field and what to configure,
unless agent.yaml declares who provisions it (`authentik.provisioning`: agent or
external, `dns.provisioning`: external). Declared fields pass and show in the plan's
notes as enforced outside the agent. Tracing needs the exporter endpoint in
Caddy's own environment; the agent compares it with the spec and says how to set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hecate_agent.dns.certificates import balancer_storage_warnings
from hecate_agent.settings import AuthentikNodeSettings, DnsNodeSettings
from hecate_agent.spec.loader import DesiredState
from hecate_agent.spec.requirements import config_requirements, policy_requirements

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True)
class Verdict:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def node_verdict(state: DesiredState, authentik: AuthentikNodeSettings | None, dns: DnsNodeSettings | None) -> Verdict:
    errors: list[str] = []
    notes: list[str] = []
    provisioning = authentik.provisioning if authentik is not None else "none"
    for policy in state.auth_policies:
        needs = policy_requirements(policy.doc.spec)
        if not needs:
            continue
        subject = f"AuthPolicy/{policy.name}"
        if provisioning in ("external", "agent"):
            shown = ", ".join(r.describe() for r in needs)
            by = "by Authentik, provisioned by the agent" if provisioning == "agent" else "outside the agent"
            notes.append(f"{subject}: {shown} enforced {by} (authentik.provisioning: {provisioning})")
            continue
        why = "agent.yaml configures no Authentik provisioning"
        errors.extend(
            f"{subject}: {r.describe()} cannot be enforced on this node: the proxy cannot check it and {why}. "
            "Let the agent provision Authentik (`authentik: {provisioning: agent, url: ..., tokenFile: ...}` in "
            "agent.yaml), or configure Authentik yourself and declare that with "
            f"`authentik: {{provisioning: external}}`, or remove {r.field} from the policy"
            for r in needs
        )
    dns_config = state.config.dns
    for requirement in config_requirements(state.config):
        if dns is not None and dns.provisioning == "agent":
            if dns_config.target is None and not dns.public_addresses:
                errors.append(
                    f"{requirement.describe()}: dns.provisioning: agent needs to know where the records point: set "
                    "global.dns.target (addresses: [...] of the balancer, or cname: host) in config.yaml, or "
                    "dns.publicAddresses in agent.yaml on a node not behind a balancer"
                )
            continue
        if dns is not None and dns.provisioning == "external":
            notes.append(
                f"{requirement.describe()}: DNS records are kept outside the agent (dns.provisioning: external)"
            )
            continue
        errors.append(
            f"{requirement.describe()}: DNS record management is not available yet on this node (agent.yaml does not "
            "say who keeps the records). Let the agent keep them with `dns: {provisioning: agent}` (and "
            "global.dns.target), or keep them yourself and declare that with `dns: {provisioning: external}`, or "
            "remove global.dns.provider"
        )
    notes.extend(storage_notes(state))
    return Verdict(errors, notes)


def storage_notes(state: DesiredState) -> list[str]:
    """Nodes behind one balancer (global.dns.target) with node-local certificate storage each order their own."""
    config = state.config
    if config.dns.target is None:
        return []
    return balancer_storage_warnings(config.certificates.storage, config.certificates.provider)


def otel_endpoint(endpoint: str) -> str:
    """The value Caddy's OpenTelemetry exporter needs: with a scheme (`http://` = without TLS)."""
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def tracing_verdict(state: DesiredState, caddy_environment: Mapping[str, str] | None, source: str) -> Verdict:
    """Compare the spec's tracing endpoint with the running Caddy's environment (None: unreadable)."""
    tracing = state.config.monitoring.tracing
    if not tracing.enabled or tracing.endpoint is None:
        return Verdict()
    wanted = otel_endpoint(tracing.endpoint)
    how = (
        "Caddy reads the exporter endpoint only from its environment: set it with a systemd drop-in and restart "
        "Caddy: `sudo systemctl edit caddy`, add the lines `[Service]` and "
        f"`Environment=OTEL_EXPORTER_OTLP_ENDPOINT={wanted}`, then `sudo systemctl restart caddy`"
    )
    if caddy_environment is None:
        return Verdict(
            notes=[f"global.monitoring.tracing: could not read the running Caddy's environment ({source}); {how}"]
        )
    name = next((n for n in OTEL_VARIABLES if n in caddy_environment), OTEL_VARIABLES[1])
    have = caddy_environment.get(name)
    if have == wanted:
        return Verdict()
    shown = f"{name}={_without_credentials(have)}" if have is not None else f"no {name}"
    return Verdict(
        errors=[f"global.monitoring.tracing.endpoint: the running Caddy ({source}) has {shown}, not {wanted}. {how}"]
    )


def _without_credentials(value: str) -> str:
    """Another process's variable is shown, but never a user:password@ it may carry."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}{sep}{host}" if "@" in rest else value
