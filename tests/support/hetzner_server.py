"""A protocol-level Hetzner Cloud DNS API server for tests (zones, RRSets, actions), spoken over real HTTP.

The real `hcloud` client talks to it (`Client(api_endpoint=server.endpoint)`):
Bearer token auth; zones listed with `name`/`label_selector` filters and
`meta.pagination` (hcloud pages with `per_page=50` and follows `next_page`);
RRSets with labels, `name`/`type`/`label_selector` filters, create/get/update
(labels)/delete and the record actions (`set_records`, `add_records`,
`remove_records`, `change_ttl`); every write answers with an action that stays
`running` for `action_polls` polls of `GET /zones/actions/{id}` (what
`wait_until_finished` calls); errors in Hetzner's shape
(`{"error": {"code", "message", "details"}}`: `unauthorized`, `not_found`,
`uniqueness_error`, `invalid_input`); a CNAME cannot share its name with
other records. Every response is checked against hcloud's own domain models
(exactly their `__api_properties__`, parsed with `from_dict`), every request
body against what hcloud sends; a mismatch is recorded in `state.errors`.

Changes are published to the loopback `AuthoritativeDns` servers given (the
zone's `authoritative_nameservers.assigned`), which may publish late.
`down` drops connections; `writes_allowed` lets N writes through and refuses
the rest with 503 `unavailable`; `refused` names writes to refuse once.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.dns_server import AuthoritativeDns
from tests.support.hetzner_checks import (
    CREATE_KEYS,
    TYPES,
    ApiError,
    check_response,
    selector_ok,
    valid_labels,
    valid_name,
    valid_values,
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HetznerState:
    def __init__(self, token: str, dns_servers: tuple[AuthoritativeDns, ...], action_polls: int) -> None:
        self.lock = threading.Lock()
        self.token = token
        self.dns_servers = dns_servers
        self.action_polls = action_polls
        self.zones: dict[int, dict[str, Any]] = {}
        self.rrsets: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.polls: dict[int, int] = {}
        self.next_id = 100
        self.writes: list[str] = []  # "METHOD path" of every write that took effect
        self.requests: list[str] = []
        self.errors: list[str] = []  # self-check failures: a test fails on any
        self.writes_allowed: int | None = None
        self.refused: set[str] = set()  # writes to refuse once with 503, named as in `writes` ("create app/A")

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_zone(self, name: str, ttl: int = 3600) -> dict[str, Any]:
        zone_id = self.new_id()
        zone = {
            "id": zone_id,
            "name": name,
            "created": _now(),
            "mode": "primary",
            "ttl": ttl,
            "labels": {},
            "protection": {"delete": False},
            "status": "ok",
            "record_count": 0,
            "registrar": "other",
            "primary_nameservers": [],
            "authoritative_nameservers": {
                "assigned": [s.address for s in self.dns_servers],
                "delegated": [],
                "delegation_last_check": None,
                "delegation_status": "unknown",
            },
        }
        self.zones[zone_id] = zone
        self.rrsets[zone_id] = {}
        for server in self.dns_servers:
            server.add_zone(name)
        nameservers = [f"ns{i}.hecate-test.invalid." for i in range(1, 1 + max(1, len(self.dns_servers)))]
        self.put_rrset(zone, "@", "SOA", 3600, [f"{nameservers[0]} hostmaster.{name}. 1 86400 10800 3600000 3600"], {})
        self.put_rrset(zone, "@", "NS", 3600, nameservers, {})
        return zone

    def put_rrset(
        self, zone: dict[str, Any], name: str, rtype: str, ttl: int | None, values: list[str], labels: dict[str, str]
    ) -> dict[str, Any]:
        rrset = {
            "id": f"{name}/{rtype}",
            "name": name,
            "type": rtype,
            "ttl": ttl,
            "labels": labels,
            "protection": {"change": False},
            "records": [{"value": v, "comment": None} for v in values],
            "zone": zone["id"],
        }
        self.rrsets[zone["id"]][(name, rtype)] = rrset
        zone["record_count"] = sum(len(r["records"]) for r in self.rrsets[zone["id"]].values())
        self.publish(zone, rrset)
        return rrset

    def publish(self, zone: dict[str, Any], rrset: dict[str, Any], removed: bool = False) -> None:
        if rrset["type"] in ("SOA", "NS"):
            return
        name = zone["name"] if rrset["name"] == "@" else f"{rrset['name']}.{zone['name']}"
        values = () if removed else tuple(r["value"] for r in rrset["records"])
        for server in self.dns_servers:
            server.publish(zone["name"], name, rrset["type"], rrset["ttl"] or zone["ttl"], values)

    def zone(self, id_or_name: str) -> dict[str, Any]:
        for zone in self.zones.values():
            if str(zone["id"]) == id_or_name or zone["name"] == id_or_name:
                return zone
        raise ApiError(404, "not_found", f"zone with ID or name {id_or_name!r} not found")

    def action(self, command: str, zone: dict[str, Any]) -> dict[str, Any]:
        action_id = self.new_id()
        action = {
            "id": action_id,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": [{"id": zone["id"], "type": "zone"}],
            "error": None,
        }
        self.actions[action_id] = action
        self.polls[action_id] = self.action_polls
        if self.action_polls <= 0:
            self.finish(action)
        return dict(action)

    def finish(self, action: dict[str, Any]) -> None:
        action.update(status="success", progress=100, finished=_now())

    def poll(self, action_id: int) -> dict[str, Any]:
        action = self.actions.get(action_id)
        if action is None:
            raise ApiError(404, "not_found", f"action with ID {action_id} not found")
        if action["status"] == "running":
            self.polls[action_id] -= 1
            if self.polls[action_id] < 0:
                self.finish(action)
        return action


class FakeHetzner(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str, dns_servers: tuple[AuthoritativeDns, ...] = (), *, action_polls: int = 1) -> None:
        self.state = HetznerState(token, dns_servers, action_polls)
        self.down = False
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def add_zone(self, name: str) -> None:
        with self.state.lock:
            self.state.add_zone(name)
        for server in self.state.dns_servers:
            server.flush()

    def add_rrset(
        self,
        zone: str,
        name: str,
        rtype: str,
        values: list[str],
        ttl: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """A record someone else made (set up before the test; published at once)."""
        with self.state.lock:
            self.state.put_rrset(self.state.zone(zone), name, rtype, ttl, values, dict(labels or {}))
        for server in self.state.dns_servers:
            server.flush()

    def rrset(self, zone: str, name: str, rtype: str) -> dict[str, Any] | None:
        with self.state.lock:
            return self.state.rrsets[self.state.zone(zone)["id"]].get((name, rtype))

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHetzner
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle waits for the client's delayed ACK (40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, status: int, payload: dict[str, Any] | None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        if self.server.down:
            self.close_connection = True
            self.connection.close()
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state = self.server.state
        with state.lock:
            state.requests.append(f"{self.command} {self.path}")
            try:
                if self.headers.get("Authorization") != f"Bearer {state.token}":
                    raise ApiError(401, "unauthorized", "unable to authenticate")
                body = json.loads(raw) if raw else {}
                segments = [unquote(s) for s in parts.path.split("/") if s]
                status, payload = handle(state, self.command, segments, query, body)
            except ApiError as exc:
                status, payload = exc.status, {"error": {"code": exc.code, "message": exc.message, "details": {}}}
            if payload is not None and status < 400:
                check_response(state.errors, payload)
        self._reply(status, payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def _page(query: dict[str, list[str]], items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    page = int(query.get("page", ["1"])[0])
    per_page = min(int(query.get("per_page", ["25"])[0]), 50)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    pagination = {
        "page": page,
        "per_page": per_page,
        "previous_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if page < last else None,
        "last_page": last,
        "total_entries": len(items),
    }
    return {key: chunk, "meta": {"pagination": pagination}}


def _allowed_write(state: HetznerState, what: str = "") -> None:
    if what in state.refused:
        state.refused.discard(what)  # once: a passing failure
        raise ApiError(503, "unavailable", "the service is temporarily unavailable")
    if state.writes_allowed is not None:
        if state.writes_allowed <= 0:
            raise ApiError(503, "unavailable", "the service is temporarily unavailable")
        state.writes_allowed -= 1


def _records(body: dict[str, Any], rtype: str) -> list[str]:
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise ApiError(400, "invalid_input", "invalid input in field 'records': at least one record is required")
    for record in records:
        if (
            not isinstance(record, dict)
            or set(record) - {"value", "comment"}
            or not isinstance(record.get("value"), str)
        ):
            raise ApiError(400, "invalid_input", f"invalid input in field 'records': {record!r}")
    values = [r["value"] for r in records]
    valid_values(rtype, values)
    return values


def _cname_clash(state: HetznerState, zone: dict[str, Any], name: str, rtype: str) -> None:
    others = [t for (n, t) in state.rrsets[zone["id"]] if n == name and t != rtype]
    if others and (rtype == "CNAME" or "CNAME" in others):
        raise ApiError(
            422, "invalid_input", f"a CNAME cannot coexist with other records at {name!r} (found {', '.join(others)})"
        )


def _rrsets(state: HetznerState, zone: dict[str, Any], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    items = sorted(state.rrsets[zone["id"]].values(), key=lambda r: (r["name"], r["type"]))
    if "name" in query:
        items = [r for r in items if r["name"] == query["name"][0]]
    if "type" in query:
        items = [r for r in items if r["type"] in query["type"]]
    return [r for r in items if selector_ok(query, r["labels"])]


def handle(
    state: HetznerState, method: str, segments: list[str], query: dict[str, list[str]], body: dict[str, Any]
) -> tuple[int, dict[str, Any] | None]:
    if segments[:1] != ["v1"]:
        raise ApiError(404, "not_found", "not found")
    path = segments[1:]
    if method == "GET" and len(path) == 3 and path[0] in ("zones", "actions") and path[-2] == "actions":
        return 200, {"action": state.poll(int(path[-1]))}
    if method == "GET" and len(path) == 2 and path[0] == "actions":
        return 200, {"action": state.poll(int(path[1]))}
    if path == ["zones"] and method == "GET":
        zones = sorted(state.zones.values(), key=lambda z: z["id"])
        if "name" in query:
            zones = [z for z in zones if z["name"] == query["name"][0]]
        return 200, _page(query, [z for z in zones if selector_ok(query, z["labels"])], "zones")
    if len(path) < 2 or path[0] != "zones":
        raise ApiError(404, "not_found", "not found")
    zone = state.zone(path[1])
    if len(path) == 2 and method == "GET":
        return 200, {"zone": zone}
    if path[2:] == ["rrsets"] and method == "GET":
        return 200, _page(query, _rrsets(state, zone, query), "rrsets")
    if path[2:] == ["rrsets"] and method == "POST":
        if set(body) - CREATE_KEYS:
            state.errors.append(f"create_rrset body has fields hcloud does not send: {sorted(set(body) - CREATE_KEYS)}")
        name, rtype = valid_name(body.get("name")), body.get("type")
        if rtype not in TYPES:
            raise ApiError(400, "invalid_input", f"invalid input in field 'type': {rtype!r}")
        values = _records(body, rtype)
        labels = valid_labels(body.get("labels", {}))
        if (name, rtype) in state.rrsets[zone["id"]]:
            raise ApiError(409, "uniqueness_error", f"RRSet {name}/{rtype} already exists")
        _cname_clash(state, zone, name, rtype)
        _allowed_write(state, f"create {name}/{rtype}")
        rrset = state.put_rrset(zone, name, rtype, body.get("ttl"), values, labels)
        state.writes.append(f"create {name}/{rtype}")
        return 201, {"rrset": rrset, "action": state.action("create_rrset", zone)}
    if len(path) < 5 or path[2] != "rrsets":
        raise ApiError(404, "not_found", "not found")
    key = (path[3], path[4])
    rrset = state.rrsets[zone["id"]].get(key)
    if rrset is None:
        raise ApiError(404, "not_found", f"RRSet {path[3]}/{path[4]} not found")
    if len(path) == 5:
        if method == "GET":
            return 200, {"rrset": rrset}
        if method == "PUT":
            if set(body) - {"labels"}:
                state.errors.append(f"update_rrset body has fields hcloud does not send: {sorted(body)}")
            _allowed_write(state, f"labels {path[3]}/{path[4]}")
            rrset["labels"] = valid_labels(body.get("labels", rrset["labels"]))
            state.writes.append(f"labels {path[3]}/{path[4]}")
            return 200, {"rrset": rrset}
        if method == "DELETE":
            _allowed_write(state, f"delete {path[3]}/{path[4]}")
            del state.rrsets[zone["id"]][key]
            state.publish(zone, rrset, removed=True)
            state.writes.append(f"delete {path[3]}/{path[4]}")
            return 201, {"action": state.action("delete_rrset", zone)}
    if len(path) == 7 and path[5] == "actions" and method == "POST":
        command = path[6]
        if command == "change_ttl":
            if set(body) != {"ttl"}:
                state.errors.append(f"change_ttl body {sorted(body)} is not what hcloud sends")
            _allowed_write(state, f"{command} {path[3]}/{path[4]}")
            rrset["ttl"] = body.get("ttl")
        elif command in ("set_records", "add_records", "remove_records"):
            values = (
                _records(body, rrset["type"]) if command != "remove_records" else [r["value"] for r in body["records"]]
            )
            current = [r["value"] for r in rrset["records"]]
            if command == "add_records":
                values = current + [v for v in values if v not in current]
            elif command == "remove_records":
                values = [v for v in current if v not in values]
            valid_values(rrset["type"], values)
            _allowed_write(state, f"{command} {path[3]}/{path[4]}")
            rrset["records"] = [{"value": v, "comment": None} for v in values]
            if "ttl" in body:
                rrset["ttl"] = body["ttl"]
        else:
            raise ApiError(404, "not_found", f"unknown action {command!r}")
        state.publish(zone, rrset)
        state.writes.append(f"{command} {path[3]}/{path[4]}")
        return 201, {"action": state.action(f"{command}", zone)}
    raise ApiError(404, "not_found", "not found")
