"""The apply transaction: one code path for the CLI and the daemon.

lock → resolve a leftover journal → read live state → plan → guards (mass
deletion, ports) → journal → Caddy (full config guarded by If-Match) → Nginx
(stage, flip, `nginx -t`, reload, verify) → verify Caddy → journal step
`applied` → verification probes (engine/verify.py) → *then* record the
last-known-good → clear the journal. Any failure, a failed probe included, puts
every component already changed back, in reverse order; if that fails too the
operator is told exactly what is left (exit 3). A crash at any point leaves a
journal that the next start resolves to one whole revision: the new one if it
is fully in place *and* its probes (kept in the journal) pass again, else the
old one. An unverified revision is never recorded as last-known-good.

Test hook: with `HECATE_TEST_PAUSE_AT=<step>` in the environment, the
apply stops at that journal step (after writing it), writes the step's name to
`<stateDir>/test-paused-at` and sleeps, so a test can SIGKILL it exactly there.
Steps: prepared, caddy, nginx, applied, verified. Not for production use.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hecate_agent import redaction
from hecate_agent.engine.outcomes import Outcome
from hecate_agent.engine.verify import Probe, probes_for, run_probes
from hecate_agent.errors import HecateError
from hecate_agent.plan import Plan, caddy_resources, make_plan, nginx_resources
from hecate_agent.render.bundle import Rendered, fingerprint, render_all
from hecate_agent.render.caddy import ID_PREFIX, CaddyCapabilities, CaddySettings, RenderCache, merge, parse_listen
from hecate_agent.render.nginx import Listener
from hecate_agent.secrets import SecretResolver, VaultClient
from hecate_agent.settings import AgentSettings
from hecate_agent.spec.loader import DesiredState
from hecate_agent.store.state import Snapshot, StateStore, utc_now
from hecate_agent.targets import sockets
from hecate_agent.targets.caddy_admin import CaddyAdmin, CaddyConflictError, CaddyError, LiveConfig
from hecate_agent.targets.nginx_streams import NginxError, NginxSettings, NginxStreams

PAUSE_VARIABLE = "HECATE_TEST_PAUSE_AT"  # test-only: see the module docstring
EXIT_FAILED = 1
EXIT_ROLLBACK_FAILED = 3
MANAGED_KINDS = ("Route", "AuthPolicy", "Stream")


class ApplyError(HecateError):
    """The apply failed; every component was put back as it was (exit 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(f"{step}: {message}")


class RefusedError(ApplyError):
    """A guard refused the plan before anything changed."""


class RollbackError(HecateError):
    """The apply failed and so did putting things back: the operator must look (exit 3)."""

    exit_code = EXIT_ROLLBACK_FAILED


@dataclass
class Node:
    """This node's proxies and state, built from the agent's settings."""

    settings: AgentSettings
    caddy: CaddyAdmin
    nginx: NginxStreams | None
    store: StateStore
    capabilities: CaddyCapabilities
    resolver: SecretResolver
    nginx_include_checked: bool = False  # `nginx -T` once per process, not per apply
    render_cache: RenderCache = field(default_factory=RenderCache)

    @classmethod
    def from_settings(
        cls,
        settings: AgentSettings,
        *,
        environment: Mapping[str, str] | None = None,
        capabilities: CaddyCapabilities | None = None,
    ) -> Node:
        nginx_settings = settings.nginx
        nginx = (
            NginxStreams(
                NginxSettings(
                    stream_dir=nginx_settings.stream_dir,
                    test_command=tuple(nginx_settings.test_command),
                    reload_command=tuple(nginx_settings.reload_command),
                    dump_command=tuple(nginx_settings.dump_command),
                    pid_file=nginx_settings.pid_file,
                    error_log=nginx_settings.error_log,
                )
            )
            if nginx_settings.enabled
            else None
        )
        if capabilities is None:
            from hecate_agent.targets.caddy_admin import detect_capabilities

            try:
                capabilities = detect_capabilities(settings.caddy.binary)
            except CaddyError:
                capabilities = CaddyCapabilities()
        return cls(
            settings=settings,
            caddy=CaddyAdmin(settings.caddy.admin_url),
            nginx=nginx,
            store=StateStore(settings.state_dir, keep=settings.sync.history_limit),
            capabilities=capabilities,
            resolver=SecretResolver(
                dict(os.environ if environment is None else environment),
                VaultClient(settings.vault) if settings.vault is not None else None,
            ),
        )

    @property
    def caddy_settings(self) -> CaddySettings:
        c = self.settings.caddy
        return CaddySettings(server=c.server, http_listen=tuple(c.http_listen), https_listen=tuple(c.https_listen))

    def close(self) -> None:
        self.caddy.close()


@dataclass(frozen=True)
class LiveState:
    caddy: LiveConfig
    nginx_files: dict[str, str]
    nginx_folder: str | None

    def owned_fingerprint(self, settings: CaddySettings) -> str:
        return fingerprint(owned_part(self.caddy.config, settings), self.nginx_files)

    @property
    def fingerprint(self) -> str:
        """Everything live (not only ours): a saved plan is stale when this changes."""
        return fingerprint(self.caddy.config, self.nginx_files)


def owned_part(config: Mapping[str, Any], settings: CaddySettings) -> dict[str, Any]:
    """The inverse of `merge`: only what the agent owns in a full Caddy config."""
    apps = config.get("apps") or {}
    http = apps.get("http") or {}
    servers = http.get("servers") or {}
    owned_http: dict[str, Any] = {
        "servers": {n: servers[n] for n in (settings.server, f"{settings.server}_http") if n in servers}
    }
    for key in ("http_port", "https_port"):
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


def read_live(node: Node) -> LiveState:
    live = node.caddy.get_config()
    if node.nginx is None:
        return LiveState(live, {}, None)
    folder = node.nginx.active_folder()
    return LiveState(live, node.nginx.read_active(), str(folder) if folder else None)


@dataclass
class Prepared:
    rendered: Rendered
    live: LiveState
    merged: dict[str, Any]
    plan: Plan
    last: Snapshot | None
    secrets: frozenset[str] = frozenset()
    probes: list[Probe] = field(default_factory=list)  # what verification checks after the apply


def resources_of(
    caddy_config: Mapping[str, Any], nginx_files: Mapping[str, str], server: str
) -> tuple[dict[str, Any], list[str]]:
    caddy, unmanaged = caddy_resources(caddy_config, server)
    return {**caddy, **nginx_resources(nginx_files)}, unmanaged


@contextlib.contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Configs are trees of plain values with no reference cycles. With 10,000 routes the
    cycle collector would rescan the whole growing heap again and again (most of an
    apply's time, measured); reference counting alone frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def prepare(node: Node, state: DesiredState, revision: str) -> Prepared:
    """Render the revision and plan it against the live proxies and the last-known-good."""
    with cycle_collector_paused():
        return _prepare(node, state, revision)


def _prepare(node: Node, state: DesiredState, revision: str) -> Prepared:
    resolution = node.resolver.resolve(state)  # SecretError before anything is rendered or touched
    rendered = render_all(
        state,
        revision,
        caddy=node.caddy_settings,
        capabilities=node.capabilities,
        environment=resolution.values,
        nginx_enabled=node.nginx is not None,
        cache=node.render_cache,
    )
    prepared = _prepare_rendered(node, rendered, resolution.sensitive)
    prepared.probes = probes_for(prepared.plan.changes, state, node.caddy_settings)
    return prepared


def prepare_rendered(node: Node, rendered: Rendered, secrets: frozenset[str] = frozenset()) -> Prepared:
    """Plan an already rendered revision (a new one, or a stored snapshot being rolled back to)."""
    with cycle_collector_paused():
        return _prepare_rendered(node, rendered, secrets)


def _prepare_rendered(node: Node, rendered: Rendered, secrets: frozenset[str]) -> Prepared:
    live = read_live(node)
    last = node.store.last_applied()
    if last is not None:
        # The live config may still hold the values of before a rotation: hide those too.
        redaction.register(last.sensitive)
        secrets |= frozenset(last.sensitive)
    secrets |= redaction.known()
    server = node.caddy_settings.server
    desired, _ = resources_of(rendered.caddy_owned, rendered.nginx_files, server)
    have, unmanaged = resources_of(live.caddy.config, live.nginx_files, server)
    last_resources = resources_of(last.caddy_config, last.nginx_files, server)[0] if last else None
    plan = make_plan(
        revision=rendered.revision,
        desired=desired,
        desired_specs=rendered.specs,
        live=have,
        last=last_resources,
        last_specs=last.specs if last else None,
        last_revision=last.revision if last else None,
        desired_fingerprint=rendered.fingerprint,
        live_fingerprint=live.fingerprint,
        unmanaged=unmanaged,
        secrets=secrets,
    )
    merged = merge(live.caddy.config, rendered.caddy_owned, node.caddy_settings)
    return Prepared(rendered, live, merged, plan, last, secrets)


def snapshot_rendered(snapshot: Snapshot, settings: CaddySettings) -> Rendered:
    """A stored last-known-good as a Rendered revision, to re-apply it exactly."""
    redaction.register(snapshot.sensitive)
    return Rendered(
        snapshot.revision,
        owned_part(snapshot.caddy_config, settings),
        snapshot.nginx_files,
        tuple(_listener_from(x) for x in snapshot.nginx_listeners),
        snapshot.specs,
    )


def _listener_from(data: Mapping[str, Any]) -> Listener:
    return Listener(data["stream"], data["address"], data["port"], data["protocol"], data["upstreamName"])


@dataclass
class ApplyResult:
    outcome: Outcome  # applied | noop
    revision: str
    seconds: float
    plan: Plan
    steps: list[str] = field(default_factory=list)


def mass_delete_check(plan: Plan, max_percent: int) -> str | None:
    managed = [c for c in plan.changes if c.kind in MANAGED_KINDS and c.action != "create"]
    deleted = [c for c in managed if c.action == "delete"]
    if not managed or not deleted:
        return None
    share = 100 * len(deleted) / len(managed)
    if share <= max_percent:
        return None
    return (
        f"the plan deletes {len(deleted)} of {len(managed)} managed resources ({share:.0f}% > "
        f"sync.maxDeletePercent {max_percent}%); an emptied or mis-merged repository must not take the node "
        "down. If this is intended, apply with --allow-mass-delete"
    )


def _caddy_listen_keys(config: Mapping[str, Any]) -> set[str]:
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    return {address for body in servers.values() for address in body.get("listen", [])}


def caddy_port_conflicts(live: Mapping[str, Any], merged: Mapping[str, Any], settings: CaddySettings) -> list[str]:
    """New Caddy listeners whose port is taken: a failed bind in /load can orphan servers in Caddy 2.6.2."""
    new = _caddy_listen_keys(merged) - _caddy_listen_keys(live)
    problems = []
    for address in sorted(new):
        host, port = parse_listen(address)
        if port is None:
            continue
        if not sockets.can_bind("tcp", host or "0.0.0.0", port):
            problems.append(
                f"Caddy listener {address} is already in use by another process; free it or change "
                "caddy.httpListen / caddy.httpsListen"
            )
    return problems


class Transaction:
    """One apply of a prepared revision, with rollback."""

    def __init__(self, node: Node, prepared: Prepared) -> None:
        self.node = node
        self.prepared = prepared
        self.caddy_changed = False
        self.nginx_previous: Path | None = None
        self.nginx_activated: Path | None = None
        self.nginx_reloaded = False
        self.steps: list[str] = []
        self.journal: dict[str, Any] = {}

    def run(self) -> None:
        node, prepared = self.node, self.prepared
        rendered = prepared.rendered
        caddy_needed = owned_part(prepared.live.caddy.config, node.caddy_settings) != rendered.caddy_owned
        nginx_needed = node.nginx is not None and prepared.live.nginx_files != rendered.nginx_files
        conflicts = caddy_port_conflicts(prepared.live.caddy.config, prepared.merged, node.caddy_settings)
        if conflicts:
            raise RefusedError("caddy preflight", "; ".join(conflicts))
        if nginx_needed and node.nginx is not None:
            try:
                if rendered.listeners and not node.nginx_include_checked:
                    node.nginx.check_include()
                    node.nginx_include_checked = True
                node.nginx.preflight(rendered.listeners)
            except NginxError as exc:
                raise RefusedError("nginx preflight", str(exc)) from None
        journal: dict[str, Any] = {
            "revision": rendered.revision,
            "startedAt": utc_now(),
            "pid": os.getpid(),
            "oldCaddy": prepared.live.caddy.config,
            "oldNginxFolder": prepared.live.nginx_folder,
            "newNginxFolder": None,
            "nginxNeeded": nginx_needed,
            "snapshot": self.snapshot().to_dict(),
            "probes": [p.to_dict() for p in prepared.probes],
            "step": "prepared",
        }
        self.journal = journal
        journal_step(node.store, journal, "prepared")
        try:
            if caddy_needed:
                self.step("caddy")
                journal_step(node.store, journal, "caddy")
                try:
                    node.caddy.replace(prepared.merged, prepared.live.caddy.etag)
                except CaddyConflictError:
                    raise ApplyError(
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
                self.caddy_changed = True
            if nginx_needed and node.nginx is not None:
                self.step("nginx")
                folder = node.nginx.stage(rendered.nginx_files, rendered.revision)
                journal["newNginxFolder"] = str(folder)
                journal_step(node.store, journal, "nginx")
                self.nginx_previous = node.nginx.activate(folder)
                self.nginx_activated = folder
                node.nginx.test()
                self.nginx_reloaded = True
                node.nginx.reload_and_verify(rendered.listeners)
            self.step("verify")
            if caddy_needed:
                now = node.caddy.get_config().config
                if now != prepared.merged:
                    raise ApplyError("verify", "Caddy's config after the load differs from what was sent")
            journal_step(node.store, journal, "applied")
            failures = run_probes(prepared.probes)
            if failures:
                raise ApplyError("verify", "verification failed: " + "; ".join(failures))
            journal_step(node.store, journal, "verified")
        except (ApplyError, NginxError, CaddyError) as exc:
            error = (
                exc if isinstance(exc, ApplyError) else ApplyError(self.steps[-1] if self.steps else "apply", str(exc))
            )
            self.rollback(error)
            raise error from None

    def step(self, name: str) -> None:
        self.steps.append(name)

    def snapshot(self) -> Snapshot:
        rendered = self.prepared.rendered
        return Snapshot(
            revision=rendered.revision,
            applied_at=utc_now(),
            fingerprint=rendered.fingerprint,
            caddy_config=self.prepared.merged,
            nginx_files=rendered.nginx_files,
            nginx_listeners=[_listener_dict(x) for x in rendered.listeners],
            specs=rendered.specs,
            plan_summary=self.prepared.plan.summary(),
            sensitive=_present(self.prepared.secrets, rendered.caddy_owned),
        )

    def rollback(self, cause: ApplyError) -> None:
        """Put back every component already changed, newest first."""
        node = self.node
        problems = []
        if self.nginx_activated is not None and node.nginx is not None:
            try:
                node.nginx.deactivate(self.nginx_previous)
                if self.nginx_reloaded:
                    node.nginx.reload_and_verify(_listeners_of_files(node, self.prepared))
            except (NginxError, OSError) as exc:
                problems.append(
                    f"Nginx: {exc}. Point {node.settings.nginx.stream_dir} back at {self.nginx_previous} and reload"
                )
        if self.caddy_changed:
            try:
                node.caddy.load(self.prepared.live.caddy.config)
                if node.caddy.get_config().config != self.prepared.live.caddy.config:
                    raise CaddyError("Caddy's config differs from the snapshot after the rollback load")
            except CaddyError as exc:
                problems.append(
                    f"Caddy: {exc}. Run `hecate-agent rollback --previous` or POST the snapshot "
                    f"({node.store.root / 'journal.json'}, key oldCaddy) to Caddy's /load"
                )
        if problems:
            raise RollbackError(f"{cause}; the rollback failed too: " + " | ".join(problems))
        node.store.clear_journal()


def _present(secrets: frozenset[str], config: Mapping[str, Any]) -> list[str]:
    """The secrets this config holds (the registry grows with rotations; a snapshot need not)."""
    if not secrets:
        return []
    text = json.dumps(config)
    return sorted(s for s in secrets if json.dumps(s)[1:-1] in text)


def _listener_dict(listener: Listener) -> dict[str, Any]:
    return {
        "stream": listener.stream,
        "address": listener.address,
        "port": listener.port,
        "protocol": listener.protocol,
        "upstreamName": listener.upstream_name,
    }


def _listeners_of_files(node: Node, prepared: Prepared) -> list[Listener]:
    """Listeners of the configuration being restored, when the last-known-good describes it."""
    last = prepared.last
    if last is None or last.nginx_files != prepared.live.nginx_files:
        return []
    return [_listener_from(x) for x in last.nginx_listeners]


def apply_prepared(
    node: Node, prepared: Prepared, *, allow_mass_delete: bool = False, source: str = "cli"
) -> ApplyResult:
    """Apply a prepared plan (the caller holds the lock). Raises ApplyError / RollbackError."""
    with cycle_collector_paused():
        return _apply_prepared(node, prepared, allow_mass_delete=allow_mass_delete, source=source)


def _apply_prepared(node: Node, prepared: Prepared, *, allow_mass_delete: bool, source: str) -> ApplyResult:
    started = time.monotonic()
    plan = prepared.plan
    last = prepared.last
    in_sync = (
        not plan.has_changes
        and last is not None
        and last.fingerprint == prepared.rendered.fingerprint
        and prepared.live.nginx_files == last.nginx_files
    )
    if in_sync:
        result = ApplyResult(Outcome.NOOP, prepared.rendered.revision, time.monotonic() - started, plan)
        _history(node, result, source)
        return result
    if not allow_mass_delete:
        refusal = mass_delete_check(plan, node.settings.sync.max_delete_percent)
        if refusal:
            error = RefusedError("guard", refusal)
            _history(node, None, source, error=error, revision=prepared.rendered.revision)
            raise error
    transaction = Transaction(node, prepared)
    try:
        transaction.run()
    except (ApplyError, RollbackError) as exc:
        _history(node, None, source, error=exc, revision=prepared.rendered.revision)
        raise
    snapshot = transaction.snapshot()
    node.store.record(snapshot)
    node.store.clear_journal()
    if node.nginx is not None and transaction.nginx_activated is not None:
        keep = [transaction.nginx_activated] + ([transaction.nginx_previous] if transaction.nginx_previous else [])
        node.nginx.prune(keep)
    result = ApplyResult(
        Outcome.APPLIED, prepared.rendered.revision, time.monotonic() - started, plan, transaction.steps
    )
    _history(node, result, source)
    return result


def _history(
    node: Node,
    result: ApplyResult | None,
    source: str,
    *,
    error: HecateError | None = None,
    revision: str = "",
) -> None:
    if result is not None:
        entry = {
            "at": utc_now(),
            "revision": result.revision,
            "outcome": result.outcome,
            "seconds": round(result.seconds, 3),
            "summary": result.plan.summary(),
            "source": source,
        }
    else:
        entry = {
            "at": utc_now(),
            "revision": revision,
            "outcome": outcome_of_error(error),
            "error": str(error),
            "source": source,
        }
    # A full or read-only state dir must not turn a good apply into a failure.
    with contextlib.suppress(HecateError):
        node.store.append_history(entry)


def outcome_of_error(error: BaseException | None) -> Outcome:
    """The outcome an exception out of `apply_prepared` stands for."""
    if isinstance(error, RollbackError):
        return Outcome.FAILED
    if isinstance(error, RefusedError):
        return Outcome.REFUSED
    if isinstance(error, ApplyError):
        return Outcome.ROLLED_BACK
    return Outcome.ERROR


def journal_step(store: StateStore, journal: dict[str, Any], step: str) -> None:
    """Write the journal at `step` (and honour the test-only pause hook, see the module docstring)."""
    journal["step"] = step
    store.write_journal(journal)
    if os.environ.get(PAUSE_VARIABLE) == step:
        (store.root / "test-paused-at").write_text(step)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # a test kills us here
            time.sleep(0.2)


def recover(node: Node) -> str | None:
    """Resolve a journal left by a crash, to exactly one revision: the new one if it is fully in
    place and its verification probes pass again (then, and only then, it is recorded as
    last-known-good), else the state before it."""
    journal = node.store.journal()
    if journal is None:
        return None
    live = read_live(node)
    new_caddy = journal["snapshot"]["caddy_config"]
    nginx_needed = bool(journal.get("nginxNeeded")) and node.nginx is not None
    new_folder = journal.get("newNginxFolder")
    caddy_new = live.caddy.config == new_caddy
    nginx_new = not nginx_needed or (new_folder is not None and live.nginx_folder == new_folder)
    revision = journal["revision"]
    entry: dict[str, Any] = {"at": utc_now(), "revision": revision, "source": "recovery"}
    try:
        failures: list[str] = []
        if caddy_new and nginx_new:
            if nginx_needed and node.nginx is not None:
                listeners = [_listener_from(x) for x in journal["snapshot"]["nginx_listeners"]]
                node.nginx.test()
                node.nginx.reload_and_verify(listeners)
            failures = run_probes([Probe.from_dict(p) for p in journal.get("probes") or []])
            if not failures:
                node.store.record(Snapshot.from_dict(journal["snapshot"]))
                outcome = f"completed revision {revision} (verified)"
                entry.update(outcome=Outcome.RECOVERED, detail=outcome)
        if not (caddy_new and nginx_new) or failures:
            _restore(node, journal, live)
            outcome = f"restored the state before revision {revision}"
            if failures:
                error = "verification failed: " + "; ".join(failures)
                outcome += f" ({error})"
                entry.update(outcome=Outcome.ROLLED_BACK, error=f"verify: {error}")
            else:
                entry.update(outcome=Outcome.RECOVERED, detail=outcome)
    except (CaddyError, NginxError) as exc:
        raise RollbackError(
            f"an interrupted apply of {revision} could not be resolved: {exc}. The journal is kept in "
            f"{node.store.root / 'journal.json'}; fix the proxy and run the agent again"
        ) from None
    node.store.clear_journal()
    node.store.append_history(entry)
    return outcome


def _restore(node: Node, journal: Mapping[str, Any], live: LiveState) -> None:
    """Put the proxies back as the journal found them."""
    old_caddy = journal["oldCaddy"]
    if live.caddy.config != old_caddy:
        node.caddy.load(old_caddy)
    if bool(journal.get("nginxNeeded")) and node.nginx is not None:
        old_folder = journal.get("oldNginxFolder")
        node.nginx.deactivate(Path(old_folder) if old_folder else None)
        last = node.store.last_applied()
        listeners = (
            [_listener_from(x) for x in last.nginx_listeners]
            if last is not None and last.nginx_files == node.nginx.read_active()
            else []
        )
        node.nginx.reload_and_verify(listeners)
