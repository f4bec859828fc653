"""Active stream health on open-source Nginx: the agent's probes take an upstream out and put it back (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_daemon import git_source
from tests.helpers import dump_yaml, stream
from tests.support.servers import TcpEcho, free_port, serving, tcp_exchange, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def active_stream_file(node) -> str:  # type: ignore[no-untyped-def]
    found = sorted(Path(node.nginx.settings.stream_dir).glob("db.conf"))
    return found[0].read_text() if found else ""


def test_an_upstream_failing_its_probes_is_marked_down_and_put_back(node, remote, agent_factory) -> None:
    live, later_port, listen_port = TcpEcho("live"), free_port(), free_port()
    later = f"127.0.0.1:{later_port}"
    with serving(live):
        doc = stream("db", port=None, listen={"address": "127.0.0.1", "port": listen_port},
                     healthCheck={"type": "tcp", "interval": "1s", "timeout": "500ms", "unhealthyThreshold": 2,
                                  "healthyThreshold": 1},
                     upstreams=[{"server": f"127.0.0.1:{live.port}"}, {"server": later}])
        first = remote.commit({"specs/streams/db.yaml": dump_yaml(doc)}, "db")
        remote.push()
        agent = agent_factory(source=git_source(remote), nginx={"minReloadInterval": "1s"})
        agent.start()
        agent.wait_applied(first, timeout=15)

        def marked() -> bool:
            return f"server {later} weight=1 max_fails=1 fail_timeout=10s down;" in active_stream_file(node)

        def health() -> dict:
            return (agent.status().get("components") or {}).get("streams", {}).get("db", {})

        assert wait_until(marked, timeout=30), active_stream_file(node)
        # status.json is written by the probe and the reconcile threads: the next probe round settles it
        assert wait_until(lambda: health().get(later, {}).get("markedDown") is True, timeout=15), health()
        assert health()[later]["up"] is False
        assert health()[f"127.0.0.1:{live.port}"]["markedDown"] is False
        # health, not drift: the revision did not change and nothing counts as drifted
        assert agent.status()["appliedRevision"] == first and not agent.status()["drift"]["detected"]
        assert all(tcp_exchange(listen_port) == b"live:ping" for _ in range(6))

        back = TcpEcho("later", port=later_port)
        with serving(back):
            assert wait_until(lambda: not marked() and f"server {later} " in active_stream_file(node), timeout=30)
            # Nginx's own passive state (max_fails/fail_timeout, kept in the shared zone across reloads)
            # may hold the server out for up to fail_timeout after its last refused connection.
            assert wait_until(lambda: b"later:ping" in {tcp_exchange(listen_port) for _ in range(4)}, timeout=30)
            assert wait_until(lambda: health().get(later, {}).get("markedDown") is False, timeout=15), health()
