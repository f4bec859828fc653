from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.caddy import CADDY, CaddyInstance
from tests.support.nginx import NginxInstance, nginx_available
from tests.support.node import NodeUnderTest, running

# Property tests run a quick profile by default; `HYPOTHESIS_PROFILE=slow` runs 10,000 examples each.
settings.register_profile("default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxInstance]:
    if not nginx_available():
        pytest.fail("nginx with the stream module is required: run scripts/bootstrap (apt-get install nginx-light libnginx-mod-stream)")
    with running(NginxInstance(tmp_path / "nginx")) as instance:
        yield instance


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[CaddyInstance]:
    if not Path(CADDY).exists():
        pytest.fail("caddy is required: run scripts/bootstrap (apt-get install caddy)")
    with running(CaddyInstance(tmp_path / "caddy")) as instance:
        yield instance


@pytest.fixture
def node(tmp_path: Path, caddy: CaddyInstance, nginx: NginxInstance) -> NodeUnderTest:
    return NodeUnderTest(tmp_path / "node", caddy, nginx)
