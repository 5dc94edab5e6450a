"""Shared test parts: the official fixtures, the simulator and the exporter on loopback, a
reader for the exposition formats, and a way to wait for a condition instead of a time."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses_shim
import pytest
import yaml
from aiohttp import web
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from whm_exporter.config import STATE_SECTIONS, Loaded, build_config, load_config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.server import WebOptions, make_app
from whm_exporter.simulator import Dataset, Knobs, Simulator, serve
from whm_exporter.storage import Keeper
from whm_exporter.webconfig import WebSecurity

aioresponses_shim.install()

FIXTURES = Path(__file__).parent / "fixtures"
# Distinctive, so a leak is found by a plain substring search.
TOKEN = "TOKEN-9f3b7c1e5a-NEVER-PRINT"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Exposition text (0.0.4, or OpenMetrics when it ends with ``# EOF``) to
    {(name, labels): value}; fails on anything the parser refuses and on any series written
    twice, which makes the whole exposition invalid for Prometheus."""
    openmetrics = text.rstrip().endswith("# EOF")
    families = openmetrics_families(text) if openmetrics else text_string_to_metric_families(text)
    out: Samples = {}
    for family in families:
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in out:
                raise AssertionError(f"series written twice: {s.name} {s.labels}")
            out[key] = s.value
    # The OpenMetrics parser drops a sample repeated right after itself without a word: every
    # sample line must have been read.
    lines = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    if lines != len(out):
        raise AssertionError(f"{lines} sample lines but {len(out)} series: some written twice")
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def series(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def module(url: str, **overrides: Any) -> dict[str, Any]:
    """A config document with one module and one target ``t`` at ``url``."""
    users = overrides.pop("users", None)
    target: dict[str, Any] = {"url": url}
    if users is not None:
        target["users"] = users
    return {"modules": {"default": {"token": TOKEN, **overrides}}, "targets": {"t": target}}


# The collection sections beside discovery (the inventory), each a family's.
SECTIONS = tuple(s for s in STATE_SECTIONS if s != "discovery")


def only(url: str, *kept: str, **overrides: Any) -> dict[str, Any]:
    """:func:`module` with every collection section off but ``kept`` and the inventory, for a
    test of one family (and what ``overrides`` sets)."""
    off = {section: {"enabled": False} for section in SECTIONS if section not in kept}
    return module(url, **{**off, **overrides})


def loaded(document: dict[str, Any]) -> Loaded:
    return build_config(document, env={})


@dataclass
class WHM:
    sim: Simulator
    url: str


@dataclass
class Running:
    exporter: Exporter
    url: str
    session: aiohttp.ClientSession
    runner: web.AppRunner
    # The file the config was loaded from (start_exporter's config_file), else None.
    config_file: Path | None = None

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with self.session.get(self.url + path, headers=headers) as resp:
            return resp.status, await resp.text()

    async def probe(self, target: str = "t", **headers: str) -> Samples:
        status, text = await self.get(f"/probe?target={target}", **headers)
        assert status == 200, text
        return samples(text)


@pytest.fixture
async def start_whm() -> AsyncIterator[Callable[..., Awaitable[WHM]]]:
    runners: list[web.AppRunner] = []

    async def start(dataset: Dataset | None = None, **knobs: Any) -> WHM:
        sim = Simulator(dataset or Dataset(), token=TOKEN, knobs=Knobs(**knobs))
        runner, url = await serve(sim)
        runners.append(runner)
        return WHM(sim, url)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def whm(start_whm: Callable[..., Awaitable[WHM]]) -> WHM:
    return await start_whm()


@pytest.fixture
async def start_exporter(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start the exporter's app on a loopback port: ``config_file`` loads the document from
    tmp_path/config.yml (so that /-/reload reads it again), ``storage`` is --storage.path
    (written every ``interval`` seconds), ``security`` the web config (TLS, basic auth) and
    ``options`` the web flags. Stopped as SIGTERM stops it (the app's cleanup)."""
    started: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def start(
        document: dict[str, Any],
        *,
        config_file: bool = False,
        storage: Path | None = None,
        interval: float = 60.0,
        security: WebSecurity | None = None,
        options: WebOptions | None = None,
    ) -> Running:
        metrics = ExporterMetrics()
        path = None
        if config_file:
            path = tmp_path / "config.yml"
            path.write_text(yaml.safe_dump(document))
        keeper = None
        if storage is not None:
            keeper = Keeper.open(storage, metrics.state_writes, interval=interval)
        exporter = Exporter(
            load_config(path) if path else loaded(document),
            metrics,
            str(path) if path else None,
            keeper=keeper,
        )
        runner = web.AppRunner(make_app(exporter, security, options), access_log=None)
        await runner.setup()
        tls = security.ssl_context if security else None
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        session = aiohttp.ClientSession()
        started.append((runner, session))
        url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
        return Running(exporter, url, session, runner, path)

    yield start
    for runner, session in started:
        await session.close()
        await runner.cleanup()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 10
) -> None:
    """Wait for a condition (checked every 10 ms), not for a time; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds}s for {what}")
        await asyncio.sleep(0.01)


def require_tool(name: str) -> str:
    """A real binary the test needs. In CI its absence fails the test; on a developer's machine
    it skips, loudly."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI (Debian package 'prometheus') but was not found")
    pytest.skip(f"SKIPPED: {name} not installed (apt-get install prometheus); CI runs this test")
