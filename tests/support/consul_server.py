"""A small Consul HTTP API server for tests: the subset the agent uses, spoken over real HTTP.

No licensed Consul build can be installed here, so the real `py-consul` client
talks to this instead: KV with ModifyIndex, `?cas=` (put and delete),
`?acquire=`/`?release=`, `?recurse`, blocking reads with `?index=`/`?wait=`; sessions with a TTL (expired sessions are invalidated and, with
behavior `delete`, take their keys with them), renew and destroy; agent
service registration with a TTL check and `check/pass`. Consul's semantics are
followed where the agent depends on them; everything else answers 404.

Blocking reads follow Consul's index rules, because the fleet's request counts
depend on them: a key answers with its ModifyIndex, a prefix with the highest
ModifyIndex under it (deleted keys count through tombstones), and only when
nothing under the key or prefix ever existed with the whole KV table's index (so
a watch on a missing key wakes on any KV write, as Consul's may). `requests`
counts every request; `hold` lets a test freeze blocking reads that would
answer, to write something while a node sits in one.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def _seconds(ttl: str) -> float:
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if ttl.endswith(suffix):
            return float(ttl[: -len(suffix)]) * factor
    return float(ttl)


class ConsulState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index = 1
        self.kv: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.paths: dict[str, int] = {}  # requests per endpoint kind ("kv GET", "session/renew", ...)
        self.tombstones: dict[str, int] = {}  # deleted key -> the index of its deletion
        self.blocked = 0  # blocking reads waiting right now
        self.writes: list[tuple[float, str, bytes]] = []  # every KV write that took effect, in order
        self.changed = threading.Condition(self.lock)

    def tick(self) -> int:
        self.index += 1
        self.changed.notify_all()  # wakes blocking queries (the caller holds the lock)
        return self.index

    def expire(self) -> None:
        now = time.monotonic()
        for sid, session in list(self.sessions.items()):
            if session["expires"] is not None and now > session["expires"]:
                self.invalidate(sid)
        for check in self.checks.values():
            if check["deadline"] is not None and now > check["deadline"]:
                check["Status"] = "critical"

    def invalidate(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        for key, entry in list(self.kv.items()):
            if entry.get("Session") == sid:
                if session["Behavior"] == "delete":
                    del self.kv[key]
                    self.tombstones[key] = self.tick()
                else:
                    entry.pop("Session", None)
                    entry["ModifyIndex"] = self.tick()


    def delete(self, key: str) -> None:
        if self.kv.pop(key, None) is not None:
            self.tombstones[key] = self.tick()

    def key_index(self, key: str, recurse: bool) -> int:
        """The X-Consul-Index of a read, as Consul computes it (see the module docstring)."""
        if recurse:
            found = [e["ModifyIndex"] for k, e in self.kv.items() if k.startswith(key)]
            found += [i for k, i in self.tombstones.items() if k.startswith(key)]
        else:
            found = [self.kv[key]["ModifyIndex"]] if key in self.kv else []
            found += [self.tombstones[key]] if key in self.tombstones else []
        return max(found) if found else self.index


class FakeConsul(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a fleet connects at once; the default backlog of 5 refuses some

    def __init__(self) -> None:
        self.state = ConsulState()
        self.down = False
        self.hold = threading.Event()  # set (freeze): blocking reads do not answer until thaw()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = threading.Event()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        """Sessions expire with time, as in Consul, not only when a request comes in."""
        while not self.stopped.wait(0.2):
            with self.state.lock:
                self.state.expire()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def freeze(self) -> None:
        """Blocking reads stay blocked (even past a change) until `thaw`: a test writes in between."""
        self.hold.set()

    def thaw(self) -> None:
        with self.state.lock:
            self.hold.clear()
            self.state.changed.notify_all()

    def wait_blocked(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until `count` blocking reads are waiting (bounded); True if they are."""
        with self.state.lock:
            return self.state.changed.wait_for(lambda: self.state.blocked >= count, timeout=timeout)

    def close(self) -> None:
        self.stopped.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeConsul

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any, index: int | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if index is not None:
            self.send_header("X-Consul-Index", str(index))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        if self.server.down:
            self.close_connection = True
            self.connection.close()  # as if nothing were listening
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        expected = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(expected)
        if len(body) < expected:
            # The client died mid-request (the tests SIGKILL agents): like Consul, never act on a torn body.
            self.close_connection = True
            return
        state = self.server.state
        with state.lock:
            state.requests += 1
            path = unquote(parts.path)
            kind = f"kv {self.command}" if path.startswith("/v1/kv/") else "/".join(path.split("/")[2:4])
            state.paths[kind] = state.paths.get(kind, 0) + 1
            state.expire()
            if path.startswith("/v1/kv/"):
                self._kv(state, path[len("/v1/kv/") :], query, body)
            elif path == "/v1/session/create":
                self._session_create(state, body)
            elif path.startswith("/v1/session/renew/"):
                sid = path.rsplit("/", 1)[1]
                session = state.sessions.get(sid)
                if session is None:
                    self._reply(404, f"Session id '{sid}' not found")
                    return
                session["expires"] = time.monotonic() + session["ttl"] if session["ttl"] else None
                self._reply(200, [self._session_view(sid, session)])
            elif path.startswith("/v1/session/destroy/"):
                state.invalidate(path.rsplit("/", 1)[1])
                self._reply(200, True)
            elif path == "/v1/agent/service/register":
                # Consul reads these keys case-insensitively (py-consul sends them lower-case).
                service = {k.lower(): v for k, v in json.loads(body).items()}
                service_id = service.get("id") or service["name"]
                state.services[service_id] = service
                checks = list(service.get("checks") or []) + ([service["check"]] if service.get("check") else [])
                for check in ({k.lower(): v for k, v in c.items()} for c in checks):
                    if "ttl" in check:
                        check_id = check.get("checkid") or f"service:{service_id}"
                        state.checks[check_id] = {"CheckID": check_id, "Status": "critical", "ttl": _seconds(check["ttl"]),
                                                  "deadline": None, "ServiceID": service_id}
                self._reply(200, None)
            elif path.startswith("/v1/agent/service/deregister/"):
                service_id = path.rsplit("/", 1)[1]
                state.services.pop(service_id, None)
                state.checks.pop(f"service:{service_id}", None)
                self._reply(200, None)
            elif path.startswith("/v1/agent/check/pass/"):
                check = state.checks.get(path.rsplit("/", 1)[1])
                if check is None:
                    self._reply(404, "unknown check")
                    return
                check["Status"] = "passing"
                check["deadline"] = time.monotonic() + check["ttl"]
                self._reply(200, None)
            elif path == "/v1/agent/checks":
                self._reply(200, {k: {"CheckID": k, "Status": v["Status"], "ServiceID": v["ServiceID"]}
                                  for k, v in state.checks.items()})
            else:
                self._reply(404, "not implemented by the test server")

    def _session_view(self, sid: str, session: dict[str, Any]) -> dict[str, Any]:
        return {"ID": sid, "Name": session["Name"], "Behavior": session["Behavior"], "TTL": f"{session['ttl']}s"}

    def _session_create(self, state: ConsulState, body: bytes) -> None:
        spec = {k.lower(): v for k, v in json.loads(body or b"{}").items()}
        sid = str(uuid.uuid4())
        ttl = _seconds(spec["ttl"]) if spec.get("ttl") else 0.0
        state.sessions[sid] = {"Name": spec.get("name", ""), "Behavior": spec.get("behavior", "release"),
                               "ttl": ttl, "expires": time.monotonic() + ttl if ttl else None}
        self._reply(200, {"ID": sid})

    def _kv(self, state: ConsulState, key: str, query: dict[str, str], body: bytes) -> None:
        if self.command == "GET":
            recurse = "recurse" in query
            if "index" in query:
                # A blocking query: answer when the key's (or prefix's) index passed `index`, or when
                # `wait` runs out.
                wait = min(_seconds(query.get("wait", "5m")), 600.0)
                since = int(query["index"])
                state.blocked += 1
                state.changed.notify_all()  # for wait_blocked
                state.changed.wait_for(
                    lambda: state.key_index(key, recurse) > since and not self.server.hold.is_set(), timeout=wait
                )
                state.blocked -= 1
                state.expire()
            if recurse:
                found = [e for k, e in sorted(state.kv.items()) if k.startswith(key)]
                self._reply(200 if found else 404, found or None, state.key_index(key, True))
                return
            entry = state.kv.get(key)
            self._reply(200 if entry else 404, [entry] if entry else None, state.key_index(key, False))
            return
        if self.command == "DELETE" and "recurse" in query:
            for existing_key in [k for k in state.kv if k.startswith(key)]:
                state.delete(existing_key)
            state.tick()
            self._reply(200, True)
            return
        if self.command == "DELETE":
            current = state.kv.get(key)
            if "cas" in query and int(query["cas"]) != (current["ModifyIndex"] if current else 0):
                self._reply(200, False)
                return
            state.delete(key)
            state.tick()
            self._reply(200, True)
            return
        existing = state.kv.get(key)
        if "cas" in query and int(query["cas"]) != (existing["ModifyIndex"] if existing else 0):
            self._reply(200, False)
            return
        if "acquire" in query:
            sid = query["acquire"]
            if sid not in state.sessions or (existing and existing.get("Session") not in (None, sid)):
                self._reply(200, False)
                return
        if "release" in query and existing and existing.get("Session") == query["release"]:
            existing.pop("Session", None)
        index = state.tick()
        state.tombstones.pop(key, None)
        entry = {"Key": key, "Value": base64.b64encode(body).decode(), "Flags": int(query.get("flags", 0)),
                 "CreateIndex": existing["CreateIndex"] if existing else index, "ModifyIndex": index,
                 "LockIndex": (existing or {}).get("LockIndex", 0)}
        if "acquire" in query:
            entry["Session"] = query["acquire"]
            entry["LockIndex"] += 1
        elif existing and existing.get("Session") and "release" not in query:
            entry["Session"] = existing["Session"]
        state.kv[key] = entry
        state.writes.append((time.monotonic(), key, body))
        self._reply(200, True)

    do_GET = do_PUT = do_DELETE = do_POST = _handle
