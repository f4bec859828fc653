"""What the Hetzner test server checks: Hetzner's validation rules and hcloud's view of every payload.

Label keys/values and RRSet names follow Hetzner's rules, label selectors its
syntax; `check_response` holds every response to exactly the fields hcloud's
domain models read (`__api_properties__`) and parses it with `from_dict`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from hcloud.actions import Action
from hcloud.core.domain import Pagination
from hcloud.zones import Zone, ZoneAuthoritativeNameservers, ZoneRecord, ZoneRRSet

TYPES = {
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DS",
    "HINFO",
    "HTTPS",
    "MX",
    "NS",
    "PTR",
    "RP",
    "SOA",
    "SRV",
    "SVCB",
    "TLSA",
    "TXT",
}
_KEY = re.compile(r"^([a-z0-9A-Z]([-_.a-z0-9A-Z]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-_.a-z0-9A-Z]{0,61}[a-z0-9A-Z])?$")
_VALUE = re.compile(r"^([a-z0-9A-Z]([-_.a-z0-9A-Z]{0,61}[a-z0-9A-Z])?)?$")
_NAME = re.compile(r"^(@|(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*|\*)$")
CREATE_KEYS = {"name", "type", "ttl", "labels", "records"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Hetzner's label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas."""
    terms = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, items = match.groups()
            values = {v.strip() for v in items.split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def check_model(errors: list[str], what: str, payload: dict[str, Any], model: Any) -> None:
    """The payload has exactly the fields hcloud's model reads, and the model parses it."""
    fields = set(model.__api_properties__)
    if set(payload) != fields:
        errors.append(f"{what}: fields {sorted(set(payload) ^ fields)} differ from hcloud's {model.__name__}")
    try:
        model.from_dict(dict(payload))
    except Exception as exc:
        errors.append(f"{what}: hcloud's {model.__name__} cannot parse it: {exc}")


def check_response(errors: list[str], payload: dict[str, Any]) -> None:
    for zone in ([payload["zone"]] if "zone" in payload else []) + list(payload.get("zones", [])):
        check_model(errors, "zone", zone, Zone)
        check_model(
            errors, "zone.authoritative_nameservers", zone["authoritative_nameservers"], ZoneAuthoritativeNameservers
        )
    for rrset in ([payload["rrset"]] if "rrset" in payload else []) + list(payload.get("rrsets", [])):
        check_model(errors, "rrset", rrset, ZoneRRSet)
        for record in rrset["records"]:
            check_model(errors, "rrset.records[]", record, ZoneRecord)
    if "action" in payload:
        check_model(errors, "action", payload["action"], Action)
    if "meta" in payload:
        check_model(errors, "meta.pagination", payload["meta"]["pagination"], Pagination)


def valid_values(rtype: str, values: list[str]) -> None:
    for value in values:
        if rtype in ("A", "AAAA"):
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                ip = None
            if ip is None or ip.version != (4 if rtype == "A" else 6):
                raise ApiError(
                    400, "invalid_input", f"invalid input in field 'records': {value!r} is not a valid {rtype} value"
                )
    if rtype == "CNAME" and len(values) != 1:
        raise ApiError(400, "invalid_input", "invalid input in field 'records': a CNAME RRSet holds exactly one record")


def valid_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict):
        raise ApiError(400, "invalid_input", "invalid input in field 'labels'")
    for key, value in labels.items():
        if not isinstance(value, str) or not _KEY.match(str(key)) or not _VALUE.match(value):
            raise ApiError(400, "invalid_input", f"invalid input in field 'labels': label {key}={value!r} is invalid")
    return {str(k): str(v) for k, v in labels.items()}


def valid_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError(400, "invalid_input", f"invalid input in field 'name': {name!r}")
    return name


def selector_ok(query: dict[str, list[str]], labels: dict[str, str]) -> bool:
    return all(selector_matches(s, labels) for s in query.get("label_selector", []))
