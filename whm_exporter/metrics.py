"""Every metric name and HELP text of the exporter lives here.

Probe metrics are built fresh from a Snapshot into a registry of their own for each request, so
no series outlives the probe that found it. The exporter's own metrics live in one registry per
running app (never prometheus_client's global one).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from whm_exporter import __version__
from whm_exporter.config import ModuleConfig, format_duration
from whm_exporter.snapshot import Snapshot


def _cached(help_text: str, ttl: float) -> str:
    return (
        f"{help_text} Answers may be up to {format_duration(ttl)} old (cache)."
        if ttl
        else help_text
    )


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot, module: ModuleConfig) -> None:
        self._s = snapshot
        self._module = module

    def collect(self) -> Iterator[Metric]:
        s, module = self._s, self._module
        yield GaugeMetricFamily(
            "whm_up", "1 if WHM answered and accepted the credentials in this probe.", int(s.up)
        )
        yield GaugeMetricFamily(
            "whm_probe_duration_seconds", "Wall time of this probe.", s.duration
        )
        yield GaugeMetricFamily(
            "whm_probe_deadline_exceeded",
            "1 if the probe stopped at its deadline with calls unanswered.",
            int(s.deadline_exceeded),
        )
        calls = GaugeMetricFamily(
            "whm_api_calls",
            "WHM API calls made (or served from cache) in this probe.",
            labels=["function"],
        )
        for function, n in sorted(s.calls.items()):
            calls.add_metric([function], n)
        yield calls
        errors = GaugeMetricFamily(
            "whm_api_errors",
            "Failed WHM API calls in this probe, by function and reason.",
            labels=["function", "reason"],
        )
        for (function, reason), n in sorted(s.errors.items()):
            errors.add_metric([function, reason], n)
        yield errors
        yield GaugeMetricFamily(
            "whm_discovered_users", "cPanel users being scraped.", s.discovered_users
        )
        yield GaugeMetricFamily(
            "whm_discovered_accounts",
            "Email accounts (and main mailboxes) being scraped.",
            s.discovered_accounts,
        )
        yield from self._mailboxes(module.mailboxes.cache)
        yield from self._recipients(module.unique_recipients.cache)
        dropped = GaugeMetricFamily(
            "whm_series_dropped",
            "Series left out by folder filters, min_count or max_senders_per_user.",
            labels=["metric"],
        )
        for metric, n in sorted(s.dropped.items()):
            dropped.add_metric([metric], n)
        yield dropped
        if module.mailboxes.cache or module.unique_recipients.cache:
            age = GaugeMetricFamily(
                "whm_cache_age_seconds",
                "Age of the oldest cached answer used in this probe, by function.",
                labels=["function"],
            )
            for function, seconds in sorted(s.cache_age.items()):
                age.add_metric([function], seconds)
            yield age

    def _mailboxes(self, ttl: float) -> Iterable[Metric]:
        messages = GaugeMetricFamily(
            "whm_mailbox_messages",
            _cached("Messages in one mailbox folder.", ttl),
            labels=["user", "account", "mailbox"],
        )
        size = GaugeMetricFamily(
            "whm_mailbox_size_bytes",
            _cached("Virtual size of one mailbox folder (vsize), in bytes.", ttl),
            labels=["user", "account", "mailbox"],
        )
        for m in self._s.mailboxes:
            labels = [m.user, m.account, m.mailbox]
            messages.add_metric(labels, m.messages)
            size.add_metric(labels, m.vsize)
        return messages, size

    def _recipients(self, ttl: float) -> Iterable[Metric]:
        senders = GaugeMetricFamily(
            "whm_sender_unique_recipients",
            _cached("Unique remote recipients the sender reached in the window.", ttl),
            labels=["user", "sender", "window"],
        )
        for r in self._s.senders:
            senders.add_metric([r.user, r.sender, r.window], r.count)
        users = GaugeMetricFamily(
            "whm_user_unique_recipients",
            _cached(
                "Unique remote recipients reached by the cPanel user's senders in the window.", ttl
            ),
            labels=["user", "window"],
        )
        for u in self._s.user_totals:
            users.add_metric([u.user, u.window], u.count)
        return senders, users


def probe_registry(snapshot: Snapshot, module: ModuleConfig) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, module))
    return registry


class ExporterMetrics:
    """The exporter's own metrics, served on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Gauge(
            "whm_exporter_build_info",
            "Version of the exporter and of Python; always 1.",
            ["version", "python_version"],
            registry=self.registry,
        ).labels(__version__, platform.python_version()).set(1)
        self.probes = Counter(
            "whm_exporter_probes_total",
            "Probes answered, by target and result.",
            ["target", "result"],
            registry=self.registry,
        )
        self.api_duration = Histogram(
            "whm_exporter_api_request_duration_seconds",
            "Duration of WHM API calls.",
            ["target", "function"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.api_requests = Counter(
            "whm_exporter_api_requests_total",
            "WHM API calls made, by target, function and outcome (success or an error reason).",
            ["target", "function", "outcome"],
            registry=self.registry,
        )
        self.reload_ok = Gauge(
            "whm_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded.",
            registry=self.registry,
        )
        self.reload_time = Gauge(
            "whm_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            registry=self.registry,
        )

    def init_target(self, target: str) -> None:
        """Create a target's series at zero, so rate() and alerts work before the first error."""
        for result in ("success", "failure"):
            self.probes.labels(target, result)

    def observer(self, target: str) -> Callable[[str, float, str], None]:
        def observe(function: str, seconds: float, outcome: str) -> None:
            self.api_duration.labels(target, function).observe(seconds)
            self.api_requests.labels(target, function, outcome).inc()

        return observe
