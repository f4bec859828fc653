"""The agent's own settings: `/etc/hecate-agent/agent.yaml`, overridable key by key from the environment.

Path: `--config`, else `HECATE_AGENT_CONFIG`, else `/etc/hecate-agent/agent.yaml`
(a missing default file means built-in defaults). Every key can be set as
`HECATE_AGENT_<KEY>`, nested keys joined by `__`, in either spelling:
`HECATE_AGENT_CADDY__ADMIN_URL` or `HECATE_AGENT_CADDY__ADMINURL` both set
`caddy.adminUrl`. Environment values are read as YAML scalars or flow
collections, so `HECATE_AGENT_NGINX__TEST_COMMAND='[nginx, -t]'` is a list.
Bad settings are reported like bad specs: file:line:col, field, what to do.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from hecate_agent.errors import HecateError, SpecProblem
from hecate_agent.spec.messages import friendly_message, model_inside
from hecate_agent.spec.types import Duration, DurationField
from hecate_agent.spec.yamlio import format_field, parse_yaml

DEFAULT_PATH = Path("/etc/hecate-agent/agent.yaml")
ENV_PREFIX = "HECATE_AGENT_"


class SettingsError(HecateError):
    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{p.file}:{p.line}:{p.column}: {p.field}: {p.message}" for p in problems))


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class NodeSettings(_Settings):
    name: str = Field(default_factory=socket.gethostname, description="Node name; default: the host name.")
    labels: dict[str, str] = Field(default_factory=dict)


class GitVerifySettings(_Settings):
    allowed_signers_file: Path | None = None


class GitSourceSettings(_Settings):
    url: str
    branch: str = "main"
    path: str = "."
    interval: DurationField = Duration(30_000)
    ssh_key_file: Path | None = None
    token_file: Path | None = None
    allow_force_push: bool = False
    verify: GitVerifySettings = Field(default_factory=GitVerifySettings)


class SourceSettings(_Settings):
    git: GitSourceSettings | None = None
    directory: Path | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> SourceSettings:
        if self.git is not None and self.directory is not None:
            raise ValueError("set exactly one of source.git and source.directory, not both")
        return self


class CaddyAgentSettings(_Settings):
    admin_url: str = Field(default="http://127.0.0.1:2019", pattern=r"^(https?://|unix:///)")
    server: str = Field(default="hecate", pattern=r"^[A-Za-z0-9_-]+$")
    http_listen: list[str] = Field(default_factory=lambda: [":80"])
    https_listen: list[str] = Field(default_factory=lambda: [":443"])
    binary: str = "caddy"


class NginxAgentSettings(_Settings):
    stream_dir: Path = Path("/etc/nginx/hecate-streams.d")
    test_command: list[str] = Field(default_factory=lambda: ["nginx", "-t"], min_length=1)
    reload_command: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"], min_length=1)
    dump_command: list[str] = Field(default_factory=lambda: ["nginx", "-T"], min_length=1)
    pid_file: Path = Path("/run/nginx.pid")
    error_log: Path | None = Path("/var/log/nginx/error.log")
    enabled: bool = Field(default=True, description="False on nodes without Nginx: streams are then refused.")
    # Every reload starts new workers and leaves the old ones draining their connections.
    min_reload_interval: DurationField = Duration(5_000)


class HttpSettings(_Settings):
    listen: str = "127.0.0.1:9469"
    webhook_secret_file: Path | None = None


class SyncSettings(_Settings):
    drift_interval: DurationField = Duration(60_000)
    # reject: an invalid revision changes nothing. quarantine: apply the valid files and keep the
    # last good version of each invalid one, so one broken file does not hold back every team.
    invalid_policy: Literal["reject", "quarantine"] = "reject"
    self_heal: bool = True
    max_delete_percent: int = Field(default=50, ge=0, le=100)
    history_limit: int = Field(default=10, ge=1, le=1000)
    wait_for_dns: bool | None = Field(
        default=None,
        alias="waitForDNS",
        description="Wait until every authoritative name server answers with a new record before the route is "
        "applied; default: on when certificates come from Let's Encrypt.",
    )
    dns_timeout: DurationField = Field(
        default=Duration(300_000), alias="dnsTimeout", description="Give up waiting for DNS after this (rolled back)."
    )


class ConsulSettings(_Settings):
    address: str = Field(default="http://127.0.0.1:8500", pattern=r"^(https?://)?[A-Za-z0-9.\[\]:_-]+$")
    token_file: Path | None = Field(default=None, description="ACL token, read from this file.")
    prefix: str = Field(default="hecate", pattern=r"^[A-Za-z0-9_./-]+$")
    session_ttl: DurationField = Field(default=Duration(30_000), description="A dead node's entry goes after this.")


class AppRoleSettings(_Settings):
    role_id_file: Path = Field(description="File holding the AppRole role_id.")
    secret_id_file: Path = Field(description="File holding the AppRole secret_id.")
    mount: str = Field(default="approle", pattern=r"^[A-Za-z0-9_./-]+$")


class VaultSettings(_Settings):
    address: str = Field(pattern=r"^https?://[^\s]+$", description="Vault's URL, e.g. https://vault.example.com:8200.")
    token_file: Path | None = Field(default=None, description="A Vault token, read from this file.")
    approle: AppRoleSettings | None = Field(default=None, description="Log in with AppRole instead of a token file.")
    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_./-]+$", description="The KV v2 mount.")
    ca_cert: Path | None = Field(default=None, description="CA bundle for Vault's TLS certificate.")
    timeout: DurationField = Duration(5_000)
    # A secret rotated in Vault reaches the proxies within this time, without a new commit.
    refresh_interval: DurationField = Duration(300_000)

    @model_validator(mode="after")
    def _one_login(self) -> VaultSettings:
        if (self.token_file is None) == (self.approle is None):
            raise ValueError("set exactly one of vault.tokenFile and vault.approle")
        return self


class RolloutSettings(_Settings):
    max_concurrent: int = Field(default=1, ge=1, le=1000, description="Nodes applying one revision at a time.")
    # How long a node keeps its slot after apply and verification, so a bad revision shows
    # itself on the first nodes before the rest take it.
    soak: DurationField = Duration(0)
    wait_timeout: DurationField = Field(
        default=Duration(600_000), description="Give up waiting for a slot after this (retried later)."
    )


class AuthentikNodeSettings(_Settings):
    provisioning: Literal["agent", "external", "none"] = Field(
        default="none",
        description="Who configures Authentik to enforce what the proxy cannot (MFA, flow, session length, sign-in "
        "methods, attributes not sent as headers): agent = the agent, through Authentik's API (needs url and "
        "tokenFile); external = you do, by hand, and declare it here; none = nobody, so plans using those fields "
        "stop.",
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Authentik's base URL (the API is under /api/v3/), for provisioning: agent.",
    )
    token_file: Path | None = Field(
        default=None, description="File holding an Authentik API token (never shown), for provisioning: agent."
    )
    token: str | None = Field(
        default=None,
        pattern=r"^\$\{vault:[^}#]+#[^}]+\}$",
        description="Instead of tokenFile: the token in Vault, as a reference ${vault:path#key} (needs the vault "
        "section); read when Authentik is first used.",
    )
    outpost: str | None = Field(
        default=None,
        description="The outpost the providers are added to: its name; default the embedded outpost.",
    )
    manage: bool = Field(
        default=False,
        description="Without Consul: this node writes to Authentik for the fleet (set it on exactly one node; the "
        "others plan read-only). With Consul the holder of <prefix>/leaders/authentik writes instead.",
    )
    follower_wait: DurationField = Field(
        default=Duration(60_000),
        description="A node that does not write to Authentik waits this long for the leader to provision what its "
        "routes need before the reconcile fails (it is retried).",
    )
    timeout: DurationField = Field(default=Duration(10_000), description="Per request to Authentik's API.")
    outpost_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s{}$]+$",
        description="The Authentik outpost for forward auth on this node, used when config.yaml sets no "
        "global.authentik.outpostUrl.",
    )

    @model_validator(mode="after")
    def _agent_needs_api(self) -> AuthentikNodeSettings:
        if self.provisioning == "agent" and (self.url is None or (self.token_file is None) == (self.token is None)):
            raise ValueError(
                "authentik.provisioning: agent needs authentik.url and exactly one of authentik.tokenFile and "
                "authentik.token (a ${vault:path#key} reference)"
            )
        return self


class DnsNodeSettings(_Settings):
    provisioning: Literal["agent", "external", "none"] = Field(
        default="none",
        description="Who keeps the DNS records of the routes when config.yaml sets global.dns.provider: agent = the "
        "agent (global.dns.target says where they point); external = you do; none = nobody, so such plans stop.",
    )
    api_endpoint: str = Field(
        default="https://api.hetzner.cloud/v1",
        pattern=r"^https?://[^\s]+$",
        description="The DNS provider's API (Hetzner Cloud API by default; tests point it elsewhere).",
    )
    public_addresses: list[str] = Field(
        default_factory=list,
        description="This node's own addresses for the records, on a node not behind a balancer (instead of "
        "global.dns.target).",
    )
    manage: bool = Field(
        default=False,
        description="Without Consul: true = this node writes the fleet's DNS records; false = it only checks them. "
        "With Consul the holder of <prefix>/leaders/dns writes.",
    )
    owner: str = Field(
        default="hecate",
        pattern=r"^[a-zA-Z0-9]([-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$",
        description="The fleet's owner id, put on every record the agent creates (label hecate-owner); the same on "
        "every node of one fleet, different between fleets sharing a zone.",
    )
    nameservers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per zone, the authoritative servers (host[:port]) to wait on instead of the provider's list.",
    )


class AgentSettings(_Settings):
    node: NodeSettings = Field(default_factory=NodeSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    caddy: CaddyAgentSettings = Field(default_factory=CaddyAgentSettings)
    nginx: NginxAgentSettings = Field(default_factory=NginxAgentSettings)
    state_dir: Path = Path("/var/lib/hecate-agent")
    http: HttpSettings = Field(default_factory=HttpSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    consul: ConsulSettings | None = None
    vault: VaultSettings | None = None
    rollout: RolloutSettings | None = None
    authentik: AuthentikNodeSettings | None = None
    dns: DnsNodeSettings | None = None

    @model_validator(mode="after")
    def _vault_reference_needs_vault(self) -> AgentSettings:
        if self.authentik is not None and self.authentik.token is not None and self.vault is None:
            raise ValueError("authentik.token is a Vault reference: set the vault section, or use authentik.tokenFile")
        return self

    @model_validator(mode="after")
    def _rollout_needs_consul(self) -> AgentSettings:
        if self.rollout is not None and self.consul is None:
            raise ValueError(
                "rollout coordination keeps its semaphore in Consul: set consul.address, or remove rollout"
            )
        return self


def _canonical(name: str) -> str:
    return name.replace("_", "").lower()


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """Merge HECATE_AGENT_* variables into `data`; returns (variable, path) pairs for error reporting."""
    applied = []
    for variable, raw in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable == "HECATE_AGENT_CONFIG":
            continue
        parts = variable[len(ENV_PREFIX) :].split("__")
        node: Any = AgentSettings
        path: list[str] = []
        target = data
        for index, part in enumerate(parts):
            fields = getattr(node, "model_fields", {}) if isinstance(node, type) else {}
            match = next(
                ((n, f) for n, f in fields.items() if _canonical(f.alias or n) == _canonical(part)),
                None,
            )
            key = (match[1].alias or match[0]) if match else _camel_from_env(part)
            path.append(key)
            if index == len(parts) - 1:
                parsed = parse_yaml(variable, raw.encode())
                value = parsed.documents[0].value if parsed.documents and not parsed.problems else raw
                target[key] = value
            else:
                target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
                node = model_inside(match[1].annotation) if match else None
        applied.append((variable, tuple(path)))
    return applied


def _camel_from_env(part: str) -> str:
    words = part.lower().split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Read agent.yaml (if any) and the environment; raise SettingsError listing every problem."""
    environ = os.environ if environ is None else environ
    explicit = path or (Path(environ["HECATE_AGENT_CONFIG"]) if environ.get("HECATE_AGENT_CONFIG") else None)
    file = explicit or DEFAULT_PATH
    data: dict[str, Any] = {}
    document = None
    if file.exists():
        parsed = parse_yaml(str(file), file.read_bytes(), with_positions=True)
        if parsed.problems:
            raise SettingsError(parsed.problems)
        document = parsed.documents[0] if parsed.documents else None
        if document is not None and document.value is not None:
            if not isinstance(document.value, dict):
                raise SettingsError([SpecProblem(str(file), 1, 1, "agent.yaml must be a mapping of settings")])
            data = document.value
    elif explicit is not None:
        raise SettingsError(
            [SpecProblem(str(file), 0, 0, "settings file not found; check --config / HECATE_AGENT_CONFIG")]
        )
    from_env = _apply_env(data, environ)
    try:
        return AgentSettings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if isinstance(p, str | int))
            variable = next((v for v, p in from_env if loc[: len(p)] == p), None)
            if variable is not None:
                problems.append(SpecProblem(f"${variable}", 0, 0, friendly_message(error), field=format_field(loc)))
                continue
            line, column = document.position_of(loc, key=error["type"] == "extra_forbidden") if document else (0, 0)
            problems.append(SpecProblem(str(file), line, column, friendly_message(error), field=format_field(loc)))
        raise SettingsError(problems) from None
