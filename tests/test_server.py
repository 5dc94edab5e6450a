"""The HTTP layer: what every answer of the exporter's listener carries, whichever endpoint or
error made it; what a /probe request asks beyond its target (the scrape timeout header); the
landing page's recent probes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from conftest import WHM, Running, loaded, module
from prometheus_client.parser import text_string_to_metric_families as parse_text

from whm_exporter.request import BadRequest, probe_timeout
from whm_exporter.server import HISTORY, WebOptions
from whm_exporter.webconfig import WebSecurity, load_web_config


@pytest.fixture(params=["open", "basic auth"])
async def exporter_url(
    request: pytest.FixtureRequest,
    whm: WHM,
    tmp_path: Path,
    start_exporter: Callable[..., Awaitable[Running]],
) -> str:
    """The exporter under a route prefix (so that / redirects), with no web config or with
    basic auth (so that every answer but the 401 is an error)."""
    security: WebSecurity | None = None
    if request.param == "basic auth":
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
        (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
        security = load_web_config(tmp_path / "web.yml")
    options = WebOptions(route_prefix="/whm/")
    running = await start_exporter(module(whm.url), security=security, options=options)
    return running.url


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/whm/", {}),
        ("GET", "/whm/metrics", {}),
        ("GET", "/whm/metrics", {"Accept-Encoding": "gzip"}),
        ("GET", "/whm/probe?target=t", {}),
        ("GET", "/whm/probe?target=t&debug=true", {}),
        ("GET", "/whm/-/healthy", {}),
        ("GET", "/whm/-/ready", {}),
        ("POST", "/whm/-/reload", {}),
        ("GET", "/", {}),
        ("GET", "/whm", {}),
        ("GET", "/whm/probe?target=nowhere", {}),
        ("GET", "/nowhere", {}),
        ("POST", "/whm/", {}),
        ("GET", "/whm/-/healthy", {"Expect": "something"}),
    ],
)
async def test_no_answer_names_the_runtime(
    exporter_url: str, method: str, path: str, headers: dict[str, str]
) -> None:
    # As the Go exporters: no Server header, so no versions for a scanner to match.
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, exporter_url + path, headers=headers, allow_redirects=False
        ) as resp,
    ):
        await resp.read()
        assert "Server" not in resp.headers, resp.headers["Server"]


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /whm/ HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"],
)
async def test_a_request_too_malformed_to_route_names_no_runtime(
    exporter_url: str, request_bytes: bytes
) -> None:
    # aiohttp answers these itself, before the app's hooks: its default Server header is the
    # one it would name Python and aiohttp in.
    host, port = exporter_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request_bytes)
    await writer.drain()
    head = (await reader.read(65536)).split(b"\r\n\r\n")[0].decode()
    writer.close()
    assert head.split(" ")[1] == "400", head
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert server == ["Server: whm-exporter"], head


# --- what a /probe request asks beyond its target, and the landing page's history --------------


async def test_timeout_offset_is_taken_off_the_scrape_timeout(whm: WHM, start_exporter) -> None:
    running = await start_exporter(
        module(whm.url, timeout="1m"), options=WebOptions(timeout_offset=2.5)
    )
    status, text = await running.get(
        "/probe?target=t", **{"X-Prometheus-Scrape-Timeout-Seconds": "10"}
    )
    assert status == 200, text
    fams = {m.name: m for m in parse_text(text)}
    assert fams["whm_probe_timeout_seconds"].samples[0].value == 7.5


@pytest.mark.parametrize(
    ("header", "timeout"),
    [
        (None, 60.0),  # no header: the module's timeout
        ("", 60.0),
        ("90", 60.0),  # never longer than the module's
        ("10", 9.5),
        ("0.5", 0.1),  # at least a tenth of a second, however close the offset comes
    ],
)
def test_the_scrape_timeout_header_lowers_the_modules_timeout(
    header: str | None, timeout: float
) -> None:
    mc = loaded(module("https://whm1.example", timeout="1m")).config.modules["default"]
    assert probe_timeout(mc, header, 0.5) == timeout


async def test_a_scrape_timeout_that_is_not_a_number_is_a_bad_request(
    whm: WHM, start_exporter
) -> None:
    running = await start_exporter(module(whm.url))
    status, text = await running.get(
        "/probe?target=t", **{"X-Prometheus-Scrape-Timeout-Seconds": "soon"}
    )
    assert (status, text) == (400, "X-Prometheus-Scrape-Timeout-Seconds is not a number: 'soon'\n")


async def test_history_limit_bounds_the_recent_probes(whm: WHM, start_exporter) -> None:
    running = await start_exporter(module(whm.url), options=WebOptions(history_limit=2))
    for _ in range(3):
        await running.probe()
    assert len(running.runner.app[HISTORY]) == 2


async def test_the_landing_page_lists_the_recent_probes_newest_first(
    start_whm, start_exporter
) -> None:
    up: WHM = await start_whm()
    document = module(up.url)
    document["targets"]["down"] = {"url": "http://127.0.0.1:1"}
    running = await start_exporter(document)
    await running.probe("t")
    await running.probe("down")
    _, page = await running.get("/")
    recent = page.split("<h2>Recent probes</h2>")[1]
    rows = re.findall(r"<tr><td>[\d:]+</td><td>(\w+)</td><td>(\w+)</td>", recent)
    assert rows == [("down", "DOWN"), ("t", "up")]


@pytest.mark.parametrize("header", ["nan", "inf", "-inf", "Infinity"])
def test_a_scrape_timeout_that_is_not_finite_is_a_bad_request(header: str) -> None:
    # float() reads them all; each would have left the module's timeout in force unnoticed.
    mc = loaded(module("https://whm1.example", timeout="1m")).config.modules["default"]
    with pytest.raises(BadRequest, match="is not a number"):
        probe_timeout(mc, header, 0.5)
