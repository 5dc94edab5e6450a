"""--web.config.file: TLS and basic auth on the exporter's own listener, with real certificates
on loopback (trustme) and bcrypt hashes, as exporter-toolkit reads them."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from conftest import WHM, loaded, module

from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.server import make_app
from whm_exporter.webconfig import load_web_config
from whm_exporter.yamlconf import ConfigError

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def web_config(ca: trustme.CA, tmp_path: Path) -> Path:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        f"  cert_file: {tmp_path / 'server.pem'}\n"
        f"  key_file: {tmp_path / 'server.pem'}\n"
        "basic_auth_users:\n"
        f"  prometheus: '{hashed}'\n"
        "http_server_config:\n"
        "  headers:\n"
        "    Strict-Transport-Security: max-age=31536000\n"
    )
    return path


@pytest.fixture
async def secured(whm: WHM, web_config: Path) -> AsyncIterator[str]:
    security = load_web_config(web_config)
    exporter = Exporter(loaded(module(whm.url)), ExporterMetrics(), None)
    runner = web.AppRunner(make_app(exporter, security), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=security.ssl_context).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _status(url: str, ca: trustme.CA, headers: dict[str, str] | None) -> int:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx, headers=headers or {}) as resp,
    ):
        return resp.status


@pytest.mark.parametrize("path", ["/metrics", "/probe?target=t", "/", "/-/healthy"])
async def test_basic_auth_over_tls(secured: str, ca: trustme.CA, path: str) -> None:
    url = secured + path
    assert await _status(url, ca, None) == 401
    assert await _status(url, ca, _basic("prometheus", "wrong")) == 401
    assert await _status(url, ca, _basic("nobody", PASSWORD)) == 401
    assert await _status(url, ca, {"Authorization": "Basic !!!"}) == 401
    assert await _status(url, ca, _basic("prometheus", PASSWORD)) == 200
    # A second time is served from the cache of checked credentials: still exact.
    assert await _status(url, ca, _basic("prometheus", PASSWORD)) == 200
    assert await _status(url, ca, _basic("prometheus", PASSWORD + "x")) == 401


async def test_plain_http_is_refused_by_the_tls_listener(secured: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(secured.replace("https://", "http://") + "/-/healthy")


async def test_client_certificates_when_required(ca: trustme.CA, tmp_path: Path, whm: WHM) -> None:
    server = ca.issue_cert("127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        f"  cert_file: {tmp_path / 'server.pem'}\n  key_file: {tmp_path / 'server.pem'}\n"
        f"  client_ca_file: {tmp_path / 'ca.pem'}\n  client_auth_type: RequireAndVerifyClientCert\n"
    )
    security = load_web_config(path)
    exporter = Exporter(loaded(module(whm.url)), ExporterMetrics(), None)
    runner = web.AppRunner(make_app(exporter, security), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=security.ssl_context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/-/healthy"
    try:
        without = ssl.create_default_context()
        ca.configure_trust(without)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await session.get(url, ssl=without)
            client = ca.issue_cert("prometheus.client")
            with_cert = ssl.create_default_context()
            ca.configure_trust(with_cert)
            client.configure_cert(with_cert)
            async with session.get(url, ssl=with_cert) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


def test_bad_web_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: plaintext\ntls_server_config:\n  cert: x\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    text = "\n".join(err.value.problems)
    assert "tls_server_config.cert" in text
    path.write_text("basic_auth_users:\n  alice: plaintext\n")
    with pytest.raises(ConfigError, match=r"basic_auth_users\.alice: not a bcrypt hash"):
        load_web_config(path)


async def test_configured_headers_are_on_every_answer(secured: str, ca: trustme.CA) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with aiohttp.ClientSession() as session:
        for headers in ({}, _basic("prometheus", PASSWORD)):
            async with session.get(secured + "/-/healthy", ssl=ctx, headers=headers) as resp:
                assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
