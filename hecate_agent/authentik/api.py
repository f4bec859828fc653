"""Per-kind Authentik API calls through authentik-client, and the one place errors are mapped.

Each kind of object the agent owns has: how to list all of them (following
`pagination.next`, a page number, 0 when there is none), how to turn one into
a `LiveObject` (pks back into `Ref`s), and how to create, patch and delete it.
Request bodies are built with the client's own models from only the fields we
set (`model_validate`, not `from_dict`, which would send every unset nullable
field as null and wipe it on PATCH).
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import authentik_client as ak
import pydantic
import urllib3
from authentik_client.exceptions import ApiException, OpenApiException

from hecate_agent import redaction
from hecate_agent.authentik.desired import Ref
from hecate_agent.authentik.plan import LiveObject

MAX_PAGES = 1000
PAGE_SIZE = 100


class AuthentikError(Exception):
    """An Authentik call failed; the message says what, where and what to do, and never holds the token."""


@dataclass
class Apis:
    core: ak.CoreApi
    flows: ak.FlowsApi
    stages: ak.StagesApi
    policies: ak.PoliciesApi
    providers: ak.ProvidersApi
    outposts: ak.OutpostsApi
    timeout: float
    token: str

    @classmethod
    def connect(cls, url: str, token: str, timeout: float) -> Apis:
        config = ak.Configuration(host=url.rstrip("/") + "/api/v3", access_token=token, retries=0)
        client = ak.ApiClient(config)
        return cls(
            ak.CoreApi(client),
            ak.FlowsApi(client),
            ak.StagesApi(client),
            ak.PoliciesApi(client),
            ak.ProvidersApi(client),
            ak.OutpostsApi(client),
            timeout,
            token,
        )


def _uuid(pk: str | int) -> UUID:
    return UUID(str(pk))


def value(item: Any) -> Any:
    if isinstance(item, enum.Enum):
        return item.value
    if isinstance(item, list):
        return [value(i) for i in item]
    return item


def _detail(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "")
    except ValueError:
        return (error.body or error.reason or "").strip()[:300]
    if isinstance(body, dict):
        parts = []
        for field_name, problems in body.items():
            if field_name == "code":  # a machine code next to `detail`; the detail says it in words
                continue
            text = "; ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
            parts.append(text if field_name in ("detail", "non_field_errors") else f"{field_name}: {text}")
        return ", ".join(parts)[:500]
    return str(body)[:300]


@contextlib.contextmanager
def calling(apis: Apis, what: str) -> Iterator[None]:
    """Map every failure of the calls inside to an AuthentikError whose message cannot hold the token."""
    try:
        yield
    except ApiException as error:
        status = error.status
        hint = {
            401: "the API token is missing or not accepted; check authentik.tokenFile",
            403: "the token's user lacks the permission; give it an admin role or the object permissions",
            404: "it is gone; re-run plan",
        }.get(int(status or 0), "Authentik answered with an error" if int(status or 0) < 500 else "Authentik is down")
        raise AuthentikError(_scrub(apis, f"authentik: {what}: HTTP {status}: {_detail(error)} ({hint})")) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        reason = type(getattr(error, "reason", None) or error).__name__
        raise AuthentikError(
            _scrub(apis, f"authentik: {what}: cannot reach Authentik ({reason}); check authentik.url and that it runs")
        ) from None
    except (pydantic.ValidationError, OpenApiException, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AuthentikError(
            _scrub(apis, f"authentik: {what}: unexpected answer ({first}); is this an Authentik 2024.10 or newer?")
        ) from None


def _scrub(apis: Apis, text: str) -> str:
    if apis.token:
        text = text.replace(apis.token, redaction.MASK)
    return redaction.scrub(text)


def every(fetch: Callable[[int], Any]) -> list[Any]:
    """All results of a paginated list call (bounded)."""
    results: list[Any] = []
    page = 1
    for _ in range(MAX_PAGES):
        answer = fetch(page)
        results.extend(answer.results)
        following = int(answer.pagination.next or 0)
        if not following or following == page:
            return results
        page = following
    raise AuthentikError(f"authentik: more than {MAX_PAGES} pages of results; narrow the listing")


def build(model: type[pydantic.BaseModel], fields: Mapping[str, Any]) -> Any:
    unknown = sorted(set(fields) - set(model.model_fields))
    if unknown:
        raise AuthentikError(f"authentik: {model.__name__} has no field {', '.join(unknown)} (a hecate-agent bug)")
    return model.model_validate(dict(fields))


# --- listing -------------------------------------------------------------------------------


def list_kind(apis: Apis, kind: str) -> list[Any]:
    t = apis.timeout
    fetchers: dict[str, Callable[[int], Any]] = {
        "flow": lambda p: apis.flows.flows_instances_list(page=p, page_size=PAGE_SIZE, _request_timeout=t),
        "validate_stage": lambda p: apis.stages.stages_authenticator_validate_list(
            page=p, page_size=PAGE_SIZE, _request_timeout=t
        ),
        "login_stage": lambda p: apis.stages.stages_user_login_list(page=p, page_size=PAGE_SIZE, _request_timeout=t),
        "policy": lambda p: apis.policies.policies_expression_list(page=p, page_size=PAGE_SIZE, _request_timeout=t),
        "provider": lambda p: apis.providers.providers_proxy_list(page=p, page_size=PAGE_SIZE, _request_timeout=t),
        # Without superuser_full_list the list holds only applications the token's user may access.
        "application": lambda p: apis.core.core_applications_list(
            page=p, page_size=PAGE_SIZE, superuser_full_list=True, _request_timeout=t
        ),
    }
    with calling(apis, f"listing {kind}s"):
        return every(fetchers[kind])


def flow_bindings(apis: Apis, flow_pk: str) -> list[Any]:
    with calling(apis, "listing flow stage bindings"):
        return every(
            lambda p: apis.flows.flows_bindings_list(
                target=_uuid(flow_pk), page=p, page_size=PAGE_SIZE, _request_timeout=apis.timeout
            )
        )


def policy_bindings(apis: Apis, app_pk: str) -> list[Any]:
    with calling(apis, "listing policy bindings"):
        return every(
            lambda p: apis.policies.policies_bindings_list(
                target=_uuid(app_pk), page=p, page_size=PAGE_SIZE, _request_timeout=apis.timeout
            )
        )


def find_outpost(apis: Apis, outpost: str) -> Any:
    """The outpost by its `managed` identifier (contains '/') or by name; None when there is no such one."""
    with calling(apis, f"looking up outpost {outpost!r}"):
        if "/" in outpost:
            found = every(
                lambda p: apis.outposts.outposts_instances_list(
                    managed__iexact=outpost, page=p, page_size=PAGE_SIZE, _request_timeout=apis.timeout
                )
            )
            found = [o for o in found if o.managed == outpost]
        else:
            found = every(
                lambda p: apis.outposts.outposts_instances_list(
                    name__iexact=outpost, page=p, page_size=PAGE_SIZE, _request_timeout=apis.timeout
                )
            )
            found = [o for o in found if o.name == outpost]
    return found[0] if len(found) == 1 else None


# --- reading one object back into our terms ------------------------------------------------


def live_fields(kind: str, item: Any, names: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The fields we own, with pks turned back into Refs (`names` maps (kind, pk) -> key)."""

    def ref(ref_kind: str, pk: Any) -> Ref | str | None:
        if pk is None:
            return None
        key = names.get((ref_kind, str(pk)))
        return Ref(ref_kind, key) if key is not None else f"<{ref_kind} {pk}>"

    if kind == "flow":
        return {
            "name": item.name,
            "title": item.title,
            "designation": value(item.designation),
            "authentication": value(item.authentication),
        }
    if kind == "validate_stage":
        return {
            "device_classes": value(item.device_classes or []),
            "not_configured_action": value(item.not_configured_action),
            "last_auth_threshold": item.last_auth_threshold,
        }
    if kind == "login_stage":
        return {"session_duration": item.session_duration}
    if kind == "policy":
        return {"expression": item.expression}
    if kind == "provider":
        return {
            "mode": value(item.mode),
            "external_host": item.external_host,
            "authorization_flow": ref("flow", item.authorization_flow),
            "invalidation_flow": ref("flow", item.invalidation_flow),
            "authentication_flow": ref("flow", item.authentication_flow),
            "access_token_validity": item.access_token_validity,
            "property_mappings": [str(m) for m in item.property_mappings or []],
        }
    if kind == "application":
        return {
            "name": item.name,
            "provider": ref("provider", item.provider),
            "meta_publisher": item.meta_publisher,
            "meta_launch_url": item.meta_launch_url,
            "policy_engine_mode": value(item.policy_engine_mode),
        }
    raise AuthentikError(f"authentik: no reader for {kind} (a hecate-agent bug)")


def live_object(kind: str, key: str, item: Any, names: Mapping[tuple[str, str], str]) -> LiveObject:
    return LiveObject(kind, key, item.pk if isinstance(item.pk, int) else str(item.pk), live_fields(kind, item, names))


# --- writing -------------------------------------------------------------------------------

KEY_FIELD = {"flow": "slug", "application": "slug", "flow_binding": None, "policy_binding": None}


def create(apis: Apis, kind: str, key: str, fields: Mapping[str, Any]) -> str | int:
    body = dict(fields)
    key_field = KEY_FIELD.get(kind, "name")
    if key_field:
        body[key_field] = key
    t = apis.timeout
    with calling(apis, f"creating {kind} {key}"):
        if kind == "flow":
            made: Any = apis.flows.flows_instances_create(build(ak.FlowRequest, body), _request_timeout=t)
        elif kind == "validate_stage":
            made = apis.stages.stages_authenticator_validate_create(
                build(ak.AuthenticatorValidateStageRequest, body), _request_timeout=t
            )
        elif kind == "login_stage":
            made = apis.stages.stages_user_login_create(build(ak.UserLoginStageRequest, body), _request_timeout=t)
        elif kind == "flow_binding":
            made = apis.flows.flows_bindings_create(build(ak.FlowStageBindingRequest, body), _request_timeout=t)
        elif kind == "policy":
            made = apis.policies.policies_expression_create(build(ak.ExpressionPolicyRequest, body), _request_timeout=t)
        elif kind == "provider":
            made = apis.providers.providers_proxy_create(build(ak.ProxyProviderRequest, body), _request_timeout=t)
        elif kind == "application":
            made = apis.core.core_applications_create(build(ak.ApplicationRequest, body), _request_timeout=t)
        elif kind == "policy_binding":
            made = apis.policies.policies_bindings_create(build(ak.PolicyBindingRequest, body), _request_timeout=t)
        else:
            raise AuthentikError(f"authentik: no writer for {kind} (a hecate-agent bug)")
    return made.pk if isinstance(made.pk, int) else str(made.pk)


def patch(apis: Apis, kind: str, key: str, pk: str | int, fields: Mapping[str, Any]) -> None:
    body = dict(fields)
    t = apis.timeout
    with calling(apis, f"updating {kind} {key}"):
        if kind == "flow":
            apis.flows.flows_instances_partial_update(key, build(ak.PatchedFlowRequest, body), _request_timeout=t)
        elif kind == "validate_stage":
            apis.stages.stages_authenticator_validate_partial_update(
                _uuid(pk), build(ak.PatchedAuthenticatorValidateStageRequest, body), _request_timeout=t
            )
        elif kind == "login_stage":
            apis.stages.stages_user_login_partial_update(
                _uuid(pk), build(ak.PatchedUserLoginStageRequest, body), _request_timeout=t
            )
        elif kind == "flow_binding":
            apis.flows.flows_bindings_partial_update(
                _uuid(pk), build(ak.PatchedFlowStageBindingRequest, body), _request_timeout=t
            )
        elif kind == "policy":
            apis.policies.policies_expression_partial_update(
                _uuid(pk), build(ak.PatchedExpressionPolicyRequest, body), _request_timeout=t
            )
        elif kind == "provider":
            # A PATCH without `mode` is validated as mode `proxy` and fails on internal_host: always resend it.
            body.setdefault("mode", "forward_single")
            apis.providers.providers_proxy_partial_update(
                int(pk), build(ak.PatchedProxyProviderRequest, body), _request_timeout=t
            )
        elif kind == "application":
            apis.core.core_applications_partial_update(
                key, build(ak.PatchedApplicationRequest, body), _request_timeout=t
            )
        elif kind == "policy_binding":
            apis.policies.policies_bindings_partial_update(
                _uuid(pk), build(ak.PatchedPolicyBindingRequest, body), _request_timeout=t
            )
        else:
            raise AuthentikError(f"authentik: no writer for {kind} (a hecate-agent bug)")


def delete(apis: Apis, kind: str, key: str, pk: str | int) -> None:
    t = apis.timeout
    calls: dict[str, Callable[[], Any]] = {
        "flow": lambda: apis.flows.flows_instances_destroy(key, _request_timeout=t),
        "validate_stage": lambda: apis.stages.stages_authenticator_validate_destroy(_uuid(pk), _request_timeout=t),
        "login_stage": lambda: apis.stages.stages_user_login_destroy(_uuid(pk), _request_timeout=t),
        "flow_binding": lambda: apis.flows.flows_bindings_destroy(_uuid(pk), _request_timeout=t),
        "policy": lambda: apis.policies.policies_expression_destroy(_uuid(pk), _request_timeout=t),
        "provider": lambda: apis.providers.providers_proxy_destroy(int(pk), _request_timeout=t),
        "application": lambda: apis.core.core_applications_destroy(key, _request_timeout=t),
        "policy_binding": lambda: apis.policies.policies_bindings_destroy(_uuid(pk), _request_timeout=t),
    }
    try:
        with calling(apis, f"deleting {kind} {key}"):
            calls[kind]()
    except AuthentikError as error:
        if "HTTP 404" not in str(error):  # already gone (a cascade took it): what we wanted
            raise


def set_outpost_providers(apis: Apis, outpost_pk: str, providers: list[int]) -> None:
    with calling(apis, "updating the outpost's provider list"):
        apis.outposts.outposts_instances_partial_update(
            _uuid(outpost_pk), build(ak.PatchedOutpostRequest, {"providers": providers}), _request_timeout=apis.timeout
        )


def outpost_providers(apis: Apis, outpost_pk: str) -> list[int]:
    with calling(apis, "reading the outpost's provider list"):
        return list(
            apis.outposts.outposts_instances_retrieve(_uuid(outpost_pk), _request_timeout=apis.timeout).providers
        )
