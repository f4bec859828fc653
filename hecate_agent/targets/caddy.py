"""The Caddy target: the agent's servers and TLS policies inside Caddy's one JSON config.

All knowledge of Caddy's config layout lives here and in render/caddy.py: which
part of a full config is the agent's (`owned_part`, the inverse of `merge`:
the servers `<server>` and `<server>_http`, `@id`s with the `hecate-` prefix),
how that part is keyed as resources (`caddy_resources`), and which listeners a
config opens. Applying is one `POST /config/` guarded by `If-Match` (the ETag
read with the live config), then a read-back that must equal what was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hecate_agent.engine.errors import ApplyError, ConflictError
from hecate_agent.engine.ports import TargetLive
from hecate_agent.render.caddy import ID_PREFIX, PLAIN_SUFFIX, CaddySettings, merge, parse_listen
from hecate_agent.render.caddy_layout import ungroup
from hecate_agent.targets import sockets
from hecate_agent.targets.caddy_admin import CaddyAdmin, CaddyConflictError, CaddyError
from hecate_agent.targets.caddy_memory import AppliedMemory, ResourceMemo

if TYPE_CHECKING:
    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.store.state import Snapshot

ORDER = 30


def owned_part(config: Mapping[str, Any], settings: CaddySettings) -> dict[str, Any]:
    """The inverse of `merge`: only what the agent owns in a full Caddy config."""
    apps = config.get("apps") or {}
    http = apps.get("http") or {}
    servers = http.get("servers") or {}
    owned_http: dict[str, Any] = {
        "servers": {
            n: servers[n] for n in (settings.server, f"{settings.server}_http", settings.metrics_server) if n in servers
        }
    }
    for key in ("http_port", "https_port", "metrics"):
        if key in http:
            owned_http[key] = http[key]
    policies = ((apps.get("tls") or {}).get("automation") or {}).get("policies") or []
    return {
        "apps": {
            "http": owned_http,
            "tls": {"automation": {"policies": [p for p in policies if str(p.get("@id", "")).startswith(ID_PREFIX)]}},
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        }
    }


def caddy_resources(
    config: Mapping[str, Any] | None, server: str, memo: ResourceMemo | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The agent's objects in a full Caddy config, by resource ("Kind/name"), and what is not ours.

    Inputs are not modified and not deep-copied (configs reach megabytes); values
    share structure with `config`. With a `memo`, the work done for an object seen
    before (the whole config, a route, a group) is not done again (targets/caddy_memory.py).
    """
    if memo is not None:
        seen, result = memo.get("config", config)
        if seen:
            return dict(result[0]), list(result[1])
    resources: dict[str, Any] = {}
    unmanaged: list[str] = []
    apps = dict((config or {}).get("apps") or {})
    servers = dict((apps.get("http") or {}).get("servers") or {})
    for name in sorted(servers):
        if name not in (server, f"{server}_http", f"{server}_metrics"):
            unmanaged.append(f"Caddy server {name!r}")
            continue
        plain = name != server
        body = dict(servers[name])
        # Grouped routes (render/caddy_layout.py) are planned one by one, as in a flat list.
        routes = ungroup(body.pop("routes", None) or [], ID_PREFIX, memo)
        leftovers = []
        for route in routes:
            owner, own_route, pieces = _split_route(route, plain, memo)
            if owner is None:
                route_id = str(route.get("@id", "")) if isinstance(route, dict) else ""
                if not route_id.startswith(ID_PREFIX):
                    unmanaged.append(f"route {route_id or '(no @id)'} in Caddy server {name!r}")
                leftovers.append(route)
                continue
            for piece in pieces:
                policy = str(piece["@id"]).split(".")[1]
                resources.setdefault(f"AuthPolicy/{policy}", {})[str(piece["@id"])] = piece
            resources.setdefault(f"Route/{owner}", {})["http" if plain else "https"] = own_route
        body["routes"] = leftovers
        resources[f"Server/{name}"] = body
    policies = ((apps.get("tls") or {}).get("automation") or {}).get("policies") or []
    ours = [p for p in policies if str(p.get("@id", "")).startswith(ID_PREFIX)]
    theirs = [p for p in policies if not str(p.get("@id", "")).startswith(ID_PREFIX)]
    if ours:
        resources["TLS/certificates"] = ours
    unmanaged += [f"TLS automation policy for {p.get('subjects', 'all names')}" for p in theirs]
    for app in sorted(apps):
        if app not in ("http", "tls", "pki"):
            unmanaged.append(f"Caddy app {app!r}")
    if memo is not None:
        _reuse_route_resources(resources, memo)
        memo.put("config", config, (dict(resources), list(unmanaged)))
    return resources, unmanaged


def _reuse_route_resources(resources: dict[str, Any], memo: ResourceMemo) -> None:
    """A `Route/<name>` resource made of the same route objects as one made before is that same dict, so a
    plan compares an unchanged route by identity (plan.make_plan)."""
    for key, value in resources.items():
        if not key.startswith("Route/"):
            continue
        anchor = value.get("https", value.get("http"))
        seen, before = memo.get("resource", anchor)
        if seen and len(before) == len(value) and all(before.get(k) is v for k, v in value.items()):
            resources[key] = before
        else:
            memo.put("resource", anchor, value)


def _split_route(route: Any, plain: bool, memo: ResourceMemo | None) -> tuple[str | None, Any, list[dict[str, Any]]]:
    """A route's owner (None: not a route of ours) and the route with its forward-auth pieces taken out."""
    kind = "route.http" if plain else "route"
    if memo is not None:
        seen, result = memo.get(kind, route)
        if seen:
            return result  # type: ignore[no-any-return]
    route_id = str(route.get("@id", "")) if isinstance(route, dict) else ""
    owner = _route_owner(route_id, plain)
    split: tuple[str | None, Any, list[dict[str, Any]]] = (owner, route, [])
    if owner is not None:
        split = (owner, *_pull_auth_pieces(route))
    return memo.put(kind, route, split) if memo is not None else split


def _route_owner(route_id: str, plain: bool) -> str | None:
    body = route_id
    if plain and route_id.endswith(PLAIN_SUFFIX):
        body = route_id[: -len(PLAIN_SUFFIX)]
    elif plain and route_id.endswith("-http"):
        body = route_id[: -len("-http")]  # written by agents before the `.http` suffix (issue 11)
    for prefix in (f"{ID_PREFIX}route-", f"{ID_PREFIX}redirect-"):
        if body.startswith(prefix):
            return body[len(prefix) :]
    return None


def _is_auth_piece(value: Any) -> bool:
    return isinstance(value, dict) and str(value.get("@id", "")).startswith(f"{ID_PREFIX}auth.")


def _pull_auth_pieces(route: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Forward-auth objects (`@id` hecate-auth.<policy>.<route>...) taken out of a route's subroute,
    replaced by references; the route is copied only where it changes."""
    pieces: list[dict[str, Any]] = []
    handlers = route.get("handle")
    if not isinstance(handlers, list):
        return route, pieces
    new_handlers = []
    for handler in handlers:
        inner = handler.get("routes") if isinstance(handler, dict) else None
        if isinstance(inner, list) and any(_is_auth_piece(r) for r in inner):
            pieces += [r for r in inner if _is_auth_piece(r)]
            new_handlers.append({**handler, "routes": [{"@ref": r["@id"]} if _is_auth_piece(r) else r for r in inner]})
        else:
            new_handlers.append(handler)
    return ({**route, "handle": new_handlers} if pieces else route), pieces


def listen_keys(config: Mapping[str, Any]) -> set[str]:
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    return {address for body in servers.values() for address in body.get("listen", [])}


def port_conflicts(live: Mapping[str, Any], merged: Mapping[str, Any]) -> list[str]:
    """New Caddy listeners whose port is taken: a failed bind in /load can orphan servers in Caddy 2.6.2."""
    problems = []
    for address in sorted(listen_keys(merged) - listen_keys(live)):
        host, port = parse_listen(address)
        if port is None:
            continue
        if not sockets.can_bind("tcp", host or "0.0.0.0", port):
            problems.append(
                f"Caddy listener {address} is already in use by another process; free it or change "
                "caddy.httpListen / caddy.httpsListen"
            )
    return problems


class CaddyTarget:
    """Caddy through its admin API."""

    name = "caddy"
    order = ORDER

    def __init__(self, admin: CaddyAdmin, settings: CaddySettings) -> None:
        self.admin = admin
        self.settings = settings
        self.memory = AppliedMemory()  # what this process last applied, for planning (caddy_memory.py)
        self.memo = ResourceMemo()

    def read(self) -> TargetLive:
        live = self.admin.get_config()
        applied = self.memory.recall()
        if applied is not None and applied.etag != live.etag:
            self.memory.forget()  # changed behind the agent's back (a drift check, a CLI plan saw it)
        return TargetLive(live.config, token=live.etag)

    def recall(self) -> TargetLive | None:
        """The config this process last applied and verified, with its ETag (None: read Caddy). Only for
        planning an apply: the apply's If-Match refuses it if Caddy's config changed since."""
        applied = self.memory.recall()
        if applied is None:
            return None
        self.admin.ping()  # a Caddy that is down fails the plan, as a read would (nothing journaled or touched)
        return TargetLive(applied.config, token=applied.etag)

    def desired(self, rendered: Rendered, live: Any) -> Any:
        return merge(live, rendered.caddy_owned, self.settings)

    def owned(self, state: Any) -> Any:
        return owned_part(state, self.settings)

    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]:
        self.memo.next_generation()
        return caddy_resources(state, self.settings.server, self.memo)

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return snapshot.caddy_config

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        return {"caddy_config": prepared.desired[self.name]}

    def preflight(self, prepared: Prepared) -> list[str]:
        return port_conflicts(prepared.live.state(self.name), prepared.desired[self.name])

    def begin(self, prepared: Prepared) -> dict[str, Any]:
        return {"old": prepared.live.state(self.name)}

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        del save  # the record (the old config) was journaled before; nothing new to keep
        live, wanted = prepared.live.targets[self.name], prepared.desired[self.name]
        record["changed"] = False  # in this process: a refused load changed nothing to undo
        self.memory.forget()  # until Caddy is known to hold `wanted`
        try:
            self.admin.replace(wanted, live.token or "")
        except CaddyConflictError:
            raise ConflictError(
                "caddy",
                "Caddy's config was changed by someone else since the plan was made (ETag mismatch); "
                "nothing was changed. Run plan again",
            ) from None
        except CaddyError as exc:
            hint = ""
            if "address already in use" in exc.caddy_message:
                hint = (
                    " (Caddy 2.6.2 may keep half-started listeners after this error: restart Caddy, "
                    "e.g. systemctl restart caddy)"
                )
            raise ApplyError("caddy", f"{exc}{hint}") from None
        record["changed"] = True
        try:
            now = self.admin.get_config()
        except CaddyError as exc:
            raise ApplyError("verify", str(exc)) from None
        if now.config != wanted:
            raise ApplyError("verify", "Caddy's config after the load differs from what was sent")
        # Equal to what was sent: keep the object we built (it shares its routes with the render cache,
        # so the next plan compares most of them by identity) with the ETag of what Caddy holds.
        self.memory.remember(wanted, now.etag)

    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool:
        del record
        return bool(live.state == snapshot.caddy_config)

    def finish(self, record: dict[str, Any]) -> None:
        del record  # Caddy runs what it holds: nothing to finish

    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None:
        self.memory.forget()
        if record.get("changed") is False:
            return  # never changed here (e.g. someone else's edit refused the load): leave it
        try:
            if (live.state if live is not None else self.admin.get_config().config) == record["old"]:
                return
            self.admin.load(record["old"])
            if self.admin.get_config().config != record["old"]:
                raise CaddyError("Caddy's config differs from the snapshot after the rollback load")
        except CaddyError as exc:
            raise ApplyError(
                "caddy rollback",
                f"{exc}. Run `hecate-agent rollback --previous` or POST the snapshot (the journal's "
                "targets.caddy.old) to Caddy's /load",
            ) from None

    def commit(self, record: dict[str, Any]) -> None:
        del record

    def close(self) -> None:
        self.admin.close()
