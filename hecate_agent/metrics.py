"""Prometheus metrics of one agent, on a registry of its own (no global state, testable)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "hecate_reconciles", "Reconciles by trigger and outcome.", ["trigger", "outcome"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "hecate_reconcile_duration_seconds",
            "Time from trigger to outcome.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "hecate_source_fetch_duration_seconds",
            "Time to fetch the source.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.fetch_errors = Counter("hecate_source_fetch_errors", "Failed fetches of the source.", registry=r)
        self.applied = Info("hecate_applied_revision", "The revision the proxies run.", registry=r)
        self.drift = Gauge(
            "hecate_drift_resources", "Resources whose live config differs from the applied one.", registry=r
        )
        self.last_success = Gauge(
            "hecate_last_success_timestamp_seconds", "When a reconcile last succeeded.", registry=r
        )
        self.consul_failures = Counter(
            "hecate_consul_publish_failures", "Failed writes of status to Consul.", registry=r
        )
        self.secret_errors = Counter(
            "hecate_secret_errors", "Reconciles held back because a secret could not be resolved.", registry=r
        )
        self.suspended = Gauge("hecate_suspended", "1 while automatic sync is suspended.", registry=r)
        self.dns_records = Gauge(
            "hecate_dns_owned_records", "DNS records this fleet owns at the provider, as last seen.", registry=r
        )
        self.dns_writer = Gauge("hecate_dns_writer", "1 while this node writes the fleet's DNS records.", registry=r)
        self.upstream_up = Gauge(
            "hecate_stream_upstream_up",
            "Agent-side TCP probe of a stream upstream (1 up, 0 down).",
            ["stream", "upstream"],
            registry=r,
        )

    def set_dns(self, component: Mapping[str, Any] | None) -> None:
        """From the status component of the DNS target (targets/dns.py), when it has one."""
        if not component:
            return
        self.dns_writer.set(1 if component.get("writer") else 0)
        if component.get("ownedRecords") is not None:
            self.dns_records.set(float(component["ownedRecords"]))

    def set_stream_upstreams(self, up: Mapping[tuple[str, str], bool]) -> None:
        """The probe verdict of every (stream, upstream) probed now; series of any other pair are removed."""
        for (stream, upstream), is_up in up.items():
            self.upstream_up.labels(stream=stream, upstream=upstream).set(1 if is_up else 0)
        keep_only(self.upstream_up, ("stream", "upstream"), set(up))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def keep_only(metric: Gauge, label_names: tuple[str, ...], keep: set[tuple[str, ...]]) -> None:
    """Remove every series of `metric` whose values of `label_names` (its labels, in order) are not in `keep`.

    A labelled series lives until removed: without this, a stream or upstream taken out of the
    desired state would be exported forever with its last value.
    """
    present = {
        tuple(sample.labels[name] for name in label_names) for family in metric.collect() for sample in family.samples
    }
    for values in present - keep:
        metric.remove(*values)
