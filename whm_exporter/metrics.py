"""Every metric name and HELP text of the exporter lives here.

Probe metrics are built fresh from each Snapshot (no registry outlives its request), so no series
outlives the probe that found it. The exporter's own metrics live in one registry per
running app (never prometheus_client's global one).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from whm_exporter.config import ModuleConfig
from whm_exporter.durations import format_duration
from whm_exporter.snapshot import Snapshot


def _cached(help_text: str, ttl: float) -> str:
    if not ttl:
        return help_text
    return f"{help_text} Answers may be up to {format_duration(ttl)} old (cache)."


@dataclass(frozen=True, slots=True)
class Family:
    """One gauge family of a probe: the single description both renderers below work from."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: Sequence[tuple[tuple[str, ...], float]] = ()


def families(s: Snapshot, module: ModuleConfig) -> list[Family]:
    """Every metric of a probe, named and explained here and nowhere else."""
    mailbox_ttl = module.mailboxes.cache
    recipients_ttl = module.unique_recipients.cache
    mailbox_labels = [(m.user, m.account, m.mailbox) for m in s.mailboxes]
    out = [
        Family(
            "whm_up",
            "1 if WHM answered and accepted the credentials in this probe.",
            samples=[((), int(s.up))],
        ),
        Family(
            "whm_probe_duration_seconds", "Wall time of this probe.", samples=[((), s.duration)]
        ),
        Family(
            "whm_probe_timeout_seconds",
            "Time this probe had: the module timeout, or the scrape timeout minus 0.5s.",
            samples=[((), s.timeout)],
        ),
        Family(
            "whm_probe_deadline_exceeded",
            "1 if the probe stopped at its deadline with calls unanswered.",
            samples=[((), int(s.deadline_exceeded))],
        ),
        Family(
            "whm_api_calls",
            "WHM API calls made (or served from cache) in this probe.",
            ("function",),
            [((f,), n) for f, n in sorted(s.calls.items())],
        ),
        Family(
            "whm_api_errors",
            "Failed WHM API calls in this probe, by function and reason.",
            ("function", "reason"),
            [(k, n) for k, n in sorted(s.errors.items())],
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
            "whm_mailbox_messages",
            _cached("Messages in one mailbox folder.", mailbox_ttl),
            ("user", "account", "mailbox"),
            [(k, m.messages) for k, m in zip(mailbox_labels, s.mailboxes, strict=True)],
        ),
        Family(
            "whm_mailbox_size_bytes",
            _cached("Virtual size of one mailbox folder (vsize), in bytes.", mailbox_ttl),
            ("user", "account", "mailbox"),
            [(k, m.vsize) for k, m in zip(mailbox_labels, s.mailboxes, strict=True)],
        ),
        Family(
            "whm_sender_unique_recipients",
            _cached("Unique remote recipients the sender reached in the window.", recipients_ttl),
            ("user", "sender", "window"),
            [((r.user, r.sender, r.window), r.count) for r in s.senders],
        ),
        Family(
            "whm_user_unique_recipients",
            _cached(
                "Unique remote recipients of the cPanel user's senders in the window.",
                recipients_ttl,
            ),
            ("user", "window"),
            [((u.user, u.window), u.count) for u in s.user_totals],
        ),
        Family(
            "whm_series_dropped",
            "Series left out by folder filters, min_count or max_senders_per_user.",
            ("metric",),
            [((m,), n) for m, n in sorted(s.dropped.items())],
        ),
    ]
    if mailbox_ttl or recipients_ttl:
        out.append(
            Family(
                "whm_cache_age_seconds",
                "Age of the oldest cached answer used in this probe, by function.",
                ("function",),
                [((f,), a) for f, a in sorted(s.cache_age.items())],
            )
        )
    return out


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
        # labels() takes a lock and builds a key on every call; a probe makes thousands.
        durations: dict[str, Histogram] = {}
        requests: dict[tuple[str, str], Counter] = {}

        def observe(function: str, seconds: float, outcome: str) -> None:
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
