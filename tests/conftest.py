from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.caddy import CADDY, CaddyInstance
from tests.support.nginx import NginxInstance, nginx_available
from tests.support.node import NodeUnderTest


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxInstance]:
    if not nginx_available():
        pytest.fail("nginx with the stream module is required: run scripts/bootstrap (apt-get install nginx-light libnginx-mod-stream)")
    instance = NginxInstance(tmp_path / "nginx")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[CaddyInstance]:
    if not Path(CADDY).exists():
        pytest.fail("caddy is required: run scripts/bootstrap (apt-get install caddy)")
    instance = CaddyInstance(tmp_path / "caddy")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def node(tmp_path: Path, caddy: CaddyInstance, nginx: NginxInstance) -> NodeUnderTest:
    return NodeUnderTest(tmp_path / "node", caddy, nginx)
