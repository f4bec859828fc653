"""/metrics: valid exposition, and no series left behind for streams or upstreams that are gone."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hecate_agent.metrics import Metrics


def upstream_series(metrics: Metrics) -> dict[tuple[str, str], float]:
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    return {
        (s.labels["stream"], s.labels["upstream"]): s.value for s in families["hecate_stream_upstream_up"].samples
    }


def test_series_of_removed_streams_and_upstreams_are_removed() -> None:
    metrics = Metrics()
    metrics.set_stream_upstreams({("db", "10.0.0.1:5432"): True, ("db", "10.0.0.2:5432"): False, ("mail", "m:25"): True})
    assert upstream_series(metrics) == {("db", "10.0.0.1:5432"): 1.0, ("db", "10.0.0.2:5432"): 0.0, ("mail", "m:25"): 1.0}
    # The mail stream is removed from the desired state, and db loses an upstream.
    metrics.set_stream_upstreams({("db", "10.0.0.1:5432"): False})
    assert upstream_series(metrics) == {("db", "10.0.0.1:5432"): 0.0}
    assert 'stream="mail"' not in metrics.render().decode()
    metrics.set_stream_upstreams({})
    assert upstream_series(metrics) == {}


def test_the_exposition_parses_and_every_family_has_help_and_type() -> None:
    metrics = Metrics()
    metrics.set_stream_upstreams({("db", "[2001:db8::1]:5432"): True})
    metrics.reconciles.labels(trigger="poll", outcome="applied").inc()
    text = metrics.render().decode()
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= {"hecate_stream_upstream_up", "hecate_reconciles", "hecate_suspended"}
    for family in families:
        assert f"# HELP {family.name}" in text and f"# TYPE {family.name}" in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_accepts_the_exposition() -> None:
    metrics = Metrics()
    metrics.set_stream_upstreams({("db", "10.0.0.1:5432"): True})
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=metrics.render(), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dns_component_of_the_status_sets_the_dns_gauges() -> None:
    metrics = Metrics()
    metrics.set_dns({"provider": "hetzner", "policy": "sync", "writer": True, "ownedRecords": 4, "waitForDNS": True})
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["hecate_dns_writer"].samples[0].value == 1.0
    assert families["hecate_dns_owned_records"].samples[0].value == 4.0
    metrics.set_dns({"writer": False, "ownedRecords": None})
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["hecate_dns_writer"].samples[0].value == 0.0
    assert families["hecate_dns_owned_records"].samples[0].value == 4.0  # not seen: the last value stays
