"""A week of the demo's history for a Prometheus about to start, and the rule file as it can
use it at once: for grafana/preview.py and the real-Prometheus tests, which cannot wait a week
for the rules' baseline (whm:sender_unique_recipients:usual) or a day for a mailbox's growth
(whm:account_quota:seconds_to_full).

The history follows what the exporter serves of the simulator's data set (its label sets,
``job="whm"`` and ``instance="demo"`` as README's scrape config gives them): promtool writes it
into the storage before Prometheus opens it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import yaml

from whm_exporter.simulator.dataset import FILL_SECONDS, Dataset

RULES = Path(__file__).resolve().parent.parent / "prometheus" / "whm-exporter.rules.yml"
STEP = 300  # the interval of the group whm-exporter.long-range
# What a probe serves: {(name, labels): value}.
Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def served(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def complete(found: Samples, dataset: Dataset) -> bool:
    """Whether a probe serves the series the history is about: the heavy sender, the jumper
    and the filling mailbox (scenarios the data set has off are not waited for)."""
    senders = {dict(s)["sender"] for s in served(found, "whm_sender_unique_recipients")}
    accounts = {dict(s)["account"] for s in served(found, "whm_account_quota_bytes")}
    wanted = [dataset.heavy_sender_address, dataset.jumper_address]
    filling = dataset.filling_address
    return all(s is None or s in senders for s in wanted) and (
        filling is None or filling in accounts
    )


def history(found: Samples, dataset: Dataset, now: float) -> Iterator[str]:
    """The week before ``now`` as Prometheus would have stored it, in OpenMetrics: each served
    sender's 5-minute series at its count an hour before the simulator started (the jumper's
    usual 20; the heavy sender at a twentieth of its count, as far above its usual level but
    over the spam threshold), and the day of disk use the rules need: flat, but for the filling
    mailbox on the line it follows from the start."""

    def line(name: str, labels: dict[str, str], value: float, at: int) -> str:
        text = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
        return f'{name}{{job="whm",instance="demo",{text}}} {value} {at}'

    yield "# TYPE whm:sender_unique_recipients:max5m gauge"
    for labels in served(found, "whm_sender_unique_recipients"):
        sender = dict(labels)
        if sender["window"] != "1h":
            continue
        usual = dataset.senders(sender["user"], 3600, uptime=-3600)[sender["sender"]]
        if sender["sender"] == dataset.heavy_sender_address:
            usual //= 20
        for at in range(int(now) - 7 * 86400, int(now), STEP):
            yield line("whm:sender_unique_recipients:max5m", sender, usual, at)
    quotas = served(found, "whm_account_quota_bytes")
    yield "# TYPE whm_account_disk_used_bytes gauge"
    for labels, used in served(found, "whm_account_disk_used_bytes").items():
        filling = dict(labels)["account"] == dataset.filling_address
        growth = (quotas[labels] - used) / FILL_SECONDS if filling else 0.0
        for at in range(int(now) - 86400 - 3600, int(now), STEP):
            yield line("whm_account_disk_used_bytes", dict(labels), used - growth * (now - at), at)
    yield "# EOF"


def backfill(promtool: str, data: Path, lines: Iterable[str]) -> None:
    """``lines`` (OpenMetrics) into the storage folder ``data``, with promtool's backfill,
    before Prometheus starts on it."""
    source = data.parent / "history.om"
    source.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {result.stdout}{result.stderr}")


def every_group_at_once(path: Path) -> Path:
    """The rule file written to ``path`` with every group at the evaluation_interval: a group
    of its own interval (5m, 1h) first runs up to that long after Prometheus starts."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group.pop("interval", None)
    path.write_text(yaml.safe_dump(rules))
    return path
