"""--web.config.file: TLS and basic auth on the exporter's own listener, with real certificates
on loopback (trustme) and bcrypt hashes, as exporter-toolkit reads them. The toolkit's own cases
are in test_webconfig_conformance.py, re-reading in test_webconfig_reload.py."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from conftest import WHM, Running, module

from whm_exporter import webconfig
from whm_exporter.server import WebOptions
from whm_exporter.webconfig import WebSecurity, load_web_config
from whm_exporter.yamlconf import ConfigError

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=trustme.KeyType.RSA)


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def write_pki(ca: trustme.CA, folder: Path) -> None:
    cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    cert.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    cert.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@pytest.fixture
def web_config(ca: trustme.CA, tmp_path: Path, hashed: str) -> Path:
    write_pki(ca, tmp_path)
    path = tmp_path / "web.yml"
    path.write_text(
        TLS + "basic_auth_users:\n"
        f"  prometheus: '{hashed}'\n"
        "http_server_config:\n"
        "  headers:\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    X-Frame-Options: deny\n"
        "    X-XSS-Protection: 1\n"
    )
    return path


Start = Callable[..., Awaitable[str]]


@pytest.fixture
def start(whm: WHM, start_exporter: Callable[..., Awaitable[Running]]) -> Start:
    """The real exporter app behind the web config: its URL."""

    async def start(security: WebSecurity, options: WebOptions | None = None) -> str:
        running = await start_exporter(module(whm.url), security=security, options=options)
        return running.url

    return start


@pytest.fixture
async def secured(start: Start, web_config: Path) -> tuple[WebSecurity, str]:
    security = load_web_config(web_config)
    return security, await start(security)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def _status(
    url: str, ca: trustme.CA, headers: dict[str, str] | None, ctx: ssl.SSLContext | None = None
) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx or trusting(ca), headers=headers or {}) as resp,
    ):
        return resp.status


@pytest.mark.parametrize("path", ["/metrics", "/probe?target=t", "/", "/-/healthy"])
async def test_basic_auth_over_tls(
    secured: tuple[WebSecurity, str], ca: trustme.CA, path: str
) -> None:
    url = secured[1] + path
    assert await _status(url, ca, None) == 401
    assert await _status(url, ca, _basic("prometheus", "wrong")) == 401
    assert await _status(url, ca, _basic("nobody", PASSWORD)) == 401
    assert await _status(url, ca, {"Authorization": "Basic !!!"}) == 401
    assert await _status(url, ca, _basic("prometheus", PASSWORD)) == 200
    # A second time is served from the cache of checked credentials: still exact.
    assert await _status(url, ca, _basic("prometheus", PASSWORD)) == 200
    assert await _status(url, ca, _basic("prometheus", PASSWORD + "x")) == 401
    # bcrypt 5 refuses passwords over 72 bytes: a refusal, not an error.
    assert await _status(url, ca, _basic("prometheus", "x" * 100)) == 401


async def test_plain_http_is_refused_by_the_tls_listener(secured: tuple[WebSecurity, str]) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(secured[1].replace("https://", "http://") + "/-/healthy")


@pytest.fixture
async def prefixed(start: Start, web_config: Path) -> str:
    """The exporter behind the web config, under a route prefix (so that / redirects)."""
    return await start(load_web_config(web_config), WebOptions(route_prefix="/whm/"))


AUTH = _basic("prometheus", PASSWORD)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/whm/", AUTH, 200),
        # /metrics and /probe stream their answer: the headers go out before the handler ends.
        ("GET", "/whm/metrics", AUTH, 200),
        ("GET", "/whm/metrics", {**AUTH, "Accept-Encoding": "gzip"}, 200),
        ("GET", "/whm/probe?target=t", AUTH, 200),
        ("GET", "/whm/probe?target=t&debug=true", AUTH, 200),
        ("GET", "/whm/-/healthy", AUTH, 200),
        ("GET", "/whm/-/healthy", {}, 401),
        ("GET", "/whm/probe?target=t", {}, 401),
        # Raised by the handler as an exception, not returned.
        ("GET", "/", AUTH, 302),
        ("GET", "/whm", AUTH, 302),
        ("GET", "/whm/probe?target=nowhere", AUTH, 400),
        ("GET", "/whm/probe?target=t&module=nowhere", AUTH, 400),
        ("GET", "/nowhere", AUTH, 404),
        ("POST", "/whm/", AUTH, 405),
        # Answered by aiohttp before any middleware runs.
        ("GET", "/whm/-/healthy", {**AUTH, "Expect": "something"}, 417),
    ],
)
async def test_configured_headers_are_on_every_answer(
    prefixed: str,
    ca: trustme.CA,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, prefixed + path, ssl=trusting(ca), headers=headers, allow_redirects=False
        ) as resp,
    ):
        await resp.read()
        assert resp.status == status
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert resp.headers["X-Frame-Options"] == "deny"
        # A YAML number, written as the toolkit's Go YAML reads it: text.
        assert resp.headers["X-XSS-Protection"] == "1"


class BlockingCheck:
    """Stands in for bcrypt.checkpw: each wrong password blocks until the test releases it,
    and records the thread it ran in and the hash it was compared against."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []
        self.hashes: list[bytes] = []
        self.released_in_time: list[bool] = []

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.threads.append(threading.current_thread())
        self.hashes.append(hashed)
        self.entered.set()
        # Bounded only so that a broken build fails instead of hanging: on the event loop this
        # blocks the very request that would release it.
        self.released_in_time.append(self.release.wait(timeout=10))
        return False


async def test_wrong_passwords_do_not_stall_other_requests(
    secured: tuple[WebSecurity, str], ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = secured
    good = _basic("prometheus", PASSWORD)
    assert await _status(url + "/-/healthy", ca, good) == 200  # now cached
    check = BlockingCheck()
    monkeypatch.setattr(bcrypt, "checkpw", check)
    wrong = [
        asyncio.create_task(_status(url + "/-/healthy", ca, _basic("prometheus", f"wrong{i}")))
        for i in range(4)
    ]
    await asyncio.to_thread(check.entered.wait, 30)
    assert check.entered.is_set()
    # A bcrypt check is running, and blocked: /-/healthy still answers.
    assert await _status(url + "/-/healthy", ca, good) == 200
    assert not check.release.is_set()
    check.release.set()
    assert await asyncio.gather(*wrong) == [401] * 4
    assert check.released_in_time == [True] * 4
    assert threading.main_thread() not in check.threads


async def test_unknown_user_costs_a_bcrypt_check_at_the_users_cost(
    secured: tuple[WebSecurity, str], ca: trustme.CA, hashed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    security, url = secured
    check = BlockingCheck()
    check.release.set()
    monkeypatch.setattr(bcrypt, "checkpw", check)
    assert await _status(url + "/-/healthy", ca, _basic("nobody", "guess")) == 401
    assert await _status(url + "/-/healthy", ca, _basic("prometheus", "guess")) == 401
    dummy, real = check.hashes
    assert real == hashed.encode()
    assert dummy == security.current().dummy_hash != real
    assert dummy[:7] == real[:7] == b"$2b$04$"  # same algorithm and cost: same time
    # The dummy is a well-formed hash that bcrypt really computes against.
    monkeypatch.undo()
    assert bcrypt.checkpw(b"guess", dummy) is False


async def test_relative_paths_resolve_against_the_web_config_folder(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: Start
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    write_pki(ca, folder)
    (folder / "web.yml").write_text(TLS)
    monkeypatch.chdir(tmp_path)  # where server.crt is not
    security = load_web_config("etc/web.yml")
    url = await start(security)
    assert await _status(url + "/-/healthy", ca, None) == 200


async def test_client_certificates_when_required(
    ca: trustme.CA, tmp_path: Path, start: Start
) -> None:
    write_pki(ca, tmp_path)
    path = tmp_path / "web.yml"
    path.write_text(
        TLS + "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
    )
    url = await start(load_web_config(path))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url + "/-/healthy", ssl=trusting(ca)) as resp:
                await resp.read()
        with_cert = trusting(ca)
        ca.issue_cert("prometheus.client").configure_cert(with_cert)
        async with session.get(url + "/-/healthy", ssl=with_cert) as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    ("names", "allowed", "status"),
    [
        (["prometheus@example.org"], "prometheus@example.org", 200),
        # Go writes IPs in their short form; OpenSSL writes 2001:DB8:0:0:0:0:0:1.
        (["2001:db8::1"], "2001:db8::1", 200),
        (["10.0.0.7"], "10.0.0.7", 200),
        (["scraper.example"], "Scraper.example", 403),  # exact, as the toolkit compares
    ],
)
async def test_client_allowed_sans(
    ca: trustme.CA, tmp_path: Path, start: Start, names: list[str], allowed: str, status: int
) -> None:
    write_pki(ca, tmp_path)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    path = tmp_path / "web.yml"
    client_ca = "".join(f"    {line}\n" for line in ca.cert_pem.bytes().decode().splitlines())
    path.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"  client_ca: |\n{client_ca}"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_allowed_sans: ['{allowed}']\n"
    )
    url = await start(load_web_config(path))
    ctx = trusting(ca)
    ca.issue_cert(*names).configure_cert(ctx)
    assert await _status(url + "/-/healthy", ca, None, ctx) == status


@pytest.mark.parametrize(
    ("settings", "client_max", "client_ciphers", "expect"),
    [
        ("  max_version: TLS12\n", None, None, "TLSv1.2"),
        ("  min_version: TLS13\n", ssl.TLSVersion.TLSv1_2, None, "refused"),
        # Only TLS 1.3 suites named: as in Go, TLS 1.2 has no suite left.
        ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", ssl.TLSVersion.TLSv1_2, None, "refused"),
        ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", None, None, "TLSv1.3"),
        # The server's order wins by default (prefer_server_cipher_suites: true) ...
        (
            "  max_version: TLS12\n  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
            "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n",
            None,
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
        ),
        # ... and the client's when it is false.
        (
            "  max_version: TLS12\n  prefer_server_cipher_suites: false\n  cipher_suites:\n"
            "  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
            "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n",
            None,
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
    ],
)
async def test_tls_versions_and_ciphers(
    ca: trustme.CA,
    tmp_path: Path,
    settings: str,
    client_max: ssl.TLSVersion | None,
    client_ciphers: str | None,
    expect: str,
) -> None:
    write_pki(ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS + settings)
    security = load_web_config(tmp_path / "web.yml")
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=security.ssl_context
    )
    ctx = trusting(ca)
    if client_max:
        ctx.maximum_version = client_max
    if client_ciphers:
        ctx.set_ciphers(client_ciphers)
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1], ssl=ctx
        )
        tls = writer.get_extra_info("ssl_object")
        found = tls.cipher()[0] if client_ciphers else tls.version()
        writer.close()
    except (ssl.SSLError, ConnectionResetError):
        found = "refused"
    finally:
        server.close()
    assert found == expect


@pytest.mark.parametrize("memfd", [True, False])
async def test_inline_certificate_and_key(
    ca: trustme.CA, tmp_path: Path, start: Start, monkeypatch: pytest.MonkeyPatch, memfd: bool
) -> None:
    if not memfd:  # as on systems without memfd_create: through a private temporary folder
        monkeypatch.delattr("os.memfd_create", raising=False)
    leaf = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)

    def block(pem: bytes) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in pem.decode().splitlines())

    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert: {block(leaf.cert_chain_pems[0].bytes())}"
        f"  key: {block(leaf.private_key_pem.bytes())}"
    )
    url = await start(load_web_config(tmp_path / "web.yml"))
    assert await _status(url + "/-/healthy", ca, None) == 200


def test_every_go_cipher_name_is_known_to_openssl() -> None:
    for go, openssl in webconfig._CIPHERS.items():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers(openssl)
        names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
        assert names == [openssl], go


def test_old_tls_versions_are_set_and_warned(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_pki(ca, tmp_path)
    (tmp_path / "web.yml").write_text(TLS + "  min_version: TLS10\n  max_version: TLS12\n")
    security = load_web_config(tmp_path / "web.yml")
    ctx = security.current().ssl_context
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert "min_version: TLS10 is set, but OpenSSL 3" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # A second section silently switched authentication off before.
        (
            "basic_auth_users:\n  prometheus: '$HASH'\nbasic_auth_users: {}\n",
            "not valid YAML at line 3, column 1: duplicate key 'basic_auth_users'",
        ),
        (
            "basic_auth_users:\n  alice: plaintext-password\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        ("basic_auth_users:\n  'a:b': '$HASH'\n", "basic_auth_users.a:b: a user name cannot"),
        (
            TLS + "  client_ca_file: ca.pem\n",
            "tls_server_config.client_ca_file: client CAs are set but client_auth_type is not",
        ),
        (
            TLS + "  client_auth_type: RequestClientCert\n",
            "tls_server_config.client_auth_type: RequestClientCert is not supported",
        ),
        (
            TLS + "  client_allowed_sans: [x]\n",
            "tls_server_config.client_allowed_sans: needs client_auth_type",
        ),
        (TLS + "  cert: inline\n", "tls_server_config.cert_file: give cert_file or cert, not both"),
        (
            TLS + "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.max_version: TLS12 is below min_version TLS13",
        ),
        (
            "tls_server_config:\n  min_version: TLS13\n",
            "tls_server_config: cert_file and key_file (or cert and key) are needed",
        ),
        (
            # A YAML escape in double quotes: the value would split the header.
            'http_server_config:\n  headers:\n    X-XSS-Protection: "1\\r\\nSet-Cookie: x"\n',
            "http_server_config.headers.X-XSS-Protection: contains a control character",
        ),
        (
            "http_server_config:\n  headers:\n    x-frame-options: deny\n",
            "http_server_config.headers.x-frame-options: cannot be set",
        ),
        ("rate_limit:\n  interval: 1d\n", "rate_limit.interval: not a duration"),
        ("rate_limit:\n  burst: -1\n", "rate_limit.burst: Input should be greater than"),
        (
            TLS.replace("server.key", "ca.pem"),
            "tls_server_config: cannot use the certificate and key: PEM lib",
        ),
        (
            TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /dev/null\n",
            "tls_server_config.client_ca_file: no usable CA certificate",
        ),
    ],
)
def test_bad_web_config_names_the_key(
    ca: trustme.CA, tmp_path: Path, hashed: str, text: str, problem: str
) -> None:
    write_pki(ca, tmp_path)
    path = tmp_path / "web.yml"
    path.write_text(text.replace("$HASH", hashed))
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert any(p.startswith(f"{path}: {problem}") for p in err.value.problems), err.value.problems
    assert "plaintext-password" not in str(err.value)


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [("0", 0), (0, 0), ("1m30s", 90), ("1.5h", 5400), ("300ms", 0.3), (2_000_000_000, 2)],
)
def test_rate_limit_interval_is_a_go_duration(interval: object, seconds: float) -> None:
    assert webconfig._go_duration(interval) == pytest.approx(seconds)


async def test_rate_limit_lets_a_burst_through(start: Start, tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("rate_limit:\n  interval: 1h\n  burst: 2\n")
    url = await start(load_web_config(tmp_path / "web.yml"))
    async with aiohttp.ClientSession() as session:
        found = []
        for _ in range(3):
            async with session.get(url + "/-/healthy") as resp:
                found.append(resp.status)
    assert found == [200, 200, 429]
