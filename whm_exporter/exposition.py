"""Families to bytes: the text format written directly, and prometheus_client's encoders for the
rest. What a metric is called and means is metrics.py's business; here only how it is written."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from whm_exporter.metrics import Family


class FamiliesCollector(Collector):
    """prometheus_client's view of the families, for OpenMetrics and the debug page."""

    def __init__(self, fams: Sequence[Family]) -> None:
        self._families = fams

    def collect(self) -> Iterator[Metric]:
        for f in self._families:
            gauge = GaugeMetricFamily(f.name, f.help, labels=f.labels)
            for values, value in f.samples:
                gauge.add_metric(values, value)
            yield gauge


def probe_registry(fams: Sequence[Family]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(fams))
    return registry


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def render_text(fams: Sequence[Family]) -> bytes:
    """The text format 0.0.4, written directly.

    prometheus_client spends about 7 us per series on generic work (label-name validation,
    sorting, float formatting); a probe of 2,000 mailboxes has 30,000 series, so that alone was
    most of the exporter's CPU. The output is pinned to prometheus_client's by a test.
    """
    out: list[str] = []
    # Values repeat (a user on every series of its accounts) and label sets repeat (messages and
    # size of one folder): escape and format each once.
    escaped: dict[str, str] = {}
    label_sets: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for f in fams:
        help_text = f.help.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {f.name} {help_text}\n# TYPE {f.name} gauge\n")
        names = f.labels
        for values, v in f.samples:
            text = label_sets.get((names, values))
            if text is None:
                parts = []
                for name, x in zip(names, values, strict=True):
                    e = escaped.get(x)
                    if e is None:
                        e = escaped[x] = _label_value(x)
                    parts.append(f'{name}="{e}"')
                text = label_sets[(names, values)] = "{" + ",".join(parts) + "}" if parts else ""
            out.append(f"{f.name}{text} {_number(v)}\n")
    return "".join(out).encode()
