"""What every answer of the exporter's listener carries, whichever endpoint or error made it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from conftest import WHM, Running, module

from whm_exporter.server import WebOptions
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
