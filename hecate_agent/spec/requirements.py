"""What a spec asks of the node beyond the proxies, and which old spellings it still uses. Pure.

Some fields cannot be enforced by Caddy or Nginx: MFA, the authentication flow,
the session length, the sign-in methods and attributes Authentik does not send
as headers are Authentik's to enforce; DNS records are the DNS provider's. A
node applies them only when its agent.yaml says who provisions them
(`authentik.provisioning`, `dns.provisioning`); otherwise plan and apply stop
(fail closed). `validate` runs without node settings, so there they are
warnings, as are deprecated spellings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hecate_agent.spec.config import GlobalConfig
from hecate_agent.spec.models import HEADER_ATTRIBUTES, AuthPolicySpec
from hecate_agent.spec.yamlio import Path

AUTHENTIK = "authentik"
DNS = "dns"


@dataclass(frozen=True)
class NodeRequirement:
    """One field that needs a provisioning the proxies cannot do."""

    needs: str  # AUTHENTIK | DNS
    path: Path  # inside the document as written (config.yaml paths start at "global")
    field: str  # how messages name it, e.g. requirements.mfa
    value: str  # what it asks for, e.g. required

    def describe(self) -> str:
        return f"{self.field} ({self.value})"


def policy_requirements(spec: AuthPolicySpec) -> list[NodeRequirement]:
    """The fields of an AuthPolicy only Authentik can enforce (groups and header attributes are the proxy's)."""
    found = []
    if spec.flow is not None:
        found.append(NodeRequirement(AUTHENTIK, ("spec", "flow"), "flow", spec.flow))
    if spec.requirements.mfa != "disabled":
        found.append(
            NodeRequirement(AUTHENTIK, ("spec", "requirements", "mfa"), "requirements.mfa", spec.requirements.mfa)
        )
    if spec.requirements.session_duration is not None:
        found.append(
            NodeRequirement(
                AUTHENTIK,
                ("spec", "requirements", "sessionDuration"),
                "requirements.sessionDuration",
                str(spec.requirements.session_duration),
            )
        )
    for index, attribute in enumerate(spec.metadata.required):
        if attribute not in HEADER_ATTRIBUTES:
            found.append(
                NodeRequirement(
                    AUTHENTIK, ("spec", "metadata", "required", index), "metadata.required", f"attribute {attribute}"
                )
            )
    if spec.allowed_methods:
        found.append(
            NodeRequirement(AUTHENTIK, ("spec", "allowedMethods"), "allowedMethods", ", ".join(spec.allowed_methods))
        )
    return found


def config_requirements(config: GlobalConfig) -> list[NodeRequirement]:
    if config.dns.provider is None:
        return []
    return [NodeRequirement(DNS, ("global", "dns", "provider"), "global.dns.provider", config.dns.provider)]


def requirement_warning(requirement: NodeRequirement) -> str:
    """What `validate` says: the field is fine, but a node must be configured for it."""
    if requirement.needs == DNS:
        return (
            f"{requirement.describe()}: the agent does not manage DNS records yet; a node applies this only when "
            "its agent.yaml declares dns: {provisioning: external} (you keep the records yourself); elsewhere "
            "plan and apply stop"
        )
    return (
        f"{requirement.describe()} is enforced by Authentik, not by the proxy: a node applies this policy only "
        "when its agent.yaml sets authentik.provisioning (external: you configure Authentik to enforce it); "
        "elsewhere plan and apply stop"
    )


# --- deprecated spellings ---------------------------------------------------------------


def deprecated_spellings(kind: str, raw: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """(path, message) for each old spelling a valid document still uses; `raw` is the YAML as read."""
    found: list[tuple[Path, str]] = []
    if kind == "AuthPolicy":
        mfa = _get(raw, ("spec", "requirements", "mfa"))
        if isinstance(mfa, bool):
            new = "required" if mfa else "disabled"
            found.append((("spec", "requirements", "mfa"), f"mfa: {str(mfa).lower()} is deprecated; write mfa: {new}"))
    elif kind == "Config":
        checks = _get(raw, ("global", "healthChecks"))
        if isinstance(checks, Mapping):
            for name in ("interval", "timeout", "unhealthyThreshold"):
                if name in checks:
                    found.append(
                        (
                            ("global", "healthChecks", name),
                            f"healthChecks.{name} is deprecated; move it to healthChecks.default.{name}",
                        )
                    )
        monitoring = _get(raw, ("global", "monitoring"))
        if isinstance(monitoring, Mapping) and "metrics" in monitoring:
            found.append(
                (
                    ("global", "monitoring", "metrics"),
                    "monitoring.metrics is deprecated; write monitoring.prometheus: {enabled: true, port: 9090} "
                    "(metrics: true only turns Caddy's request metrics on, served by Caddy's admin /metrics)",
                )
            )
    return found


def _get(value: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
