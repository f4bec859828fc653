"""The Authentik adapter against a real Authentik, when you have one.

    AUTHENTIK_URL=https://auth.example.com AUTHENTIK_TOKEN=... pytest tests/optin/test_authentik_real.py

Skipped unless both variables are set. The token needs admin rights (it lists
every application with `superuser_full_list`). Every object the suite creates
carries a random marker in its name and is removed at the end; changes to other
`hecate-` objects in that Authentik are filtered out, so a shared instance keeps
them. CI runs the same checks against tests/support/authentik_server.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from hecate_agent.authentik.api import AuthentikError
from hecate_agent.authentik.client import AuthentikTarget
from hecate_agent.authentik.desired import Ref
from tests.support.authentik_checks import converge, desired_for, edited, route, settled

URL = os.environ.get("AUTHENTIK_URL", "")
TOKEN = os.environ.get("AUTHENTIK_TOKEN", "")
pytestmark = pytest.mark.skipif(not (URL and TOKEN),
                                reason="opt-in: set AUTHENTIK_URL and AUTHENTIK_TOKEN to run against a real Authentik")


@pytest.fixture
def marker() -> str:
    return f"-t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def target(marker: str) -> Iterator[AuthentikTarget]:
    real = AuthentikTarget(URL, TOKEN)
    yield real
    converge(real, [], marker)  # remove everything this test made
    assert settled(real, [], marker)


def test_apply_edit_and_remove_on_a_real_authentik(target: AuthentikTarget, marker: str) -> None:
    import authentik_client as ak

    unmanaged = f"optin-unmanaged{marker}"
    core = target._apis.core
    core.core_applications_create(ak.ApplicationRequest(name=unmanaged, slug=unmanaged))
    try:
        converge(target, desired_for(route(marker)), marker)
        assert settled(target, desired_for(route(marker)), marker)  # Authentik's own rewrites are not drift
        live = target.read_live()
        provider = live.get("provider", f"hecate-app{marker}")
        assert provider is not None
        assert provider.fields["mode"] == "forward_single"
        assert provider.fields["authorization_flow"] == Ref("flow", f"hecate-staff{marker}-authorization")
        assert provider.fields["access_token_validity"] == "hours=4"
        stage = live.get("validate_stage", f"hecate-staff{marker}-mfa")
        assert stage is not None and sorted(stage.fields["device_classes"]) == ["totp", "webauthn"]
        assert live.get("outpost_provider", f"{target.outpost}/hecate-app{marker}") is not None
        pks = {o.ident: o.pk for o in live.objects if marker in o.key}

        converge(target, desired_for(edited(route(marker))), marker)
        after = {o.ident: o.pk for o in target.read_live().objects if marker in o.key}
        assert after == pks  # updated in place
        assert settled(target, desired_for(edited(route(marker))), marker)

        converge(target, [], marker)
        left = target.read_live()
        assert not [o for o in left.objects if marker in o.key]
        assert f"application:{unmanaged}" in left.unmanaged
    finally:
        core.core_applications_destroy(unmanaged)


def test_drift_snapshot_and_restore_on_a_real_authentik(target: AuthentikTarget, marker: str) -> None:
    import authentik_client as ak

    converge(target, desired_for(route(marker)), marker)
    snapshot = target.snapshot()
    provider = target.read_live().get("provider", f"hecate-app{marker}")
    assert provider is not None
    target._apis.providers.providers_proxy_partial_update(int(provider.pk), ak.PatchedProxyProviderRequest(
        mode=ak.ProxyMode.FORWARD_SINGLE, external_host="https://drifted.example.com"))
    changes = target.plan(desired_for(route(marker)), target.read_live())
    drift = [c for c in changes.changes if marker in c.key]
    assert [(c.action, c.kind) for c in drift] == [("update", "provider")]
    assert [d.name for d in drift[0].diff] == ["external_host"]
    target.restore(snapshot)
    assert settled(target, desired_for(route(marker)), marker)


def test_a_wrong_token_is_refused_without_showing_it() -> None:
    wrong = f"optin-wrong-{uuid.uuid4().hex}"
    with pytest.raises(AuthentikError, match=r"HTTP 40[13]") as failure:
        AuthentikTarget(URL, wrong).read_live()
    assert wrong not in str(failure.value)
