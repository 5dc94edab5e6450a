"""Every metric name and HELP text of the exporter lives here.

Probe metrics are built fresh from each Snapshot (no registry outlives its request), so no series
outlives the probe that found it. The exporter's own metrics live in one registry per
running app (never prometheus_client's global one).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

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
from whm_exporter.snapshot import Snapshot

Sample = tuple[tuple[str, ...], float]


class Lazy:
    """Samples made while they are written, never held: a big probe has hundreds of thousands,
    and the answer is streamed. Iterable again and again (the debug page and tests read twice)."""

    def __init__(self, make: Callable[[], Iterator[Sample]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[Sample]:
        return self._make()


@dataclass(frozen=True, slots=True)
class Family:
    """One family of a probe: the single description both renderers below work from. A
    counter's ``name`` is its family's, without ``_total``."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: Iterable[Sample] = ()
    type: Literal["gauge", "counter"] = "gauge"


def families(s: Snapshot) -> list[Family]:
    """Every metric of a probe, named and explained here and nowhere else."""
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
        Family(
            "whm_mailbox_messages",
            "Messages in one mailbox folder.",
            ("user", "account", "mailbox"),
            Lazy(lambda: (((m.user, m.account, m.mailbox), m.messages) for m in s.mailboxes)),
        ),
        Family(
            "whm_mailbox_size_bytes",
            "Virtual size of one mailbox folder (vsize), in bytes.",
            ("user", "account", "mailbox"),
            Lazy(lambda: (((m.user, m.account, m.mailbox), m.vsize) for m in s.mailboxes)),
        ),
        Family(
            "whm_sender_unique_recipients",
            "Unique remote recipients the sender reached in the window.",
            ("user", "sender", "window"),
            Lazy(lambda: (((r.user, r.sender, r.window), r.count) for r in s.senders)),
        ),
        Family(
            "whm_user_unique_recipients",
            "Unique remote recipients of the cPanel user's senders in the window.",
            ("user", "window"),
            [((u.user, u.window), u.count) for u in s.user_totals],
        ),
        *_mail_flow(s),
        Family(
            "whm_user_mail_limit_reached",
            "1 when cPanel's per-hour limit tripped for the user (REACHED_MAXEMAILS,"
            " REACHED_MAXDEFERFAIL of emailtrack_user_stats, shortest window).",
            ("user", "limit"),
            [((x.user, x.limit), int(x.reached)) for x in s.limits],
        ),
        Family(
            "whm_user_outgoing_mail_held",
            "1 when cPanel holds the user's outgoing mail in the queue (listaccts).",
            ("user",),
            [((f.user,), int(f.held)) for f in s.user_flags],
        ),
        Family(
            "whm_user_outgoing_mail_suspended",
            "1 when cPanel suspends the user's outgoing mail (listaccts).",
            ("user",),
            [((f.user,), int(f.suspended)) for f in s.user_flags],
        ),
        Family(
            "whm_account_disk_used_bytes",
            "Disk space the email account uses (list_pops_with_disk), in bytes.",
            ("user", "account"),
            [((d.user, d.account), d.used) for d in s.disk],
        ),
        Family(
            "whm_account_quota_bytes",
            "The email account's disk quota, in bytes; absent when unlimited.",
            ("user", "account"),
            [((d.user, d.account), d.quota) for d in s.disk if d.quota is not None],
        ),
        Family(
            "whm_series_dropped",
            "Series left out by folder filters, min_count or max_senders_per_user.",
            ("metric",),
            [((m,), n) for m, n in sorted(s.dropped.items())],
        ),
    ]


# emailtrack_user_stats counters: (metric, help, MailFlowSample field).
_MAIL_FLOW = (
    ("whm_user_mail_sent_messages", "Messages the user sent in the window (SENDCOUNT).", "sent"),
    (
        "whm_user_mail_delivered",
        "Successful deliveries in the window, one per recipient (SUCCESSCOUNT).",
        "delivered",
    ),
    ("whm_user_mail_deferrals", "Deferral events in the window (DEFERCOUNT).", "deferrals"),
    (
        "whm_user_mail_failures",
        "Failed deliveries in the window, one per recipient (FAILCOUNT).",
        "failures",
    ),
    (
        "whm_user_mail_defer_failures",
        "Messages deferred and then failed in the window (DEFERFAILCOUNT).",
        "defer_failures",
    ),
    ("whm_user_mail_sent_bytes", "Bytes the user sent in the window (TOTALSIZE).", "sent_bytes"),
)


def _mail_flow(s: Snapshot) -> list[Family]:
    labels = [(f.user, f.window) for f in s.mail_flow]
    return [
        Family(
            name,
            text,
            ("user", "window"),
            [(k, getattr(f, field)) for k, f in zip(labels, s.mail_flow, strict=True)],
        )
        for name, text, field in _MAIL_FLOW
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
                self.probes.remove(target, result)
            for function in series.durations:
                self.api_duration.remove(target, function)
            for function, outcome in series.requests:
                self.api_requests.remove(target, function, outcome)
            self.load_budget.remove(target)
