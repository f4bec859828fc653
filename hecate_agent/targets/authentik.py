"""The Authentik target (order 20): the objects that make Authentik enforce each Route's AuthPolicy.

Over `hecate_agent.authentik.client.AuthentikTarget` (the API adapter) and the pure
mapping in `authentik/desired.py`. The engine sees Authentik like any target:

- state: `{"objects": {"<kind>|<key>": fields}, "unmanaged": [...]}`, JSON values, only
  the fields we own (fields Authentik rewrites on its own are left out, lists sorted), so
  desired and live compare by value; resources are keyed `Authentik<Kind>/<name>`.
- desired: from the revision's spec documents (`rendered.specs`): every Route naming an
  AuthPolicy, `https://<domain>` unless the route's `tls.autoHTTPS` is false.
- apply: creates and updates (flows, stages, policies, provider, application, bindings,
  the outpost's provider list); `retire` (engine/fleetwide.py) deletes what no route needs
  any more, after Caddy has let go of it. `begin` snapshots our objects; `restore` puts
  the snapshot back; `in_place`/`finish` complete an apply a crash interrupted.
- fleet-wide: only the node whose `FleetRole` acts writes. Any other node writes nothing;
  `begin` waits (bounded) until Authentik holds every object its routes need, else the
  reconcile ends in error (nothing changed) and is retried.
- Authentik unreachable: `read` raises `AuthentikUnavailableError`, so nothing is applied on
  any target, the last-known-good keeps serving and the status says why (outcome error).

`authentik_client` is slow to import: it is imported only when this target is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hecate_agent.authentik.desired import (
    EMBEDDED_OUTPOST,
    DesiredObject,
    MappingError,
    ProtectedRoute,
    canonical,
    desired_objects,
    make,
    uncanonical,
)
from hecate_agent.authentik.plan import SERVER_MANAGED, ChangeSet
from hecate_agent.engine.errors import ApplyError
from hecate_agent.engine.fleetwide import FleetRole, wait_until
from hecate_agent.engine.ports import TargetLive
from hecate_agent.errors import HecateError
from hecate_agent.render.caddy import RenderError
from hecate_agent.spec.types import Duration

if TYPE_CHECKING:
    from hecate_agent.authentik.client import AuthentikTarget
    from hecate_agent.engine.prepare import Prepared
    from hecate_agent.render.bundle import Rendered
    from hecate_agent.store.state import Snapshot

ORDER = 20
DEFAULT_AUTHENTICATION_FLOW = "default-authentication-flow"  # a policy without `flow`
KIND_NAMES = {
    "flow": "AuthentikFlow",
    "validate_stage": "AuthentikValidateStage",
    "login_stage": "AuthentikLoginStage",
    "flow_binding": "AuthentikFlowBinding",
    "policy": "AuthentikPolicy",
    "provider": "AuthentikProvider",
    "application": "AuthentikApplication",
    "policy_binding": "AuthentikPolicyBinding",
    "outpost_provider": "AuthentikOutpostProvider",
}


class AuthentikUnavailableError(HecateError):
    """Authentik could not be read or written (down, refusing the token, ...): nothing applied."""


class AuthentikWaitingError(HecateError):
    """A node that does not provision Authentik found it without what its routes need (retried)."""


def protected_routes(specs: Mapping[str, Any]) -> list[ProtectedRoute]:
    """Each Route that names an AuthPolicy, with the policy flattened in (pure; specs as JSON)."""
    routes = []
    for key in sorted(k for k in specs if k.startswith("Route/")):
        spec = specs[key].get("spec") or {}
        name = spec.get("authPolicy")
        if not name:
            continue
        policy = (specs.get(f"AuthPolicy/{name}") or {}).get("spec") or {}
        requirements = policy.get("requirements") or {}
        session = requirements.get("sessionDuration")
        tls = spec.get("tls") or {}
        routes.append(
            ProtectedRoute(
                route=key.split("/", 1)[1],
                domain=spec["domain"],
                scheme="http" if tls.get("autoHTTPS") is False else "https",
                policy=name,
                flow=policy.get("flow") or DEFAULT_AUTHENTICATION_FLOW,
                groups=tuple(requirements.get("groups") or ()),
                mfa=requirements.get("mfa") or "disabled",
                allowed_methods=tuple(policy.get("allowedMethods") or ()),
                session_duration=int(Duration.parse(str(session)).seconds) if session is not None else None,
                required_attributes=tuple((policy.get("metadata") or {}).get("required") or ()),
            )
        )
    return routes


def ident(kind: str, key: str) -> str:
    return f"{kind}|{key}"


def normal(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as compared: JSON values, ours only, lists in a stable order."""
    ignored = SERVER_MANAGED.get(kind, frozenset())
    out: dict[str, Any] = {}
    for name, raw in sorted(fields.items()):
        if name in ignored:
            continue
        value = canonical(raw)
        out[name] = sorted(value, key=repr) if isinstance(value, list) else value
    return out


def state_of(objects: Sequence[Any], unmanaged: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "objects": {ident(o.kind, o.key): normal(o.kind, o.fields) for o in objects},
        "unmanaged": sorted(unmanaged),
    }


def objects_of(state: Mapping[str, Any]) -> list[DesiredObject]:
    """The desired objects back out of a (desired) state."""
    found = []
    for name, fields in (state.get("objects") or {}).items():
        kind, key = name.split("|", 1)
        found.append(make(kind, key, uncanonical(fields)))
    return found


class AuthentikEngineTarget:
    """Authentik as the engine's target (see the module docstring)."""

    name = "authentik"
    order = ORDER
    plan_whole = True  # small objects: plans show every field on create and delete

    def __init__(
        self,
        connect: Callable[[], AuthentikTarget],
        role: FleetRole,
        *,
        url: str,
        outpost: str = EMBEDDED_OUTPOST,
        follower_wait: float = 60.0,
    ) -> None:
        from hecate_agent.authentik.api import AuthentikError

        self.connect = connect  # reads the token (file or Vault): on first use, so failing there is retried
        self._client: AuthentikTarget | None = None
        self.url = url
        self.role = role
        self.outpost = outpost
        self.follower_wait = follower_wait
        self._error: type[Exception] = AuthentikError
        self._health: dict[str, Any] | None = None

    @property
    def client(self) -> AuthentikTarget:
        if self._client is None:
            try:
                self._client = self.connect()
            except HecateError as exc:
                self._health = {"healthy": False, "detail": str(exc)}
                raise AuthentikUnavailableError(str(exc)) from None
        return self._client

    @contextmanager
    def _calling(self, wrap: Callable[[str], HecateError]) -> Iterator[None]:
        try:
            yield
        except self._error as exc:
            self._health = {"healthy": False, "detail": str(exc)}
            raise wrap(str(exc)) from None

    # --- reading and planning (pure but for read) ------------------------------------------

    def read(self) -> TargetLive:
        client = self.client
        with self._calling(AuthentikUnavailableError):
            live = client.read_live()
        self._health = {"healthy": True, "detail": f"reachable at {self.url}"}
        return TargetLive(state_of(live.objects, [f"Authentik {u}" for u in live.unmanaged]))

    def desired(self, rendered: Rendered, live: Any) -> Any:
        try:
            objects = desired_objects(protected_routes(rendered.specs), outpost=self.outpost)
        except MappingError as exc:
            raise RenderError([f"authentik: {exc}"]) from None
        state = state_of(objects)
        if not self.role.would_act():  # a follower deletes nothing: what is live stays in its plan
            for name, fields in ((live or {}).get("objects") or {}).items():
                state["objects"].setdefault(name, fields)
        return state

    def owned(self, state: Any) -> Any:
        return (state or {}).get("objects") or {}

    def resources(self, state: Any) -> tuple[dict[str, Any], list[str]]:
        found = {}
        for name, fields in self.owned(state).items():
            kind, key = name.split("|", 1)
            found[f"{KIND_NAMES.get(kind, kind)}/{key}"] = fields
        return found, list((state or {}).get("unmanaged") or [])

    def of_snapshot(self, snapshot: Snapshot) -> Any:
        return {"objects": dict((snapshot.parts.get(self.name) or {}).get("objects") or {})}

    def to_snapshot(self, prepared: Prepared) -> dict[str, Any]:
        return {"parts": {self.name: {"objects": self.owned(prepared.desired[self.name])}}}

    def _changes(self, desired: Sequence[DesiredObject]) -> ChangeSet:
        with self._calling(AuthentikUnavailableError):
            return self.client.plan(desired, self.client.read_live())

    def preflight(self, prepared: Prepared) -> list[str]:
        changes = self._changes(objects_of(prepared.desired[self.name]))
        return [f"authentik: {p}" for p in changes.problems]

    # --- applying ---------------------------------------------------------------------------

    def begin(self, prepared: Prepared) -> dict[str, Any]:
        desired = prepared.desired[self.name]
        if not self.role.acts():
            self._await_leader(objects_of(desired))
            return {"acting": False, "desired": desired}
        with self._calling(AuthentikUnavailableError):
            snapshot = self.client.snapshot().to_dict()
        return {"acting": True, "desired": desired, "snapshot": snapshot}

    def _await_leader(self, desired: Sequence[DesiredObject]) -> None:
        def missing() -> str | None:
            try:
                changes = self._changes(desired)
            except AuthentikUnavailableError as exc:
                return str(exc)
            lacking = [f"{c.kind} {c.key}" for c in changes.changes if c.action != "delete"]
            return ", ".join(lacking[:5]) + (f" (and {len(lacking) - 5} more)" if len(lacking) > 5 else "") or None

        reason = wait_until(missing, self.follower_wait)
        if reason is not None:
            raise AuthentikWaitingError(
                f"authentik: this node does not provision Authentik ({self.role.describe()}) and after "
                f"{self.follower_wait:g}s Authentik still lacks what this revision's routes need: {reason}. "
                "The node that provisions it has not applied this revision yet; retried later"
            )

    def _write(self, record: Mapping[str, Any], *, deletes: bool) -> None:
        """Our creates and updates (deletes=False) or our deletes (True), under the client's own rollback."""
        if not record.get("acting"):
            return
        changes = self._changes(objects_of(record["desired"]))
        chosen = tuple(c for c in changes.changes if (c.action == "delete") == deletes)
        with self._calling(lambda message: ApplyError(self.name, message)):
            self.client.apply(ChangeSet(chosen, changes.unmanaged, changes.problems, changes.index))

    def apply(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        del prepared, save
        self._write(record, deletes=False)

    def retire(self, prepared: Prepared, record: dict[str, Any], save: Callable[[], None]) -> None:
        del prepared, save
        self._write(record, deletes=True)

    def restore(self, record: dict[str, Any], live: TargetLive | None = None) -> None:
        del live
        if not record.get("acting") or "snapshot" not in record:
            return  # a follower wrote nothing
        from hecate_agent.authentik.client import Snapshot as AuthentikSnapshot

        with self._calling(lambda message: ApplyError("authentik rollback", message)):
            self.client.restore(AuthentikSnapshot.from_dict(record["snapshot"]))

    def in_place(self, record: dict[str, Any], live: TargetLive, snapshot: Snapshot) -> bool:
        """Every object created or updated (only the deletes may be left: `finish` makes them)."""
        del snapshot
        if not record.get("acting"):
            return True
        have = self.owned(live.state)
        return all(have.get(name) == fields for name, fields in self.owned(record["desired"]).items())

    def finish(self, record: dict[str, Any]) -> None:
        self._write(record, deletes=True)

    def commit(self, record: dict[str, Any]) -> None:
        del record

    def component(self) -> dict[str, Any] | None:
        if self._health is None:
            return None
        return {**self._health, "role": self.role.describe()}

    def close(self) -> None:
        self.role.release()
