"""Families to bytes: the text format 0.0.4 and OpenMetrics 1.0, written directly and in chunks,
and the exporter's own registry through prometheus_client. What a metric is called and means is
metrics.py's business; here only how it is written."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from whm_exporter.series import Family

# A chunk is sent (and compressed) once this many lines are written: about 100 kB, so a
# 300,000-series answer is never held whole in memory.
CHUNK_LINES = 1000


def _escape_label_value(value: str) -> str:
    # The same in both formats: backslash, double quote and line feed.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str, openmetrics: bool) -> str:
    # Text 0.0.4 escapes backslash and line feed in HELP; OpenMetrics the double quote too.
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _template(name: str, labels: tuple[str, ...]) -> str:
    """``name{a="{}",b="{}"} `` ready for str.format with the escaped values. Metric and label
    names are never braces, so only the braces of the set itself need doubling."""
    if not labels:
        return name + " "
    return name + "{{" + ",".join(f'{label}="{{}}"' for label in labels) + "}} "


def write(fams: Iterable[Family], openmetrics: bool = False) -> Iterator[bytes]:
    """The families as text 0.0.4, or OpenMetrics 1.0 (``# EOF`` at the end), in chunks.

    A gauge's sample carries the family's name in both formats; a counter's adds ``_total``,
    which text 0.0.4 writes in its HELP and TYPE lines too and OpenMetrics does not. No
    ``# UNIT`` line (a unit is optional in OpenMetrics), no ``_created`` (as the Go exporters).

    prometheus_client's writers spend about 7 us per series on generic work (label-name
    validation, sorting, float formatting) and OpenMetrics ten times that; a large probe has
    hundreds of thousands of series. Tests pin the output to prometheus_client's.
    """
    out: list[str] = []
    # Values repeat (a user on every series of its accounts): escape each once.
    escaped: dict[str, str] = {}
    for f in fams:
        sample = f.name + "_total" if f.type == "counter" else f.name
        head = f.name if openmetrics else sample
        out.append(f"# HELP {head} {_escape_help(f.help, openmetrics)}\n# TYPE {head} {f.type}\n")
        template = _template(sample, f.labels)
        for values, v in f.samples:
            parts = []
            for x in values:
                e = escaped.get(x)
                if e is None:
                    e = escaped[x] = _escape_label_value(x)
                parts.append(e)
            out.append(template.format(*parts) + _number(v) + "\n")
            if len(out) >= CHUNK_LINES:
                yield "".join(out).encode()
                out.clear()
    if openmetrics:
        out.append("# EOF\n")
    yield "".join(out).encode()


def render_text(fams: Iterable[Family]) -> bytes:
    """The whole text 0.0.4 at once, for pages that show it (the debug page)."""
    return b"".join(write(fams))


class WithoutCreated(Collector):
    """A registry's metrics without the ``_created`` series prometheus_client adds to counters,
    histograms and summaries (the Go exporters have none). Filtered here, for this registry
    alone: prometheus_client's own switch, disable_created_metrics(), is process-wide."""

    def __init__(self, registry: Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [s for s in metric.samples if s.name != created]
            yield kept
