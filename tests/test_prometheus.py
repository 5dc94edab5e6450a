"""The operations bundle against real Prometheus: promtool on the rules, then the Debian
`prometheus` binary scraping the exporter (README's relabelling to /probe) which probes the
simulator; every rule loads healthy, every dashboard query and variable returns data, and the
outbound-spam alert picks the simulator's heavy sender."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import TOKEN, WHM, Running, require_tool

from whm_exporter.simulator import Dataset

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "whm-exporter.rules.yml"
RULE_TESTS = ROOT / "prometheus" / "tests" / "whm-exporter.rules.test.yml"
DASHBOARDS = sorted((ROOT / "grafana").glob("*.json"))
DATASET = Dataset(accounts=24, users=6, folders=5)
HEAVY = DATASET.heavy_sender_address
assert HEAVY is not None
HEAVY_USER = DATASET.user_names[0]


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_cover_every_alert_both_ways() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [c for t in tests for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert fired == alerts, alerts - fired
    assert quiet == alerts, alerts - quiet


def test_dashboards_are_what_the_generator_writes() -> None:
    sys.path.insert(0, str(ROOT / "grafana"))
    import generate

    for name, build in generate.DASHBOARDS.items():
        assert (ROOT / "grafana" / name).read_text() == generate.render(build), name


def test_dashboards_have_a_datasource_variable_and_describe_every_panel() -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"]
        assert board["schemaVersion"] >= 36
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:3] == ["datasource", "job", "instance"], path.name
        assert "${DS_" not in path.read_text()
        for panel in board["panels"]:
            assert panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape_config(exporter: str) -> dict[str, Any]:
    """The README's scrape config, pointed at the test's exporter and made fast."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
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


class Prometheus:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> list[Any]:
        data = await self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    async def wait_for(self, expr: str, seconds: float = 30) -> list[Any]:
        for _ in range(int(seconds * 4)):
            result = await self.query(expr)
            if result:
                return result
            await asyncio.sleep(0.25)
        raise AssertionError(f"nothing for {expr} after {seconds}s")


@pytest.fixture
async def prometheus(start_whm, start_exporter, tmp_path: Path) -> AsyncIterator[Prometheus]:
    binary = require_tool("prometheus")
    heavy_folder = DATASET.pops[DATASET.user_names[1]][0]
    whm: WHM = await start_whm(DATASET, faults={heavy_folder: "api_error"})
    running: Running = await start_exporter(
        {
            "modules": {
                "default": {"token": TOKEN, "unique_recipients": {"max_senders_per_user": 2}}
            },
            "targets": {"demo": {"url": whm.url}},
        }
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(running.url.removeprefix("http://"))))
    port = _free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped by its own pid below
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            prom = Prometheus(f"http://127.0.0.1:{port}", session)
            for _ in range(120):
                try:
                    await prom.api("status/buildinfo")
                    break
                except (aiohttp.ClientError, AssertionError):
                    await asyncio.sleep(0.25)
            yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fill(expr: str) -> str:
    """A dashboard query with its variables filled as a user would pick them."""
    values = {
        "$job": "whm",
        "$instance": "demo",
        "$user": HEAVY_USER,
        "$account": HEAVY or "",
        "$window": "1h",
        "$threshold": "500",
        "$__rate_interval": "1m",
    }
    for var, val in values.items():
        expr = expr.replace(var, val)
    assert "$" not in expr, expr
    return expr


async def test_real_prometheus_scrapes_evaluates_and_answers_every_dashboard_query(
    prometheus: Prometheus,
) -> None:
    up = await prometheus.wait_for('up{job="whm", instance="demo"} == 1')
    assert up
    await prometheus.wait_for('up{job="whm-exporter"} == 1')
    await prometheus.wait_for("whm_up == 1")

    await prometheus.wait_for("whm:probe_timeout_ratio")
    rules = await prometheus.api("rules")
    health = {r["name"]: r["health"] for g in rules["groups"] for r in g["rules"]}
    assert health
    assert set(health.values()) == {"ok"}, health

    spam = await prometheus.wait_for('ALERTS{alertname="WhmOutboundSpamSuspected"}')
    assert {(a["metric"]["user"], a["metric"]["sender"]) for a in spam} == {(HEAVY_USER, HEAVY)}

    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for var in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", var.get("definition", ""))
            if match:
                selector, label = _fill(match[1]), match[2]
                values = await prometheus.api(f"label/{label}/values", **{"match[]": selector})
                assert values, f"{path.name}: variable {var['name']} has no values"
        for panel in board["panels"]:
            for target in panel["targets"]:
                result = await prometheus.query(_fill(target["expr"]))
                assert result, f"{path.name}: {panel['title']}: {target['expr']} returned nothing"
