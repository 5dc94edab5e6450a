"""Draw each dashboard of this folder from the demo's data in real Prometheus: docs/dashboards/.

    pip install -e '.[test]'                 # matplotlib, besides the package
    python grafana/preview.py                # about 4 minutes of history, then the PNGs
    python grafana/preview.py --minutes 1 --out /tmp/previews

No Grafana server can be installed where this project is built (none in Debian's, PyPI's or
npm's registries), so these are not Grafana's pictures: each panel of the JSON is drawn with
matplotlib at its grid place, with its title, queries, legend format, unit, thresholds, value
mappings and table transformations, from what real Prometheus answers to its queries, the
variables at Grafana's defaults (All, or the first value). Three processes: the simulator with
the demo's scenarios (a new spammer starts after a third of the history, the jumper jumps after
two thirds), the exporter (disk and quota discovery, windows 1h and 24h) and the Debian
``prometheus`` scraping both as README shows, with the project's rules, every group at the
scrape interval. Before Prometheus starts, promtool writes the week of history the rules'
baselines need (backfill.py). It exits 1 if a panel's first query (the others are thresholds,
budgets or more columns) had no data, naming the panel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox
from prometheus_client.parser import text_string_to_metric_families

from backfill import Samples, backfill, complete, every_group_at_once, history
from whm_exporter.simulator.dataset import DEMO, Dataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Grafana's dark theme and its named and classic palette colours.
BACKGROUND, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e8e", "#2c3235"
NAMED = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
}
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0"]
PX = 100  # pixels per inch of the picture
WIDTH = 1920  # Grafana's 24 columns over a full-HD screen
ROW = 36  # pixels per grid row: Grafana's 30 and its margin
HEADER = 70
BROKEN = DEMO.pops[DEMO.user_names[1]][1]
T = TypeVar("T")


def color(name: str) -> str:
    return NAMED.get(name, name)


# --- units, as Grafana's value formats write them -------------------------------------------


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "bytes":
        return _scaled(value, 1024, ["B", "KiB", "MiB", "GiB", "TiB"])
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        if abs(value) < 120:
            return f"{value:.1f} s"
        return f"{value / 60:.1f} min"
    if unit == "reqps":
        return f"{value:.2f} req/s"
    return _scaled(value, 1000, ["", " K", " Mil", " Bil"])


def _scaled(value: float, base: int, names: list[str]) -> str:
    i = 0
    while abs(value) >= base and i < len(names) - 1:
        value, i = value / base, i + 1
    text = f"{value:.0f}" if value == int(value) and i == 0 else f"{value:.3g}"
    return f"{text}{' ' if names[i] and not names[i].startswith(' ') else ''}{names[i]}"


# --- the stack: simulator, exporter, Prometheus ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(what: str, check: Callable[[], T | None], seconds: float = 30) -> T:
    """What ``check`` finds, asked every 0.2 s until it finds something (not None)."""
    end = time.monotonic() + seconds
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > end:
            raise SystemExit(f"{what}: nothing in {seconds:.0f} s")
        time.sleep(0.2)


def answers(url: str) -> bool | None:
    """True once ``url`` answers, None before (for until())."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError):
        return None


def probe(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def simulator_flags(dataset: Dataset) -> list[str]:
    """The simulator's flags for ``dataset``'s sizes, scenarios and Tweak Settings (a test
    checks that the simulator builds ``dataset`` back from them)."""
    switches = {
        "--nobody-sends": dataset.nobody_sends,
        "--suspended-sends": dataset.suspended_sends,
        "--filling-mailbox": dataset.filling_mailbox,
        "--between-sender": dataset.between_sender,
        "--spam-detection-off": not dataset.spam_detection,
    }
    values = {
        "--seed": dataset.seed,
        "--accounts": dataset.accounts,
        "--users": dataset.users,
        "--folders": dataset.folders,
        "--jump-after": dataset.jump_after,
        "--spam-threshold": dataset.spam_threshold,
        "--spam-action": dataset.spam_action,
        "--max-emails-per-hour": dataset.max_emails_per_hour,
        "--max-defer-fail-percentage": dataset.max_defer_fail_percentage,
        "--queue-messages": dataset.queue_messages,
    }
    return [
        *(flag for flag, on in switches.items() if on),
        *(f"{flag}={value}" for flag, value in values.items() if value is not None),
    ]


def new_spammer(dataset: Dataset) -> str:
    """The address that starts spamming a third into the history: the first of the last user
    not suspended whose first address no scenario already drives (the simulator's own quiet
    address would be the demo's between sender, whose 300 must show beside it)."""
    driven = {
        dataset.heavy_sender_address,
        dataset.jumper_address,
        dataset.filling_address,
        dataset.between_address,
        dataset.suspended_sender_address,
    }
    return next(
        address
        for user in reversed(dataset.user_names)
        if not dataset.suspended(user)
        for address in dataset.pops[user][:1]
        if address not in driven
    )


def start_spammer(simulator: str, address: str) -> None:
    """POST /_sim/spammer: ``address`` reaches 2000 unique recipients an hour from now."""
    query = urllib.parse.urlencode({"address": address, "rate": 2000})
    with urllib.request.urlopen(
        urllib.request.Request(f"{simulator}/_sim/spammer?{query}", method="POST"), timeout=10
    ):
        pass


def scrape_config(exporter: str, interval: float, rules: Path) -> dict[str, Any]:
    """README's scrape config for the demo at ``exporter`` (host:port), with ``rules``."""
    every = f"{interval:g}s"
    return {
        "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "whm",
                "metrics_path": "/probe",
                "static_configs": [{"targets": ["demo"]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter},
                ],
            },
            {"job_name": "whm-exporter", "static_configs": [{"targets": [exporter]}]},
        ],
    }


@contextlib.contextmanager
def stack(
    work: Path,
    dataset: Dataset,
    history_seconds: float,
    interval: float,
    prometheus: str,
    promtool: str,
) -> Iterator[str]:
    """The three processes, Prometheus started on a week of history; yields Prometheus' URL."""
    token = secrets.token_hex(16)
    sim, exporter, prom = free_port(), free_port(), free_port()
    config = {
        "modules": {
            "default": {
                "token": token,
                "discovery": {"function": "list_pops_with_disk"},
                # Two senders a user at most: the dropped ones show on the health dashboard.
                "unique_recipients": {"windows": ["1h", "24h"], "max_senders_per_user": 2},
            }
        },
        "targets": {"demo": {"url": f"http://127.0.0.1:{sim}"}},
    }
    (work / "whm.yml").write_text(json.dumps(config))  # JSON is YAML
    scrape = scrape_config(
        f"127.0.0.1:{exporter}", interval, every_group_at_once(work / "rules.yml")
    )
    (work / "prometheus.yml").write_text(json.dumps(scrape))
    procs: list[subprocess.Popen[bytes]] = []
    spammer: threading.Timer | None = None

    def start(*command: str) -> None:
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT))

    try:
        start(
            sys.executable,
            "-m",
            "whm_exporter.simulator",
            f"--listen=127.0.0.1:{sim}",
            f"--token={token}",
            *simulator_flags(dataset),
            "--latency=0.02",
            # One mailbox whose calls fail, as on a real server now and then.
            f"--fault={BROKEN}=api_error",
        )
        simulator_started = time.monotonic()
        start(
            sys.executable,
            "-m",
            "whm_exporter",
            f"--config.file={work / 'whm.yml'}",
            f"--web.listen-address=127.0.0.1:{exporter}",
            "--log.level=error",
        )
        until("the exporter", lambda: answers(f"http://127.0.0.1:{exporter}/-/healthy"))

        def served() -> Samples | None:
            found = probe(f"http://127.0.0.1:{exporter}/probe?target=demo")
            return found if complete(found, dataset) else None

        found = until("the heavy sender, the jumper and the filling mailbox in a probe", served)
        # A third into the history, counted from the simulator's start as the jump is (it
        # answers by now).
        spammer = threading.Timer(
            max(0.0, history_seconds / 3 - (time.monotonic() - simulator_started)),
            start_spammer,
            (f"http://127.0.0.1:{sim}", new_spammer(dataset)),
        )
        spammer.start()
        backfill(promtool, work / "data", history(found, dataset, time.time()))
        start(
            prometheus,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom}",
            "--log.level=error",
        )
        until("Prometheus", lambda: answers(f"http://127.0.0.1:{prom}/-/ready"))
        yield f"http://127.0.0.1:{prom}"
    finally:
        if spammer is not None:
            spammer.cancel()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
            body = json.load(resp)
        if body["status"] != "success":
            raise SystemExit(f"Prometheus refused {params}: {body}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[Any]:
        data = self.api("query", query=expr, time=f"{at:.3f}")
        return list(data["result"]) if data["resultType"] == "vector" else []

    def range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )
        return list(data["result"])


# --- variables, as Grafana picks them when a dashboard opens ---------------------------------


def variables(
    board: dict[str, Any], prom: Prometheus, step: float, interval: float
) -> dict[str, str]:
    """Each variable's value as Grafana sets it when the dashboard opens: All where the
    variable has it (every value it lists, as one regex), else its first value."""
    values = {"__rate_interval": f"{max(step + interval, 4 * interval):g}s"}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", fill(var["definition"], values))
        if match is None:
            raise SystemExit(f"{board['title']}: variable {var['name']}: not label_values()")
        found = prom.api(f"label/{match[2]}/values", **{"match[]": match[1]})
        if var.get("includeAll"):
            values[var["name"]] = "(" + "|".join(regex_escape(v) for v in found) + ")"
        else:
            values[var["name"]] = found[0] if found else ""
    return values


def regex_escape(value: str) -> str:
    """A value inside a PromQL regex string as Grafana's Prometheus data source escapes it."""
    return re.sub(r"[$^*{}\[\]'+?.()|\\]", lambda m: "\\\\" + m[0], value)


def fill(expr: str, values: dict[str, str]) -> str:
    # Longest names first: $user must not eat the start of $user_id.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def legend(form: str | None, metric: dict[str, str]) -> str:
    if not form:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in metric.items() if k != "__name__") + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m[1], ""), form)


def step_color(panel: dict[str, Any], value: float) -> str:
    """The colour of a value: its mapping's, else its colour scheme's or threshold step's."""
    defaults = panel["fieldConfig"]["defaults"]
    for mapping in defaults.get("mappings", []):
        hit = mapping.get("options", {}).get(_key(value))
        if hit and hit.get("color"):
            return color(hit["color"])
    if defaults.get("color", {}).get("mode") == "continuous-GrYlRd":
        low, high = defaults.get("min", 0), defaults.get("max", 1)
        share = min(1.0, max(0.0, (value - low) / ((high - low) or 1)))
        return str(matplotlib.colors.to_hex(GR_YL_RD(share)))
    chosen = "green"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            chosen = step["color"]
    return color(chosen)


GR_YL_RD = matplotlib.colors.LinearSegmentedColormap.from_list(
    "GrYlRd", [NAMED["green"], NAMED["yellow"], NAMED["red"]]
)


def _key(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def shown(
    panel: dict[str, Any],
    value: float,
    unit: str | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> str:
    """A value as the panel writes it: ``mappings`` (a column's) or the panel's own, else in
    ``unit`` or the panel's."""
    defaults = panel["fieldConfig"]["defaults"]
    for mapping in defaults.get("mappings", []) if mappings is None else mappings:
        hit = mapping.get("options", {}).get(_key(value))
        if hit and hit.get("text"):
            return str(hit["text"])
    return fmt(value, unit or defaults.get("unit", "short"))


# --- panels ----------------------------------------------------------------------------------


class Frame:
    """What a panel draws from: the range and the queries' answers."""

    def __init__(
        self, prom: Prometheus, values: dict[str, str], start: float, end: float, step: float
    ) -> None:
        self.prom, self.values, self.start, self.end, self.step = prom, values, start, end, step
        self.unanswered: set[str] = set()  # the queries (as the panels write them) with no data

    def answer(self, target: dict[str, Any], *, instant: bool) -> list[Any]:
        """A query's series at the end of the range, or over it."""
        expr = fill(target["expr"], self.values)
        if instant:
            found = self.prom.instant(expr, self.end)
        else:
            found = self.prom.range(expr, self.start, self.end, self.step)
        if not found:
            self.unanswered.add(target["expr"])
        return found

    def series(self, panel: dict[str, Any]) -> list[tuple[str, list[tuple[float, float]]]]:
        found = []
        for target in panel["targets"]:
            for s in self.answer(target, instant=False):
                points = [(float(t), float(v)) for t, v in s["values"]]
                found.append((legend(target.get("legendFormat"), s["metric"]), points))
        return found

    def latest(self, panel: dict[str, Any]) -> list[tuple[str, float]]:
        found = []
        for target in panel["targets"]:
            for s in self.answer(target, instant=True):
                found.append(
                    (legend(target.get("legendFormat"), s["metric"]), float(s["value"][1]))
                )
        return found


class Box:
    """A panel's place in the picture, in pixels from the top left, and its plot area."""

    def __init__(self, fig: Figure, x: float, top: float, w: float, h: float) -> None:
        self.fig, self.x, self.top, self.w, self.h = fig, x, top, w, h

    def axes(self, left: float = 56, below: float = 0) -> Axes:
        """The plot area: ``left`` pixels for labels, ``below`` for a legend."""
        height = self.fig.get_figheight() * PX
        ax = self.fig.add_axes(
            (
                (self.x + left) / WIDTH,
                1 - (self.top + self.h - 14 - below) / height,
                (self.w - left - 24) / WIDTH,
                (self.h - 44 - below) / height,
            )
        )
        ax.set_facecolor(PANEL)
        ax.tick_params(colors=MUTED, labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
        return ax

    def below(self, room: float) -> tuple[float, float]:
        """Where the ``room`` pixels at the bottom of the panel begin, in figure fractions."""
        height = self.fig.get_figheight() * PX
        return ((self.x + 56) / WIDTH, 1 - (self.top + self.h - 8 - room) / height)


def label_room(names: list[str], box: Box) -> float:
    """Pixels for the longest of ``names`` at 7 points, at most 45 % of the panel."""
    return min(box.w * 0.45, 24 + 6.3 * max((len(n) for n in names), default=0))


TICK_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def time_axis(ax: Axes, frame: Frame) -> None:
    """Round times, at most eight, written as Grafana writes them (UTC here)."""
    span = frame.end - frame.start
    step = next((s for s in TICK_STEPS if span / s <= 8), TICK_STEPS[-1])
    first = math.ceil(frame.start / step) * step
    ax.set_xticks(range(first, int(frame.end) + 1, step))
    ax.set_xlim(frame.start, frame.end)
    pattern = "%H:%M:%S" if step < 60 else "%H:%M"
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: time.strftime(pattern, time.gmtime(v))))


LEGEND_ROWS, LEGEND_ROW = 3, 15  # rows under a graph, pixels each


def draw_timeseries(box: Box, panel: dict[str, Any], frame: Frame) -> str:
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    series = frame.series(panel)
    ax = box.axes(below=LEGEND_ROW * LEGEND_ROWS + 22)  # and the time axis' labels
    for i, (name, points) in enumerate(series):
        dashed = "threshold" in name or "stale from" in name or "timeout" in name
        ax.plot(
            [t for t, _ in points],
            [v for _, v in points],
            color=PALETTE[i % len(PALETTE)],
            linewidth=1.2,
            linestyle="--" if dashed else "-",
            label=name,
        )
    time_axis(ax, frame)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.grid(color=GRID, linewidth=0.6)
    if series:
        # As many columns as the width holds; what does not fit in the rows is counted.
        columns = max(1, int(box.w // 250))
        handles, labels = ax.get_legend_handles_labels()
        room = columns * LEGEND_ROWS
        if len(labels) > room:
            handles, labels = handles[: room - 1], labels[: room - 1]
            handles.append(Line2D([], [], color=PANEL))
            labels.append(f"and {len(series) - room + 1} more")
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=box.below(LEGEND_ROW * LEGEND_ROWS),
            bbox_transform=box.fig.transFigure,
            borderaxespad=0,
            borderpad=0,
            ncol=columns,
            fontsize=7,
            frameon=False,
            labelcolor=TEXT,
            handlelength=1.2,
        )
    return f"{len(series)} series" if series else ""


def draw_state_timeline(box: Box, panel: dict[str, Any], frame: Frame) -> str:
    series = frame.series(panel)
    ax = box.axes(left=label_room([n for n, _ in series], box))
    for row, (_, points) in enumerate(series):
        y = len(series) - 1 - row
        ends = [t for t, _ in points[1:]] + [frame.end]
        for (t, v), t2 in zip(points, ends, strict=True):
            # A gap in the answers stays empty, as Grafana leaves it.
            width = min(t2, t + frame.step) - t
            ax.barh(
                y,
                width,
                left=t,
                height=0.8,
                color=step_color(panel, v),
            )
        if points:
            ax.text(
                frame.end,
                y,
                f"{shown(panel, points[-1][1])}  ",
                ha="right",
                va="center",
                fontsize=8,
                color=BACKGROUND,
            )
    ax.set_yticks(range(len(series)), [n for n, _ in reversed(series)], fontsize=7, color=TEXT)
    time_axis(ax, frame)
    return f"{len(series)} rows" if series else ""


def draw_stat(box: Box, panel: dict[str, Any], frame: Frame) -> str:
    ax = box.axes(left=16)
    ax.axis("off")
    values = frame.latest(panel)
    for i, (name, value) in enumerate(values):
        x = (i + 0.5) / len(values)
        ax.text(
            x,
            0.45,
            shown(panel, value),
            ha="center",
            va="center",
            fontsize=26,
            fontweight="bold",
            color=step_color(panel, value),
            transform=ax.transAxes,
        )
        if len(values) > 1:
            ax.text(x, 0.9, name, ha="center", fontsize=8, color=TEXT, transform=ax.transAxes)
    return ", ".join(shown(panel, value) for _, value in values)


def draw_bargauge(box: Box, panel: dict[str, Any], frame: Frame) -> str:
    defaults = panel["fieldConfig"]["defaults"]
    values = frame.latest(panel)[: max(1, int((box.h - 50) // 20))]
    ax = box.axes(left=label_room([n for n, _ in values], box))
    top = defaults.get("max") or max((v for _, v in values), default=0) or 1
    for i, (_, value) in enumerate(values):
        y = len(values) - 1 - i
        ax.barh(y, 1, color=GRID, height=0.7)
        ax.barh(y, min(1, value / top), color=step_color(panel, value), height=0.7)
        ax.text(1.01, y, shown(panel, value), va="center", fontsize=8, color=TEXT)
    ax.set_xlim(0, 1.18)
    ax.set_ylim(-0.5, max(len(values), 6) - 0.5)
    ax.set_yticks(range(len(values)), [n for n, _ in reversed(values)], fontsize=7, color=TEXT)
    ax.set_xticks([])
    return f"{len(values)} bars" if values else ""


def table_rows(panel: dict[str, Any], frame: Frame) -> tuple[list[str], list[list[str]]]:
    """The rows Grafana's merge and organize transformations make of the instant answers."""
    merged: dict[frozenset[tuple[str, str]], dict[str, float]] = {}
    multi = len(panel["targets"]) > 1
    for target in panel["targets"]:
        column = f"Value #{target['refId']}" if multi else "Value"
        for s in frame.answer(target, instant=True):
            key = frozenset((k, v) for k, v in s["metric"].items() if k != "__name__")
            merged.setdefault(key, {})[column] = float(s["value"][1])
    organize: dict[str, Any] = next(
        (t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {}
    )
    hidden = {k for k, v in organize.get("excludeByName", {}).items() if v}
    rename = organize.get("renameByName", {})
    # Each column's own unit and value mappings, by its title.
    units, mappings = (
        {
            o["matcher"]["options"]: p["value"]
            for o in panel["fieldConfig"].get("overrides", [])
            for p in o["properties"]
            if p["id"] == kind
        }
        for kind in ("unit", "mappings")
    )
    labels = sorted({k for key in merged for k, _ in key} - hidden)
    values = sorted({c for row in merged.values() for c in row} - hidden)
    records = [(dict(key), row) for key, row in merged.items()]
    for sort in panel.get("options", {}).get("sortBy", []):
        name = next((c for c in values if rename.get(c, c) == sort["displayName"]), None)
        if name:
            records.sort(key=by_column(name), reverse=sort["desc"])
    header = labels + [rename.get(c, c) for c in values]
    rows = [
        [key.get(k, "") for k in labels]
        + [
            shown(panel, row[c], units.get(rename.get(c, c)), mappings.get(rename.get(c, c)))
            if c in row
            else ""
            for c in values
        ]
        for key, row in records
    ]
    return header, rows


Record = tuple[dict[str, str], dict[str, float]]


def by_column(column: str) -> Callable[[Record], float]:
    """A row's value in ``column``, rows without one last."""
    return lambda record: record[1].get(column, -math.inf)


def draw_table(box: Box, panel: dict[str, Any], frame: Frame) -> str:
    ax = box.axes(left=16)
    ax.axis("off")
    header, rows = table_rows(panel, frame)
    if not rows:
        return ""
    fits = max(1, int((box.h - 50) // 20) - 1)
    share = (min(len(rows), fits) + 1) / (fits + 1)
    cells = [header, *rows[:fits]]
    # Each column as wide as its longest text needs, of the panel's width.
    widest = [max(len(row[i]) for row in cells) + 2 for i in range(len(header))]
    widths = [w / sum(widest) for w in widest]
    table = ax.table(
        cellText=cells,
        cellLoc="left",
        colWidths=widths,
        bbox=Bbox.from_bounds(0, 1 - share, 1, share),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor(GRID)
        cell.set_facecolor(PANEL if r else "#22252b")
        cell.get_text().set_color(TEXT)
    return f"{len(rows)} rows"


# Each draws a panel and says what it shows ("" for nothing).
DRAW: dict[str, Callable[[Box, dict[str, Any], Frame], str]] = {
    "timeseries": draw_timeseries,
    "state-timeline": draw_state_timeline,
    "stat": draw_stat,
    "bargauge": draw_bargauge,
    "table": draw_table,
}


def render(
    board: dict[str, Any], frame: Frame, picked: str
) -> tuple[Figure, list[tuple[str, str]]]:
    """The dashboard's picture, and each panel's title with what it shows: "" where its first
    query had no data (the others are thresholds, budgets or more columns of a table)."""
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    height = HEADER + rows * ROW
    fig = plt.figure(figsize=(WIDTH / PX, height / PX), dpi=PX, facecolor=BACKGROUND)
    fig.text(12 / WIDTH, 1 - 28 / height, board["title"], fontsize=16, color=TEXT)
    fig.text(12 / WIDTH, 1 - 52 / height, picked, fontsize=8, color=MUTED)
    shown_by = []
    for panel in board["panels"]:
        g = panel["gridPos"]
        box = Box(
            fig, g["x"] * WIDTH / 24, HEADER + g["y"] * ROW, g["w"] * WIDTH / 24, g["h"] * ROW
        )
        frame_ax = fig.add_axes(
            (
                (box.x + 4) / WIDTH,
                1 - (box.top + box.h - 4) / height,
                (box.w - 8) / WIDTH,
                (box.h - 8) / height,
            )
        )
        frame_ax.set_facecolor(PANEL)
        frame_ax.set_xticks([])
        frame_ax.set_yticks([])
        for spine in frame_ax.spines.values():
            spine.set_color(GRID)
        fig.text(
            (box.x + 12) / WIDTH,
            1 - (box.top + 22) / height,
            panel["title"],
            fontsize=9,
            color=TEXT,
            fontweight="bold",
        )
        shows = DRAW[panel["type"]](box, panel, frame)
        if not shows:
            fig.text(
                (box.x + box.w / 2) / WIDTH,
                1 - (box.top + box.h / 2) / height,
                "No data",
                ha="center",
                va="center",
                color=MUTED,
            )
        if panel["targets"][0]["expr"] in frame.unanswered:
            shows = ""
        shown_by.append((panel["title"], shows))
    return fig, shown_by


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=4, help="history to gather before drawing")
    p.add_argument("--interval", type=float, default=5, help="Prometheus' scrape interval, s")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboards")
    p.add_argument("--prometheus", default="prometheus", help="the Prometheus binary")
    p.add_argument("--promtool", default="promtool", help="its promtool, for the backfill")
    args = p.parse_args(argv)
    seconds = args.minutes * 60
    # The jumper at two thirds of the history, the new spammer at one third (counted from the
    # simulator's start, a few seconds before the pictures' range begins).
    dataset = replace(DEMO, jump_after=round(seconds * 2 / 3))
    args.out.mkdir(parents=True, exist_ok=True)
    missing = []
    with (
        tempfile.TemporaryDirectory() as work,
        stack(Path(work), dataset, seconds, args.interval, args.prometheus, args.promtool) as url,
    ):
        prom = Prometheus(url)
        began = time.time()
        print(f"gathering {seconds:.0f} s of history from the demo into {url}", flush=True)
        time.sleep(seconds)
        end = time.time()
        step = max(args.interval, (end - began) / 240)
        for path in sorted(HERE.glob("*.json")):
            board = json.loads(path.read_text())
            values = variables(board, prom, step, args.interval)
            picked = "  ".join(
                f"{v['name']} = {'All' if v.get('includeAll') else values[v['name']]}"
                for v in board["templating"]["list"]
                if v["type"] == "query"
            )
            picked += (
                f"   ·   last {(end - began) / 60:.0f} min of the demo, after a week of "
                "backfilled history   ·   drawn by "
                "grafana/preview.py from the dashboard JSON and real Prometheus answers, "
                "not by Grafana"
            )
            fig, shown_by = render(board, Frame(prom, values, began, end, step), picked)
            out = args.out / f"{path.stem}.png"
            fig.savefig(out, facecolor=BACKGROUND)
            plt.close(fig)
            empty = [title for title, shows in shown_by if not shows]
            print(f"{out}: {len(board['panels'])} panels, {len(empty)} without data", flush=True)
            for title, shows in shown_by:
                print(f"  {title}: {shows or 'no data'}", flush=True)
            missing += [f"{path.name}: {title}" for title in empty]
    for where in missing:
        print(f"no data: {where}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
