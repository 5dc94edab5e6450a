"""TLS toward WHM with real certificates on loopback (trustme): verified by default, with a
private CA through ca_file, with a name to verify when the URL holds an IP, or not at all."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from conftest import TOKEN, Running, series, value

from whm_exporter.simulator import Dataset, Simulator, serve


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_whm(ca: trustme.CA) -> AsyncIterator[str]:
    """A simulator serving TLS with a certificate for the name whm.test only."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("whm.test").configure_cert(ctx)
    runner: web.AppRunner
    runner, url = await serve(Simulator(Dataset(accounts=2, users=1), token=TOKEN), ssl_context=ctx)
    yield url
    await runner.cleanup()


def doc(url: str, tls: dict[str, object]) -> dict[str, object]:
    return {
        "modules": {
            "default": {"token": TOKEN, "tls": tls, "unique_recipients": {"enabled": False}}
        },
        "targets": {"t": {"url": url}},
    }


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_verified_with_ca_file_and_server_name(
    start_exporter, tls_whm: str, ca_file: str
) -> None:
    running: Running = await start_exporter(
        doc(tls_whm, {"ca_file": ca_file, "server_name": "whm.test"})
    )
    found = await running.probe()
    assert value(found, "whm_up") == 1
    assert series(found, "whm_mailbox_messages")


async def debug_page(running: Running) -> str:
    status, text = await running.get("/probe?target=t&debug=true")
    assert status == 200
    return text


async def test_unknown_ca_fails_as_tls_and_points_to_ca_file(start_exporter, tls_whm: str) -> None:
    running: Running = await start_exporter(doc(tls_whm, {"server_name": "whm.test"}))
    found = await running.probe()
    assert value(found, "whm_up") == 0
    assert value(found, "whm_api_errors", function="listaccts", reason="tls") == 1
    page = await debug_page(running)
    assert "tls.ca_file" in page
    assert "tls.server_name" not in page


async def test_name_mismatch_fails_as_tls_and_points_to_server_name(
    start_exporter, tls_whm: str, ca_file: str
) -> None:
    # The URL holds 127.0.0.1, the certificate names whm.test: without server_name it must fail.
    running: Running = await start_exporter(doc(tls_whm, {"ca_file": ca_file}))
    found = await running.probe()
    assert value(found, "whm_api_errors", function="listaccts", reason="tls") == 1
    page = await debug_page(running)
    assert "tls.server_name" in page
    assert "tls.ca_file" not in page


async def test_name_mismatch_with_a_wrong_server_name_points_to_server_name(
    start_exporter, tls_whm: str, ca_file: str
) -> None:
    running: Running = await start_exporter(
        doc(tls_whm, {"ca_file": ca_file, "server_name": "other.test"})
    )
    assert value(await running.probe(), "whm_up") == 0
    assert "tls.server_name" in await debug_page(running)


async def test_insecure_skip_verify_accepts_any_certificate(start_exporter, tls_whm: str) -> None:
    running: Running = await start_exporter(doc(tls_whm, {"insecure_skip_verify": True}))
    assert value(await running.probe(), "whm_up") == 1
