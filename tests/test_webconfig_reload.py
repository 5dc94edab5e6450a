"""The web config is read again for every new connection and request, as exporter-toolkit does:
rotated certificates and passwords apply without a restart, and a broken new version is logged
and refused while the last good one keeps serving. Real TLS connections on loopback."""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web

from whm_exporter.webconfig import load_web_config

TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


def issue(ca: trustme.CA, folder: Path, *, key_only: bool = False, cert_only: bool = False) -> None:
    """A new server certificate from ``ca``, written over the old files in place."""
    leaf = ca.issue_cert("127.0.0.1")
    if not key_only:
        leaf.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    if not cert_only:
        leaf.private_key_pem.write_to_path(str(folder / "server.key"))


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


Listen = Callable[[], Awaitable[str]]


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listen]:
    """Starts a listener on tmp_path/web.yml, answering "ok" at / (and, streamed, at /stream),
    once the test has written the file."""
    runners: list[web.AppRunner] = []

    async def start() -> str:
        security = load_web_config(tmp_path / "web.yml")

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b"ok")
            return resp

        app = web.Application()
        security.install(app)
        app.router.add_get("/", ok)
        app.router.add_get("/stream", stream)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=security.ssl_context).start()
        scheme = "https" if security.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/"

    yield start
    for runner in runners:
        await runner.cleanup()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The problems of the refused changes that were logged."""
    return [
        getattr(r, "problem", "")
        for r in caplog.records
        if r.getMessage().startswith("web config change refused")
    ]


async def get(url: str, ctx: ssl.SSLContext | bool = False, /, **headers: str) -> str:
    """Status of a GET on a new connection, or "refused" when TLS fails."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, ssl=ctx, headers=headers) as resp,
        ):
            return str(resp.status)
    except aiohttp.ClientConnectorError:
        return "refused"


async def test_rotated_certificate_applies_to_new_connections(
    tmp_path: Path, listener: Listen
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    issue(old_ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS)
    url = await listener()
    assert await get(url, trusting(old_ca)) == "200"
    assert await get(url, trusting(new_ca)) == "refused"
    # Only the certificate files change; web.yml stays as it is.
    issue(new_ca, tmp_path)
    assert await get(url, trusting(new_ca)) == "200"
    assert await get(url, trusting(old_ca)) == "refused"


async def test_half_rotated_pair_keeps_the_old_one_until_complete(
    tmp_path: Path, listener: Listen, caplog: pytest.LogCaptureFixture
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    issue(old_ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS)
    url = await listener()
    # The new certificate is in place, its key not yet: they do not match.
    issue(new_ca, tmp_path, cert_only=True)
    assert await get(url, trusting(old_ca)) == "200"
    [problem] = refusals(caplog)
    assert "tls_server_config: cannot use the certificate and key" in problem
    issue(new_ca, tmp_path)
    assert await get(url, trusting(new_ca)) == "200"


async def test_changed_password_applies_at_once(tmp_path: Path, listener: Listen) -> None:
    def users(password: str) -> str:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        return f"basic_auth_users:\n  prometheus: '{hashed}'\n"

    (tmp_path / "web.yml").write_text(users("old"))
    url = await listener()
    assert await get(url, **basic("prometheus", "old")) == "200"  # and now cached
    (tmp_path / "web.yml").write_text(users("new"))
    assert await get(url, **basic("prometheus", "old")) == "401"
    assert await get(url, **basic("prometheus", "new")) == "200"


@pytest.mark.parametrize("path", ["", "stream"])
async def test_changed_headers_apply_at_once(tmp_path: Path, listener: Listen, path: str) -> None:
    def headers(frame: str) -> str:
        return f"http_server_config:\n  headers:\n    X-Frame-Options: {frame}\n"

    async def frame_option(url: str) -> str | None:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            await resp.read()
            return resp.headers.get("X-Frame-Options")

    (tmp_path / "web.yml").write_text(headers("deny"))
    url = await listener() + path
    assert await frame_option(url) == "deny"
    (tmp_path / "web.yml").write_text(headers("sameorigin"))
    assert await frame_option(url) == "sameorigin"
    (tmp_path / "web.yml").write_text("")
    assert await frame_option(url) is None


async def test_broken_change_is_logged_once_and_the_old_config_serves(
    tmp_path: Path, listener: Listen, caplog: pytest.LogCaptureFixture
) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    good = f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    (tmp_path / "web.yml").write_text(good)
    url = await listener()
    # A duplicate key: read as the last one, it would switch authentication off.
    (tmp_path / "web.yml").write_text(good + "basic_auth_users: {}\n")
    assert await get(url) == "401"
    assert await get(url) == "401"
    assert await get(url, **basic("prometheus", "pw")) == "200"
    [problem] = refusals(caplog)
    assert "duplicate key 'basic_auth_users'" in problem
    # Fixed: the new version applies.
    (tmp_path / "web.yml").write_text("")
    assert await get(url) == "200"


async def test_a_file_named_by_a_refused_change_is_picked_up_when_it_appears(
    tmp_path: Path, listener: Listen
) -> None:
    ca = trustme.CA()
    issue(ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS)
    url = await listener()
    new = trustme.CA()
    (tmp_path / "web.yml").write_text(TLS.replace("server.", "next."))
    assert await get(url, trusting(ca)) == "200"  # next.* do not exist yet: refused
    leaf = new.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "next.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "next.crt"))
    assert await get(url, trusting(new)) == "200"


async def test_turning_tls_off_needs_a_restart(
    tmp_path: Path, listener: Listen, caplog: pytest.LogCaptureFixture
) -> None:
    ca = trustme.CA()
    issue(ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS)
    url = await listener()
    os.replace(tmp_path / "web.yml", tmp_path / "old.yml")
    (tmp_path / "web.yml").write_text("")
    assert await get(url, trusting(ca)) == "200"
    [problem] = refusals(caplog)
    assert "turning TLS on or off needs a restart" in problem
