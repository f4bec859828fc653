"""`hecate_agent.__all__`: every name resolves, lazily (the CLI's fast paths load none of it)."""

from __future__ import annotations

import subprocess
import sys

import hecate_agent


def test_every_exported_name_resolves() -> None:
    assert sorted(hecate_agent.__all__) == sorted(["__version__", *hecate_agent._EXPORTS])
    for name in hecate_agent.__all__:
        assert getattr(hecate_agent, name) is not None, name
    assert hecate_agent.Outcome.APPLIED == "applied" and hecate_agent.Phase.SYNCED == "Synced"


def test_importing_the_package_loads_no_engine_or_proxy_code() -> None:
    code = (
        "import sys, hecate_agent, hecate_agent.cli; "
        "heavy = [m for m in sys.modules if m.startswith(('hecate_agent.engine', 'hecate_agent.targets', "
        "'hecate_agent.runtime.daemon', 'httpx', 'apscheduler', 'consul'))]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
