"""What a scraper gets over HTTP: the format it asks for, gzip when it accepts it, a streamed
answer, no ``_created`` series, the route prefix and telemetry path, and the 400s."""

from __future__ import annotations

import asyncio
import gzip
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import WHM, Running, module, require_tool, wait_until
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from whm_exporter.exporter import Exporter
from whm_exporter.series import Family
from whm_exporter.server import WebOptions, _exposition
from whm_exporter.simulator import Dataset

DATASET = Dataset(accounts=20, users=5, folders=5)
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
# What Prometheus 2.x and 3.x send by default: OpenMetrics first.
PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


class Answer:
    def __init__(self, resp: aiohttp.ClientResponse, raw: bytes) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self.raw = raw

    @property
    def text(self) -> str:
        if self.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(self.raw).decode()
        return self.raw.decode()


Get = Callable[..., Awaitable[Answer]]


@pytest.fixture
async def serve(
    whm: WHM, start_exporter: Callable[..., Awaitable[Running]]
) -> AsyncIterator[Callable[..., Awaitable[tuple[Get, Exporter]]]]:
    """The exporter with WebOptions, and a client that sees the bytes as sent (no
    decompression, no Accept-Encoding unless the test gives one)."""
    session = aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"])

    async def start(options: WebOptions | None = None, **overrides: Any) -> tuple[Get, Exporter]:
        running = await start_exporter(module(whm.url, **overrides), options=options)

        async def get(path: str, **headers: str) -> Answer:
            url = running.url + path
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                return Answer(resp, await resp.read())

        return get, running.exporter

    yield start
    await session.close()


def strict(parsed: Any) -> list[Metric]:
    out = list(parsed)
    keys = [(s.name, tuple(sorted(s.labels.items()))) for m in out for s in m.samples]
    assert len(set(keys)) == len(keys), "duplicate series"
    return out


def mailbox_series(fams: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for m in fams
        if m.name.startswith("whm_mailbox")
        for s in m.samples
    }


@pytest.mark.parametrize("accept", [PROMETHEUS_2_ACCEPT, PROMETHEUS_3_ACCEPT])
async def test_prometheus_gets_openmetrics_then_text_alike(serve, accept: str) -> None:
    get, _ = await serve()
    om = await get("/probe?target=t", Accept=accept)
    text = await get("/probe?target=t")
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    om_fams = strict(parse_om(om.text))
    text_fams = strict(parse_text(text.text))
    assert [m.name for m in om_fams] == [m.name for m in text_fams]
    assert mailbox_series(om_fams) == mailbox_series(text_fams)
    assert len(mailbox_series(om_fams)) == 2 * 25 * 5  # 20 addresses + 5 main, 5 folders


@pytest.mark.parametrize("path", ["/probe?target=t", "/metrics"])
@pytest.mark.parametrize("accept", ["", OPENMETRICS])
async def test_gzip_only_when_accepted(serve, path: str, accept: str) -> None:
    get, _ = await serve()
    plain = await get(path, Accept=accept)
    assert "Content-Encoding" not in plain.headers
    zipped = await get(path, Accept=accept, **{"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.raw[:2] == b"\x1f\x8b"
    parse = parse_om if accept else parse_text
    assert {m.name for m in strict(parse(zipped.text))} == {m.name for m in parse(plain.text)}


async def test_a_probe_answer_is_streamed(serve) -> None:
    get, _ = await serve()
    for encoding in ("identity", "gzip"):
        answer = await get("/probe?target=t", **{"Accept-Encoding": encoding})
        # Sent as it is written: no length known beforehand.
        assert answer.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in answer.headers


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
async def test_own_metrics_have_no_created_series(serve, accept: str) -> None:
    get, _ = await serve()
    await get("/probe?target=t")
    answer = await get("/metrics", Accept=accept)
    fams = strict((parse_om if accept else parse_text)(answer.text))
    names = {s.name for m in fams for s in m.samples}
    assert "whm_exporter_probes_total" in names
    assert "whm_exporter_api_request_duration_seconds_count" in names
    assert not [n for n in names if n.endswith("_created")]
    # Only this registry: prometheus_client's process-wide switch was left alone.
    other = CollectorRegistry()
    Counter("other_total", "x", registry=other).inc()
    assert b"other_created" in generate_latest(other)


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/probe?target=t", ""),
        ("/probe?target=t", OPENMETRICS),
        ("/metrics", ""),
        ("/metrics", OPENMETRICS),
    ],
)
async def test_promtool_finds_nothing_in_either_format(serve, path: str, accept: str) -> None:
    promtool = require_tool("promtool")
    get, _ = await serve()
    answer = await get(path, Accept=accept)
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=answer.text,
        capture_output=True,
        text=True,
    )
    found = (result.stdout + result.stderr).strip()
    # promtool reads the text format, where a counter family is named with its _total
    # (OpenMetrics names it without), so it finds "no help text" for each counter of an
    # OpenMetrics answer: that, and only that, is expected.
    counters = re.findall(r"^# TYPE (\S+) counter$", answer.text, re.M) if accept else []
    quirks = {f"{name}_total no help text" for name in counters}
    assert set(found.splitlines()) <= quirks, found
    assert (result.returncode == 0) == (not found), found


async def test_route_prefix_and_telemetry_path(serve) -> None:
    get, _ = await serve(WebOptions(route_prefix="/whm/", telemetry_path="/stats"))
    assert (await get("/whm/probe?target=t")).status == 200
    assert "whm_exporter_build_info" in (await get("/whm/stats")).text
    assert (await get("/whm/-/healthy")).status == 200
    for gone in ("/probe?target=t", "/metrics", "/whm/metrics", "/-/healthy"):
        assert (await get(gone)).status == 404, gone
    for bare in ("/", "/whm"):
        answer = await get(bare)
        assert (answer.status, answer.headers["Location"]) == (302, "/whm/")
    page = await get("/whm/")
    assert page.status == 200
    assert 'href="stats"' in page.text
    assert 'href="probe?target=t"' in page.text


@pytest.mark.parametrize("leaves", ["before the answer", "mid-answer"])
async def test_a_scraper_leaving_is_no_error(leaves: str) -> None:
    # Larger than the socket buffers, so the writer is still at work when the client leaves.
    fams = [Family("whm_x", "x", ("i",), [((f"{i:07d}",), i) for i in range(300_000)])]
    finished = asyncio.Event()
    raised: list[BaseException] = []

    def gone(request: web.Request) -> bool:
        return request.transport is None or request.transport.is_closing()

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            if leaves == "before the answer":
                # A probe still collecting when Prometheus gives up on it (or stops).
                await wait_until(lambda: gone(request), "the client to leave")
            return await _exposition(request, fams)
        except BaseException as err:
            raised.append(err)
            raise
        finally:
            finished.set()

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession(skip_auto_headers=["Accept-Encoding"]) as session:
            if leaves == "before the answer":
                _, writer = await asyncio.open_connection(*runner.addresses[0][:2])
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            else:
                resp = await session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/")
                assert len(await resp.content.read(1000)) > 0
                resp.close()
            async with asyncio.timeout(20):
                await finished.wait()
    finally:
        await runner.cleanup()
    assert raised == []
