"""Secrets: `${NAME}` from the agent's environment, `${vault:<path>#<key>}` from Vault KV v2.

References are resolved just before rendering for this node, never earlier:
specs, plans and history hold the reference text, the proxies hold the value.
Every secret value (see `is_sensitive`) goes into `hecate_agent.redaction`
before anything can print it.

hvac is a blocking client without a renewal loop (shared/research/python-deps.md),
so `VaultClient` keeps its own: it renews the token at two thirds of its TTL
(on use and from the daemon's heartbeat), logs in again with AppRole (or
re-reads the token file, which vault-agent may have rotated) when renewal is
refused, and turns every transport failure into `SecretUnavailableError`, which
the daemon treats like an unreachable Git remote: keep serving the
last-known-good, report Degraded, retry with backoff.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hecate_agent import redaction
from hecate_agent.errors import HecateError
from hecate_agent.spec.addresses import AddressError, parse_http_url
from hecate_agent.spec.templates import header_references, template_references

if TYPE_CHECKING:
    from hecate_agent.settings import VaultSettings
    from hecate_agent.spec.loader import DesiredState

VAULT_PREFIX = "vault:"


class SecretError(HecateError):
    """A reference cannot be resolved (missing key, permission denied). Names the reference, never a value."""


class SecretUnavailableError(SecretError):
    """Vault cannot be reached or answers with a server error: try again later."""


@dataclass(frozen=True)
class Reference:
    name: str  # what stands inside ${…}: NAME or vault:path#key
    where: str  # the field that uses it, for messages

    @property
    def is_vault(self) -> bool:
        return self.name.startswith(VAULT_PREFIX)

    @property
    def vault_path(self) -> str:
        return self.name[len(VAULT_PREFIX) :].split("#", 1)[0]

    @property
    def vault_key(self) -> str:
        return self.name.split("#", 1)[1]


def references_of(state: DesiredState) -> list[Reference]:
    """Every reference the revision makes, in a stable order (pure)."""
    found: list[Reference] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str):
            found.extend(Reference(name, where) for name in template_references(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(state.config.model_dump(by_alias=True, mode="json"), "global")
    for located in state.routes:
        for header, value in located.doc.spec.headers.upstream.set.items():
            where = f"Route/{located.name}: headers.upstream.set.{header}"
            found.extend(Reference(name, where) for name in header_references(value))
    return found


class VaultClient:
    """A thin, typed wrapper of hvac: KV v2 reads with an authenticated, renewed token."""

    def __init__(self, settings: VaultSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        import hvac

        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        verify: bool | str = str(settings.ca_cert) if settings.ca_cert is not None else True
        self.client = hvac.Client(url=settings.address, timeout=settings.timeout.seconds, verify=verify)
        # hvac would otherwise pick up $VAULT_TOKEN or ~/.vault-token: only the configured login counts.
        self.client.token = None
        self.renew_at: float | None = None
        self.expires_at: float | None = None
        self.logins = 0
        self.renewals = 0

    @property
    def address(self) -> str:
        return self.settings.address

    # --- authentication ---------------------------------------------------------------------

    def _login(self) -> None:
        settings = self.settings
        if settings.approle is not None:
            role_id = _read_secret_file(settings.approle.role_id_file, "vault.approle.roleIdFile")
            secret_id = _read_secret_file(settings.approle.secret_id_file, "vault.approle.secretIdFile")
            redaction.register([role_id, secret_id])
            self.client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=settings.approle.mount)
        else:
            assert settings.token_file is not None  # the settings model requires one of the two
            token = _read_secret_file(settings.token_file, "vault.tokenFile")
            redaction.register([token])
            self.client.token = token
        self.logins += 1
        redaction.register([str(self.client.token or "")])
        self._schedule(self.client.auth.token.lookup_self()["data"])

    def _schedule(self, data: Mapping[str, Any]) -> None:
        ttl = int(data.get("ttl") or data.get("lease_duration") or 0)  # lookup-self / renew-self
        now = self.clock()
        if ttl <= 0:  # root and periodic-less tokens do not expire
            self.renew_at = self.expires_at = None
            return
        self.expires_at = now + ttl
        # Batch tokens cannot be renewed: log in again shortly before they expire instead.
        self.renew_at = now + ttl * 2 / 3

    def _renew(self) -> None:
        import hvac.exceptions as vault_errors

        try:
            answer = self.client.auth.token.renew_self()
            self.renewals += 1
            self._schedule(answer.get("auth") or {})
        except (vault_errors.Forbidden, vault_errors.InvalidRequest, vault_errors.Unauthorized):
            # Past its max TTL, revoked or a batch token: only a fresh login helps.
            self._login()

    def ensure_token(self) -> None:
        """Log in if needed and renew the token once two thirds of its TTL have passed."""
        with self.lock, self._translated("authenticating to Vault"):
            if not self.client.token:
                self._login()
            elif self.renew_at is not None and self.clock() >= self.renew_at:
                if self.expires_at is not None and self.clock() >= self.expires_at:
                    self._login()  # renewing an expired token cannot work
                else:
                    self._renew()

    # --- reads ------------------------------------------------------------------------------

    def read(self, path: str) -> Mapping[str, Any]:
        """The current version of the KV v2 secret at `path` (mount-relative)."""
        import hvac.exceptions as vault_errors

        self.ensure_token()
        with self.lock, self._translated(f"reading ${{vault:{path}#…}}"):
            try:
                answer = self.client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.settings.mount, raise_on_deleted_version=True
                )
            except vault_errors.Forbidden:
                self._login()  # the token may have been revoked behind our back: one fresh try
                answer = self.client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.settings.mount, raise_on_deleted_version=True
                )
        data = ((answer or {}).get("data") or {}).get("data")
        if not isinstance(data, dict):
            raise SecretError(f"Vault returned no data for the secret '{path}' (mount '{self.settings.mount}')")
        return data

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Map hvac's and requests' exceptions to ours, with messages that hold no values."""
        import hvac.exceptions as vault_errors
        import requests

        where = f"Vault at {self.address}"
        try:
            yield
        except SecretError:
            raise
        except vault_errors.InvalidPath:
            raise SecretError(
                f"{doing}: the secret does not exist in {where} (mount '{self.settings.mount}'); "
                "create it, or fix the path in the spec"
            ) from None
        except (vault_errors.Forbidden, vault_errors.Unauthorized):
            raise SecretError(
                f"{doing}: permission denied by {where}; grant the agent's policy 'read' on the path"
            ) from None
        except (vault_errors.VaultError, requests.RequestException, OSError) as exc:
            raise SecretUnavailableError(
                f"{doing}: {where} is unavailable ({type(exc).__name__}); the last-known-good keeps serving"
            ) from None


def _read_secret_file(path: Path, field: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    if not value:
        raise SecretError(f"{field}: {path} is empty")
    return value


# Environment variables whose values are secret by their name alone: a word of the name (split at
# '_') is one of these, or ends in one (APIKEY, DBPASSWORD). AUTHENTIK_OUTPOST_URL is not a secret.
SECRET_WORDS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "KEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "PRIVATE",
    "CERT",
    "COOKIE",
    "SESSION",
    "SIGNATURE",
    "SALT",
    "DSN",
)


def secret_name(name: str) -> bool:
    return any(word.endswith(SECRET_WORDS) for word in name.upper().replace("-", "_").split("_"))


UPSTREAM_HEADER = "headers.upstream.set."
# Upstream headers that carry credentials by their name, beyond SECRET_WORDS (X-Api-Key, X-Auth-Token).
CREDENTIAL_HEADERS = frozenset({"AUTHORIZATION", "PROXY-AUTHORIZATION", "X-API-KEY", "X-AMZ-SECURITY-TOKEN"})


def secret_header(header: str) -> bool:
    return header.upper() in CREDENTIAL_HEADERS or secret_name(header)


def is_sensitive(reference: Reference) -> bool:
    """What is secret, and only that (redacting identifiers hid a node's name in the fleet table):

    - every Vault value;
    - an environment variable named like a secret (DB_PASSWORD, GITHUB_TOKEN);
    - the DNS provider's API token (`global.dns.apiToken`), whatever its variable is called;
    - an environment variable sent to a backend in a credential header (`Authorization`,
      `X-Api-Key`, any header named like a secret).

    A plain variable in any other header (`X-Node: ${NODE_NAME}`), an outpost URL, DNS resolvers or
    an ACME e-mail address stays visible, so plans remain readable and `render` output loads. A
    literal header value is never a secret: it is committed to Git for everyone to read."""
    if reference.is_vault or secret_name(reference.name) or reference.where == "global.dns.apiToken":
        return True
    header = reference.where.rpartition(UPSTREAM_HEADER)[2] if UPSTREAM_HEADER in reference.where else ""
    return bool(header) and secret_header(header)


@dataclass(frozen=True)
class Resolution:
    values: dict[str, str]  # reference name -> value, for the renderer
    sensitive: frozenset[str]  # the values that must never be shown


class SecretResolver:
    """Resolves a revision's references for this node and registers the secret values for redaction."""

    def __init__(self, environ: Mapping[str, str], vault: VaultClient | None = None) -> None:
        self.environ = environ
        self.vault = vault

    def resolve(self, state: DesiredState) -> Resolution:
        return self.resolve_references(references_of(state))

    def resolve_references(self, references: Iterable[Reference]) -> Resolution:
        """An unset environment variable is left out: the renderer reports it with its field."""
        references = list(references)
        values: dict[str, str] = {}
        sensitive: set[str] = set()
        secrets: dict[str, Mapping[str, Any]] = {}
        for reference in references:
            if reference.name in values:
                if is_sensitive(reference):
                    sensitive.add(values[reference.name])
                continue
            if not reference.is_vault:
                if reference.name in self.environ:
                    values[reference.name] = self.environ[reference.name]
                    if is_sensitive(reference):
                        sensitive.add(values[reference.name])
                continue
            if self.vault is None:
                raise SecretError(
                    f"{reference.where} references ${{{reference.name}}}, but agent.yaml has no 'vault' section; "
                    "configure vault.address and vault.tokenFile (or vault.approle)"
                )
            path = reference.vault_path
            if path not in secrets:
                secrets[path] = self.vault.read(path)
            if reference.vault_key not in secrets[path]:
                raise SecretError(
                    f"{reference.where} references ${{{reference.name}}}: the secret '{path}' has no key "
                    f"'{reference.vault_key}' (it has: {', '.join(sorted(secrets[path])) or 'none'})"
                )
            value = secrets[path][reference.vault_key]
            values[reference.name] = value if isinstance(value, str) else str(value)
            sensitive.add(values[reference.name])
        sensitive |= _derived_secrets(references, values, sensitive)
        redaction.register(sensitive)
        return Resolution(values, frozenset(sensitive))


OUTPOST_FIELD = "global.authentik.outpostUrl"


def _derived_secrets(references: Iterable[Reference], values: Mapping[str, str], sensitive: set[str]) -> set[str]:
    """Parts of secret values that reach the proxy on their own: redaction knows whole values only,
    and the outpost's dial address is cut out of its (secret) URL."""
    derived: set[str] = set()
    for reference in references:
        value = values.get(reference.name)
        if reference.where == OUTPOST_FIELD and value is not None and value in sensitive:
            with contextlib.suppress(AddressError):
                derived.add(parse_http_url(value)[0])
    return derived
