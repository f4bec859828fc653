"""A protocol-level Authentik API server for tests: the endpoints the agent uses, over real HTTP.

No Authentik can be installed here, so the real `authentik-client` talks to
this instead. Every request body is validated with the client's own request
models (plus a check that names no field the model lacks: the real API would
ignore it silently, which is a bug in the caller), and every response is built
to pass the client's response models (`Model.from_dict`), so a field the real
API would reject or not send fails the test. Emulated behaviour: token auth
(401), exact-match and `__iexact` filters (undeclared filters are ignored, as in
Authentik), page-number pagination, uniqueness with Authentik's error shape
(`{"field": ["... already exists."]}`), integer provider ids vs UUIDs elsewhere,
one provider per application, the outpost's provider list replaced on PATCH,
`set_oauth_defaults` (4 scope mappings re-added, redirect_uris recomputed),
a provider PATCH without `mode` validated as mode `proxy`, applications hidden
from a plain list unless `superuser_full_list=true`, delete cascades, and
switches for "down" (503) and "fail after N writes".
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import authentik_client as ak
import pydantic

EMBEDDED = "goauthentik.io/outposts/embedded"
DEFAULT_SCOPES = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"goauthentik.io/providers/oauth2/scope-{s}"))
                  for s in ("openid", "email", "profile", "entitlements")]
DEFAULT_FLOWS = (("default-authentication-flow", "authentication", "none"),
                 ("default-provider-authorization-implicit-consent", "authorization", "require_authenticated"),
                 ("default-provider-invalidation-flow", "invalidation", "none"))


@dataclass(frozen=True)
class Collection:
    kind: str
    path: str
    create: type[pydantic.BaseModel] | None
    patch: type[pydantic.BaseModel]
    response: type[pydantic.BaseModel]
    listing: type[pydantic.BaseModel]
    lookup: str = "pk"  # the field the item path names
    filters: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()


def _stage_defaults(**extra: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(extra.items())


COLLECTIONS = (
    Collection("flow", "/flows/instances/", ak.FlowRequest, ak.PatchedFlowRequest, ak.Flow, ak.PaginatedFlowList,
               "slug", ("slug", "name", "designation"), (("slug",),),
               (("policy_engine_mode", "any"), ("compatibility_mode", False), ("layout", "stacked"),
                ("denied_action", "message_continue"), ("authentication", "none"), ("background", None))),
    Collection("flow_binding", "/flows/bindings/", ak.FlowStageBindingRequest, ak.PatchedFlowStageBindingRequest,
               ak.FlowStageBinding, ak.PaginatedFlowStageBindingList, "pk", ("target", "stage", "order"),
               (("target", "stage", "order"),),
               (("evaluate_on_plan", False), ("re_evaluate_policies", True), ("policy_engine_mode", "any"),
                ("invalid_response_action", "retry"))),
    Collection("validate_stage", "/stages/authenticator/validate/", ak.AuthenticatorValidateStageRequest,
               ak.PatchedAuthenticatorValidateStageRequest, ak.AuthenticatorValidateStage,
               ak.PaginatedAuthenticatorValidateStageList, "pk", ("name",), (("name",),),
               _stage_defaults(not_configured_action="skip", device_classes=["static", "totp", "webauthn"],
                               configuration_stages=[], last_auth_threshold="seconds=0",
                               webauthn_user_verification="preferred", webauthn_hints=[],
                               webauthn_allowed_device_types=[])),
    Collection("login_stage", "/stages/user_login/", ak.UserLoginStageRequest, ak.PatchedUserLoginStageRequest,
               ak.UserLoginStage, ak.PaginatedUserLoginStageList, "pk", ("name",), (("name",),),
               _stage_defaults(session_duration="seconds=0", terminate_other_sessions=False,
                               remember_me_offset="seconds=0", network_binding="no_binding",
                               geoip_binding="no_binding", remember_device="days=30")),
    Collection("policy", "/policies/expression/", ak.ExpressionPolicyRequest, ak.PatchedExpressionPolicyRequest,
               ak.ExpressionPolicy, ak.PaginatedExpressionPolicyList, "pk", ("name",), (("name",),),
               (("execution_logging", False),)),
    Collection("policy_binding", "/policies/bindings/", ak.PolicyBindingRequest, ak.PatchedPolicyBindingRequest,
               ak.PolicyBinding, ak.PaginatedPolicyBindingList, "pk", ("target", "policy", "enabled", "order"),
               (("policy", "target", "order"),),
               (("policy", None), ("group", None), ("user", None), ("negate", False), ("enabled", True),
                ("timeout", 30), ("failure_result", False))),
    Collection("provider", "/providers/proxy/", ak.ProxyProviderRequest, ak.PatchedProxyProviderRequest,
               ak.ProxyProvider, ak.PaginatedProxyProviderList, "pk",
               ("name__iexact", "external_host__iexact", "mode__iexact"), (("name",),),
               (("authentication_flow", None), ("property_mappings", []), ("internal_host", ""),
                ("internal_host_ssl_validation", True), ("certificate", None), ("skip_path_regex", ""),
                ("basic_auth_enabled", False), ("basic_auth_password_attribute", ""),
                ("basic_auth_user_attribute", ""), ("mode", "proxy"), ("intercept_header_auth", True),
                ("cookie_domain", ""), ("jwt_federation_sources", []), ("jwt_federation_providers", []),
                ("access_token_validity", "hours=1"), ("refresh_token_validity", "days=30"))),
    Collection("application", "/core/applications/", ak.ApplicationRequest, ak.PatchedApplicationRequest,
               ak.Application, ak.PaginatedApplicationList, "slug", ("slug", "name", "meta_publisher", "group"),
               (("slug",), ("provider",)),
               (("provider", None), ("backchannel_providers", []), ("open_in_new_tab", False),
                ("meta_launch_url", ""), ("meta_icon", None), ("meta_description", ""), ("meta_publisher", ""),
                ("policy_engine_mode", "any"), ("group", ""), ("meta_hide", False))),
    Collection("outpost", "/outposts/instances/", None, ak.PatchedOutpostRequest, ak.Outpost,
               ak.PaginatedOutpostList, "pk", ("name__iexact", "managed__iexact"), (("name",),)),
)
UNIQUE_NOUN = {"provider": "provider", "application": "Application", "flow": "flow", "policy": "policy",
               "validate_stage": "stage", "login_stage": "stage", "outpost": "outpost"}


class BadRequestError(Exception):
    def __init__(self, payload: dict[str, list[str]]) -> None:
        super().__init__(json.dumps(payload))
        self.payload = payload


class AuthentikState:
    def __init__(self, token: str) -> None:
        self.lock = threading.Lock()
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {c.kind: {} for c in COLLECTIONS}
        self.next_provider = 1
        self.requests: list[tuple[str, str]] = []
        self.tokens = {token}  # more with FakeAuthentik.add_token: one per agent, to tell their writes apart
        self.writes: list[tuple[str, str, str]] = []  # (token, method, path) of every write request
        self.problems: list[str] = []  # invalid requests/responses: a test fixture asserts none
        for slug, designation, authentication in DEFAULT_FLOWS:
            self.add("flow", {"name": slug.replace("-", " ").title(), "slug": slug, "title": slug,
                              "designation": designation, "authentication": authentication})
        self.add("outpost", {"name": "authentik Embedded Outpost", "type": "proxy", "providers": [],
                             "config": {}, "managed": EMBEDDED, "service_connection": None})

    def add(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        spec = next(c for c in COLLECTIONS if c.kind == kind)
        obj = {**dict(spec.defaults), **fields}
        if kind == "provider":
            obj["pk"] = self.next_provider
            self.next_provider += 1
            obj["property_mappings"] = sorted(set(obj["property_mappings"]) | set(DEFAULT_SCOPES))  # set_oauth_defaults
            obj["client_id"] = uuid.uuid4().hex
        else:
            obj["pk"] = str(uuid.uuid4())
        self.objects[kind][str(obj["pk"])] = obj
        return obj

    def find(self, kind: str, field: str, value: Any) -> dict[str, Any] | None:
        return next((o for o in self.objects[kind].values() if str(o.get(field)) == str(value)), None)

    def pbm(self, pk: Any) -> dict[str, Any] | None:
        return self.objects["application"].get(str(pk)) or self.objects["flow"].get(str(pk))


def _provider_summary(state: AuthentikState, p: dict[str, Any]) -> dict[str, Any]:
    app = state.find("application", "provider", p["pk"])
    return {"pk": p["pk"], "name": p["name"], "authentication_flow": p["authentication_flow"],
            "authorization_flow": p["authorization_flow"], "invalidation_flow": p["invalidation_flow"],
            "property_mappings": p["property_mappings"], "component": "ak-provider-proxy-form",
            "assigned_application_slug": app["slug"] if app else None,
            "assigned_application_name": app["name"] if app else None,
            "assigned_backchannel_application_slug": None, "assigned_backchannel_application_name": None,
            "verbose_name": "Proxy Provider", "verbose_name_plural": "Proxy Providers",
            "meta_model_name": "authentik_providers_proxy.proxyprovider"}


def _flow_set(state: AuthentikState, stage_pk: str) -> list[dict[str, Any]]:
    flows = [state.objects["flow"][b["target"]] for b in state.objects["flow_binding"].values()
             if b["stage"] == stage_pk and b["target"] in state.objects["flow"]]
    return [{k: f[k] for k in ("pk", "name", "slug", "title", "designation", "policy_engine_mode",
                               "compatibility_mode", "layout", "denied_action")}
            | {"policybindingmodel_ptr_id": f["pk"], "background_url": "/static/flow.jpg",
               "export_url": f"/api/v3/flows/instances/{f['slug']}/export/"} for f in flows]


def _stage_common(state: AuthentikState, o: dict[str, Any], component: str, verbose: str, model: str) -> dict[str, Any]:
    return {"component": component, "verbose_name": verbose, "verbose_name_plural": verbose + "s",
            "meta_model_name": model, "flow_set": _flow_set(state, o["pk"])}


def render(state: AuthentikState, kind: str, o: dict[str, Any]) -> dict[str, Any]:
    """The full response for one object, as Authentik's serializer would send it."""
    if kind == "flow":
        stages = [b["stage"] for b in state.objects["flow_binding"].values() if b["target"] == o["pk"]]
        return o | {"policybindingmodel_ptr_id": o["pk"], "background_url": "/static/flow.jpg",
                    "background_themed_urls": None, "stages": stages, "policies": [], "cache_count": 0,
                    "export_url": f"/api/v3/flows/instances/{o['slug']}/export/"}
    if kind == "flow_binding":
        stage = state.objects["validate_stage"].get(o["stage"]) or state.objects["login_stage"][o["stage"]]
        stage_obj = {"pk": stage["pk"], "name": stage["name"], "component": "ak-stage-form", "verbose_name": "Stage",
                     "verbose_name_plural": "Stages", "meta_model_name": "authentik_flows.stage",
                     "flow_set": _flow_set(state, stage["pk"])}
        return o | {"policybindingmodel_ptr_id": o["pk"], "stage_obj": stage_obj}
    if kind == "validate_stage":
        return o | _stage_common(state, o, "ak-stage-authenticator-validate-form", "Authenticator Validation Stage",
                                 "authentik_stages_authenticator_validate.authenticatorvalidatestage") | {
            "webauthn_allowed_device_types_obj": []}
    if kind == "login_stage":
        return o | _stage_common(state, o, "ak-stage-user-login-form", "User Login Stage",
                                 "authentik_stages_user_login.userloginstage")
    if kind == "policy":
        bound = sum(1 for b in state.objects["policy_binding"].values() if b["policy"] == o["pk"])
        return o | {"component": "ak-policy-expression-form", "verbose_name": "Expression Policy",
                    "verbose_name_plural": "Expression Policies", "bound_to": bound,
                    "meta_model_name": "authentik_policies_expression.expressionpolicy"}
    if kind == "policy_binding":
        policy = state.objects["policy"].get(str(o["policy"]))
        policy_obj = None if policy is None else {k: v for k, v in render(state, "policy", policy).items()
                                                  if k != "expression"}
        return o | {"policy_obj": policy_obj, "group_obj": None, "user_obj": None, "expires": None,
                    "expiring": False}
    if kind == "provider":
        outposts = [x["name"] for x in state.objects["outpost"].values() if o["pk"] in x["providers"]]
        callback = o["external_host"].rstrip("/") + "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
        return o | _provider_summary(state, o) | {
            "redirect_uris": [{"matching_mode": "strict", "url": callback}], "outpost_set": outposts}
    if kind == "application":
        provider = state.objects["provider"].get(str(o["provider"]))
        return o | {"pbm_uuid": o["pk"], "provider_obj": provider and _provider_summary(state, provider),
                    "backchannel_providers_obj": [], "meta_icon_url": None, "meta_icon_themed_urls": None,
                    "launch_url": o["meta_launch_url"] or (provider["external_host"] if provider else None)}
    return o | {"providers_obj": [_provider_summary(state, state.objects["provider"][str(p)])
                                  for p in o["providers"]],
                "service_connection_obj": None, "refresh_interval_s": 150,
                "token_identifier": f"ak-outpost-{o['pk']}-api"}


class FakeAuthentik(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str = "ak-test-token-0123456789abcdef") -> None:
        self.state = AuthentikState(token)
        self.down = False  # every request answers 503
        self.fail_after_writes: int | None = None  # after this many writes, the next `failures` writes answer 503
        self.failures = 1
        self.max_page_size = 100
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def token(self) -> str:
        return self.state.token

    def add_token(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens.add(token)

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [render(self.state, kind, o) for o in self.state.objects[kind].values()]

    def embedded(self) -> dict[str, Any]:
        with self.state.lock:
            outpost = self.state.find("outpost", "managed", EMBEDDED)
            assert outpost is not None
            return outpost

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeAuthentik

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server, state = self.server, self.server.state
        if server.down:
            self._reply(503, {"detail": "Service Unavailable"})
            return
        given = str(self.headers.get("Authorization") or "")
        token = given.removeprefix("Bearer ")
        if not given.startswith("Bearer ") or token not in state.tokens:
            # Authentik's API authentication sends a WWW-Authenticate header, so DRF answers 401 (not 403).
            detail = "Token invalid/expired" if self.headers.get("Authorization") else "Authentication credentials " \
                "were not provided."
            self._reply(401, {"detail": detail, "code": "authentication_failed"})
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with state.lock:
            state.requests.append((self.command, url.path))
            if self.command != "GET":
                state.writes.append((token, self.command, url.path))
            if self.command != "GET":
                if server.fail_after_writes is not None and server.fail_after_writes <= 0:
                    server.failures -= 1
                    if server.failures <= 0:
                        server.fail_after_writes = None
                    self._reply(503, {"detail": "Service Unavailable"})
                    return
                if server.fail_after_writes is not None:
                    server.fail_after_writes -= 1
            try:
                status, payload = self._route(url.path, query, json.loads(raw) if raw else None)
            except BadRequestError as error:
                status, payload = 400, error.payload
            except Exception as error:  # a bug in this server or a response the client's models reject
                state.problems.append(f"{self.command} {url.path}: {type(error).__name__}: {error}")
                status, payload = 500, {"detail": "test server error"}
        self._reply(status, payload)

    def _route(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if not path.startswith("/api/v3/"):
            return 404, {"detail": "Not found."}
        rest = path[len("/api/v3"):]
        for spec in COLLECTIONS:
            if rest == spec.path:
                if self.command == "GET":
                    return 200, self._list(spec, query)
                if self.command == "POST" and spec.create is not None:
                    return 201, self._write(spec, None, body)
                return 405, {"detail": f'Method "{self.command}" not allowed.'}
            if rest.startswith(spec.path) and rest.count("/") == spec.path.count("/") + 1:
                ident = rest[len(spec.path):-1]
                obj = self.server.state.find(spec.kind, spec.lookup, ident)
                if obj is None:
                    return 404, {"detail": "No " + spec.response.__name__ + " matches the given query."}
                if self.command == "GET":
                    return 200, self._checked(spec, obj)
                if self.command == "PATCH":
                    return 200, self._write(spec, obj, body)
                if self.command == "DELETE" and spec.create is not None:
                    self._delete(spec.kind, obj)
                    return 204, None
                return 405, {"detail": f'Method "{self.command}" not allowed.'}
        return 404, {"detail": "Not found."}

    def _checked(self, spec: Collection, obj: dict[str, Any]) -> dict[str, Any]:
        rendered = render(self.server.state, spec.kind, obj)
        spec.response.from_dict(rendered)  # type: ignore[attr-defined]
        return rendered

    def _list(self, spec: Collection, query: dict[str, str]) -> dict[str, Any]:
        state = self.server.state
        items = list(state.objects[spec.kind].values())
        for name in spec.filters:
            if name in query:
                field, _, op = name.partition("__")
                wanted = query[name]
                items = [o for o in items if (str(o.get(field)).lower() == wanted.lower() if op == "iexact"
                                              else _qs(o.get(field)) == wanted)]
        if spec.kind == "application" and query.get("superuser_full_list") != "true":
            bound = {b["target"] for b in state.objects["policy_binding"].values()}
            items = [o for o in items if o["pk"] not in bound]  # the API user would not pass their policies
        size = min(int(query.get("page_size", 100)), self.server.max_page_size)
        page = int(query.get("page", 1))
        pages = max(1, -(-len(items) // size))
        if page < 1 or page > pages:
            raise BadRequestError({"detail": ["Invalid page."]})
        chunk = items[(page - 1) * size : page * size]
        payload = {"pagination": {"next": page + 1 if page < pages else 0, "previous": page - 1,
                                  "count": len(items), "current": page, "total_pages": pages,
                                  "start_index": (page - 1) * size + 1 if chunk else 0,
                                  "end_index": (page - 1) * size + len(chunk)},
                   "results": [self._checked(spec, o) for o in chunk], "autocomplete": {}}
        spec.listing.from_dict(payload)  # type: ignore[attr-defined]
        return payload

    def _write(self, spec: Collection, current: dict[str, Any] | None, body: Any) -> dict[str, Any]:
        state = self.server.state
        model = spec.patch if current is not None else spec.create
        assert model is not None
        if not isinstance(body, dict):
            raise BadRequestError({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        unknown = sorted(set(body) - set(model.model_fields))
        if unknown:
            state.problems.append(f"{spec.kind}: fields {unknown} are not in {model.__name__} (Authentik ignores them)")
            raise BadRequestError({name: ["Unknown field."] for name in unknown})
        try:
            model.from_dict(body)  # type: ignore[attr-defined]
        except pydantic.ValidationError as error:
            raise BadRequestError({str(e["loc"][0]) if e["loc"] else "non_field_errors": [e["msg"]]
                                     for e in error.errors()}) from None
        merged = {**(current or {}), **body}
        _validate(state, spec, merged, body, current)
        if current is None:
            obj = state.add(spec.kind, merged)
        else:
            current.update(body)
            obj = current
            if spec.kind == "provider":
                obj["property_mappings"] = sorted(set(obj["property_mappings"]) | set(DEFAULT_SCOPES))
        return self._checked(spec, obj)

    def _delete(self, kind: str, obj: dict[str, Any]) -> None:
        state = self.server.state
        pk = obj["pk"]
        state.objects[kind].pop(str(pk), None)
        cascades: dict[str, Callable[[dict[str, Any]], bool]] = {}
        if kind == "provider":
            for app in state.objects["application"].values():
                if app["provider"] == pk:
                    app["provider"] = None
            for outpost in state.objects["outpost"].values():
                outpost["providers"] = [p for p in outpost["providers"] if p != pk]
        elif kind == "application":
            cascades["policy_binding"] = lambda b: b["target"] == pk
        elif kind == "flow":
            cascades["flow_binding"] = lambda b: b["target"] == pk
            cascades["provider"] = lambda p: pk in (p["authorization_flow"], p["invalidation_flow"])
            for p in state.objects["provider"].values():
                if p["authentication_flow"] == pk:
                    p["authentication_flow"] = None
        elif kind in ("validate_stage", "login_stage"):
            cascades["flow_binding"] = lambda b: b["stage"] == pk
        elif kind == "policy":
            cascades["policy_binding"] = lambda b: b["policy"] == pk
        for child_kind, doomed in cascades.items():
            for child in [o for o in state.objects[child_kind].values() if doomed(o)]:
                self._delete(child_kind, child)


def _qs(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _validate(state: AuthentikState, spec: Collection, merged: dict[str, Any], body: dict[str, Any],
              current: dict[str, Any] | None) -> None:
    kind = spec.kind
    for fields in spec.unique:
        clash = [o for o in state.objects[kind].values() if o is not current
                 and all(o.get(f) is not None and str(o.get(f)) == str(merged.get(f)) for f in fields)]
        if kind in ("validate_stage", "login_stage"):  # Stage.name is unique across every stage type
            other = "login_stage" if kind == "validate_stage" else "validate_stage"
            clash += [o for o in state.objects[other].values() if o["name"] == merged.get("name")]
        if clash and len(fields) == 1:
            raise BadRequestError({fields[0]: [f"{UNIQUE_NOUN[kind]} with this {fields[0]} already exists."]})
        if clash:
            raise BadRequestError({"non_field_errors": [f"The fields {', '.join(fields)} must make a unique set."]})

    def exists(field: str, found: Any) -> None:
        if merged.get(field) is not None and not found:
            raise BadRequestError({field: [f'Invalid pk "{merged[field]}" - object does not exist.']})

    if kind == "provider":
        for field in ("authorization_flow", "invalidation_flow", "authentication_flow"):
            exists(field, state.objects["flow"].get(str(merged.get(field))))
        if body.get("mode", "proxy") == "proxy" and not body.get("internal_host"):  # the serializer's default mode
            raise BadRequestError({"internal_host": ["Internal host cannot be empty when forward auth is disabled."]})
    elif kind == "application":
        exists("provider", state.objects["provider"].get(str(merged.get("provider"))))
    elif kind in ("flow_binding", "policy_binding"):
        exists("target", state.pbm(merged.get("target")))
        if kind == "flow_binding":
            stage = merged.get("stage")
            exists("stage", state.objects["validate_stage"].get(str(stage)) or state.objects["login_stage"].get(
                str(stage)))
        else:
            exists("policy", state.objects["policy"].get(str(merged.get("policy"))))
            if sum(merged.get(f) is not None for f in ("policy", "group", "user")) != 1:
                raise BadRequestError({"non_field_errors": ["Only one of 'policy', 'group' or 'user' can be set."]})
    elif kind == "outpost":
        for pk in merged.get("providers", []):
            if str(pk) not in state.objects["provider"]:
                raise BadRequestError({"providers": [f'Invalid pk "{pk}" - object does not exist.']})


_Handler.do_GET = _Handler._handle  # type: ignore[attr-defined]
_Handler.do_POST = _Handler._handle  # type: ignore[attr-defined]
_Handler.do_PATCH = _Handler._handle  # type: ignore[attr-defined]
_Handler.do_DELETE = _Handler._handle  # type: ignore[attr-defined]
