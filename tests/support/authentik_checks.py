"""Adapter checks shared by the protocol-level tests and the opt-in suite against a real Authentik."""

from __future__ import annotations

from dataclasses import replace

from hecate_agent.authentik.client import AuthentikTarget
from hecate_agent.authentik.desired import DesiredObject, ProtectedRoute, desired_objects
from hecate_agent.authentik.plan import ChangeSet


def route(marker: str = "") -> ProtectedRoute:
    """Groups, MFA with webauthn+totp, 4 h sessions, two attributes."""
    return ProtectedRoute(
        route=f"app{marker}",
        domain=f"app{marker}.example.com",
        scheme="https",
        policy=f"staff{marker}",
        flow="default-authentication-flow",
        groups=("employees", "contractors"),
        mfa="required",
        allowed_methods=("password", "webauthn", "totp"),
        session_duration=4 * 3600,
        required_attributes=("employee_id", "department"),
    )


def edited(original: ProtectedRoute) -> ProtectedRoute:
    return replace(original, groups=("admins",), allowed_methods=("webauthn",), session_duration=3600,
                   required_attributes=("employee_id",), domain="edited" + original.domain)


def only(changes: ChangeSet, marker: str) -> ChangeSet:
    """The changes that concern objects named with `marker` (so a shared Authentik keeps its other objects)."""
    return replace(changes, changes=tuple(c for c in changes.changes if marker in c.key))


def converge(target: AuthentikTarget, desired: list[DesiredObject], marker: str = "") -> ChangeSet:
    changes = target.plan(desired, target.read_live())
    if marker:
        changes = only(changes, marker)
    target.apply(changes)
    return changes


def settled(target: AuthentikTarget, desired: list[DesiredObject], marker: str = "") -> bool:
    changes = target.plan(desired, target.read_live())
    return (only(changes, marker) if marker else changes).empty


def desired_for(*routes: ProtectedRoute) -> list[DesiredObject]:
    return desired_objects(list(routes))
