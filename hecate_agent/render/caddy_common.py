"""What the Caddy renderer's parts share: ids, settings, capabilities, the render cache, and errors."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hecate_agent.errors import HecateError
from hecate_agent.spec.templates import REFERENCE_BODY
from hecate_agent.spec.types import (
    Duration,
)

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text, slower
    _orjson = None  # type: ignore[assignment]

ID_PREFIX = "hecate-"
PLAIN_SUFFIX = ".http"  # the copy of an object on the plain-HTTP server
RATE_LIMIT_MODULE = "http.handlers.rate_limit"
TRACING_MODULE = "http.handlers.tracing"
# Where each certificate storage plugin comes from (shared/research/dns-certs-caddy-modules.md §5).
STORAGE_PLUGINS = {
    "vault": "github.com/gerolf-vent/caddy-vault-storage",
    "consul": "github.com/pteich/caddy-tlsconsul",
    "redis": "github.com/pberkel/caddy-storage-redis",
}
WEIGHTED_POLICY_MODULE = "http.reverse_proxy.selection_policies.weighted_round_robin"
MAX_EXPANDED_UPSTREAMS = 1000
# A value substituted into Caddy's JSON must not smuggle placeholders or header breaks.
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f{}]")
_REFERENCE_IN_TEXT = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}")


class RenderError(HecateError):
    """The specs cannot be rendered for this node (a missing module, an unset variable, ...)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def caddy_id(kind: str, *names: str, plain: bool = False) -> str:
    """The `@id` of an object the agent owns; every id is made here (or is one made here plus PLAIN_SUFFIX).

    `hecate-<kind>`, then one name as `-<name>` (`hecate-route-app`) or several as `.<a>.<b>…`
    (`hecate-auth.<policy>.<route>.<piece>`), then `.http` for the copy on the plain-HTTP server.
    Resource names are DNS labels and kinds and pieces fixed words: none holds a '.', so the parts
    of an id can be read back unambiguously and two objects never share one (with a `-http` suffix,
    route `foo` on plain HTTP and route `foo-http` once did).
    """
    body = ID_PREFIX + kind
    if len(names) == 1:
        body += f"-{names[0]}"
    elif names:
        body += "." + ".".join(names)
    return body + (PLAIN_SUFFIX if plain else "")


@dataclass(frozen=True)
class CaddySettings:
    """The node's side of the Caddy config (agent.yaml `caddy:`)."""

    server: str = "hecate"
    http_listen: tuple[str, ...] = (":80",)
    https_listen: tuple[str, ...] = (":443",)
    outpost_url: str | None = None  # agent.yaml authentik.outpostUrl, used when config.yaml sets none

    @property
    def metrics_server(self) -> str:
        return f"{self.server}_metrics"


@dataclass(frozen=True)
class CaddyCapabilities:
    """What the live Caddy can do: its version and module names (`caddy list-modules`)."""

    version: str = "2.6.2"
    modules: frozenset[str] = field(default_factory=frozenset)

    def has(self, module: str) -> bool:
        return module in self.modules

    def at_least(self, major: int, minor: int) -> bool:
        match = re.match(r"v?([0-9]+)\.([0-9]+)", self.version)
        if match is None:
            return False
        return (int(match.group(1)), int(match.group(2))) >= (major, minor)


def parse_listen(listen: str) -> tuple[str, int | None]:
    """(host, port) of a listen address such as ':443', '127.0.0.1:8080' or '[::1]:80'; '' host = all."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port) if port.isascii() and port.isdigit() else None


def _port_of(listen: str) -> int | None:
    return parse_listen(listen)[1]


def _upstream_counts(weights: list[int]) -> list[int]:
    """Integer shares with exact proportions, reduced; rescaled (largest remainder) if too long."""
    divisor = math.gcd(*weights) if weights else 1
    counts = [w // divisor for w in weights]
    total = sum(counts)
    if total <= MAX_EXPANDED_UPSTREAMS:
        return counts
    raw = [c * MAX_EXPANDED_UPSTREAMS / total for c in counts]
    floors = [max(1, math.floor(r)) if c else 0 for r, c in zip(raw, counts, strict=True)]
    order = sorted(range(len(raw)), key=lambda i: (floors[i] - raw[i], i))
    for i in order[: max(0, MAX_EXPANDED_UPSTREAMS - sum(floors))]:
        floors[i] += 1
    return floors


def smooth_sequence(counts: list[int]) -> list[int]:
    """Indexes in smooth weighted round-robin order (as Nginx does): even spread within a cycle."""
    current = [0] * len(counts)
    total = sum(counts)
    sequence = []
    for _ in range(total):
        for i, weight in enumerate(counts):
            current[i] += weight
        best = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[best] -= total
        sequence.append(best)
    return sequence


def _duration(value: Duration) -> str:
    return str(value)


class RenderCache:
    """Rendered routes reused while nothing they depend on changed.

    A daemon re-rendering 10,000 routes after a one-file change would otherwise redo
    all of them. An entry is keyed by the route's document (identity: the loader's
    ParseCache hands back the same object for an unchanged file) and by a digest of
    everything else a route's output depends on (global config, auth policies,
    capabilities, settings, resolved references); it also keeps the problems the
    route raised, so a cached render reports exactly what a fresh one would. Outputs
    are shared, never modified: every consumer (merge, plan, the admin client) copies
    what it changes.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[int, str], tuple[object, str, Any, list[str], list[str]]] = {}
        self._specs: dict[int, tuple[object, dict[str, Any]]] = {}
        self.groups: dict[str, dict[str, Any]] = {}  # outer routes by @id (caddy_layout.group_routes)

    def route(self, kind: str, doc: object, context: str) -> tuple[Any, list[str], list[str]] | None:
        """(output, problems, @ids of the output) of a route rendered before, if still valid."""
        found = self._routes.get((id(doc), kind))
        if found is None or found[0] is not doc or found[1] != context:
            return None
        return found[2], found[3], found[4]

    def keep_route(
        self, kind: str, doc: object, context: str, *, output: Any, problems: list[str], ids: list[str]
    ) -> None:
        self._routes[(id(doc), kind)] = (doc, context, output, problems, ids)

    def spec(self, doc: Any) -> dict[str, Any]:
        found = self._specs.get(id(doc))
        if found is None or found[0] is not doc:
            found = (doc, doc.model_dump(mode="json", by_alias=True, exclude={"api_version", "kind"}))
            self._specs[id(doc)] = found
        return found[1]

    def retain(self, docs: Iterable[object]) -> None:
        """Forget documents that are no longer in the revision (bounded memory)."""
        alive = {id(d) for d in docs}
        self._routes = {k: v for k, v in self._routes.items() if k[0] in alive}
        self._specs = {k: v for k, v in self._specs.items() if k in alive}


DEFAULT_SETTINGS = CaddySettings()
DEFAULT_CAPABILITIES = CaddyCapabilities()


def _plain_copy(node: Any) -> Any:
    """`node` with PLAIN_SUFFIX on every `@id` (see caddy_id): the same route served on the plain-HTTP server."""
    if isinstance(node, dict):
        return {k: (v + PLAIN_SUFFIX if k == "@id" else _plain_copy(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain_copy(v) for v in node]
    return node


def _catch_all() -> dict[str, Any]:
    return {
        "@id": caddy_id("not-found"),
        "handle": [{"handler": "static_response", "status_code": 404, "body": "no route for this host\n"}],
        "terminal": True,
    }
