"""The probe's own metric names and HELP texts (each signal family's live in its module under
families/, in the order ``EXPOSED`` gives), and the exporter's own metrics.

Probe metrics are built fresh from each Snapshot (no registry outlives its request), so no series
outlives the probe that found it. The exporter's own metrics live in one registry per
running app (never prometheus_client's global one).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable, Collection
from itertools import chain

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from whm_exporter import __version__
from whm_exporter.families import EXPOSED
from whm_exporter.series import Family
from whm_exporter.snapshot import Snapshot


def families(s: Snapshot) -> list[Family]:
    """Every metric of a probe: its own here, then each family's."""
    return [
        Family(
            "whm_up",
            "1 if WHM answered and accepted the credentials since the previous scrape.",
            samples=[((), int(s.up))],
        ),
        Family(
            "whm_probe_duration_seconds", "Wall time of this probe.", samples=[((), s.duration)]
        ),
        Family(
            "whm_probe_timeout_seconds",
            "Time this probe had: the module timeout, or the scrape timeout minus"
            " --timeout-offset.",
            samples=[((), s.timeout)],
        ),
        Family(
            "whm_probe_deadline_exceeded",
            "1 if the probe answered with work still pending (normal on a big server: the"
            " collection goes on after it).",
            samples=[((), int(s.deadline_exceeded))],
        ),
        Family(
            "whm_api_calls",
            "WHM API calls answered since the previous scrape.",
            ("function",),
            [((f,), n) for f, n in sorted(s.calls.items())],
        ),
        Family(
            "whm_api_errors",
            "Failed WHM API calls since the previous scrape, by function and reason.",
            ("function", "reason"),
            [(k, n) for k, n in sorted(s.errors.items())],
        ),
        Family(
            "whm_api_call_errors",
            "Failed WHM API calls by function and reason since the exporter began collecting"
            " from the target (every reason of a function called, 0 included): what every"
            " Prometheus scraping the exporter sees whole, unlike whm_api_errors.",
            ("function", "reason"),
            [(k, n) for k, n in s.errors_total.items()],
            type="counter",
        ),
        Family(
            "whm_api_calls_abandoned",
            "WHM API calls cancelled (stop, reload, shutdown) since the previous scrape.",
            ("function",),
            [((f,), n) for f, n in sorted(s.abandoned.items())],
        ),
        Family(
            "whm_discovered_users",
            "cPanel users being scraped.",
            samples=[((), s.discovered_users)],
        ),
        Family(
            "whm_discovered_accounts",
            "Email accounts (and main mailboxes) being scraped.",
            samples=[((), s.discovered_accounts)],
        ),
        Family(
            "whm_discovery_complete",
            "1 once every user's addresses have been listed at least once.",
            samples=[((), int(s.discovery_complete))],
        ),
        Family(
            "whm_data_items",
            "Items by state: fresh (answered since the previous scrape), kept (answered earlier,"
            " within max_age) or missing (known, nothing to serve).",
            ("function", "state"),
            [(k, n) for k, n in sorted(s.items.items())],
        ),
        Family(
            "whm_data_age_seconds",
            "Age of the oldest answer served, by function.",
            ("function",),
            [((f,), a) for f, a in sorted(s.data_age.items())],
        ),
        *chain.from_iterable(f.render(s) for f in EXPOSED),
        Family(
            "whm_series_dropped",
            "Series left out by filters and limits (folder filters, min_count,"
            " max_senders_per_user, logins.max_users, mail_queue.max_senders and max_domains).",
            ("metric",),
            [((m,), n) for m, n in sorted(s.dropped.items())],
        ),
    ]


_PROBE_RESULTS = ("success", "failure")


class _TargetSeries:
    """A target label's children of the API call families, made once: labels() takes a lock and
    builds a key on every call, and a probe makes thousands. Also what to remove with it."""

    __slots__ = ("durations", "removed", "requests")

    def __init__(self) -> None:
        self.durations: dict[str, Histogram] = {}
        self.requests: dict[tuple[str, str], Counter] = {}
        # Set when a reload removed the label: the calls of its probes still in flight must
        # not make its series again.
        self.removed = False


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
        self.load_budget = Gauge(
            "whm_exporter_load_budget",
            "Seconds of WHM time per second this exporter may cost the target's server, on"
            " average (load_budget; 0 = no budget). The load spent is the rate of"
            " whm_exporter_api_request_duration_seconds_sum.",
            ["target"],
            registry=self.registry,
        )
        self.state_writes = Counter(
            "whm_exporter_state_writes_total",
            "Writes of a target's kept state to --storage.path, by result (success or error).",
            ["result"],
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
        # The target labels in use (configured targets, and the modules unlisted hosts count
        # under once probed).
        self._targets: dict[str, _TargetSeries] = {}

    def init_target(self, target: str) -> None:
        """Create a target's series at zero, so rate() and alerts work before the first error."""
        self._targets.setdefault(target, _TargetSeries())
        for result in _PROBE_RESULTS:
            self.probes.labels(target, result)

    def probed(self, target: str, up: bool) -> None:
        """Count a probe answered, unless a reload removed its target while it ran."""
        if target in self._targets:
            self.probes.labels(target, "success" if up else "failure").inc()

    def observer(self, target: str) -> Callable[[str, float, str], None]:
        series = self._targets.setdefault(target, _TargetSeries())
        durations, requests = series.durations, series.requests

        def observe(function: str, seconds: float, outcome: str) -> None:
            if series.removed:
                return
            histogram = durations.get(function)
            if histogram is None:
                histogram = durations[function] = self.api_duration.labels(target, function)
            counter = requests.get((function, outcome))
            if counter is None:
                counter = requests[(function, outcome)] = self.api_requests.labels(
                    target, function, outcome
                )
            histogram.observe(seconds)
            counter.inc()

        return observe

    def keep_targets(self, targets: Collection[str]) -> None:
        """Remove every series of the target labels not in ``targets`` (a reload removed them),
        so that /metrics names no target the config no longer has."""
        for target in self._targets.keys() - set(targets):
            series = self._targets.pop(target)
            series.removed = True
            for result in _PROBE_RESULTS:
                _remove(self.probes, target, result)
            for function in series.durations:
                _remove(self.api_duration, target, function)
            for function, outcome in series.requests:
                _remove(self.api_requests, target, function, outcome)
            # A reload clears the budget gauges before it sets the new targets'.
            _remove(self.load_budget, target)


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    """Remove one labelled child, whether or not it exists: older prometheus-client releases
    (0.20, the floor pyproject.toml allows) raise KeyError for a missing one."""
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
