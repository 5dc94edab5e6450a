"""exporter-toolkit's web-config cases, each as this exporter's own file.

Source: github.com/prometheus/exporter-toolkit, web/tls_config_test.go (TestYAMLFiles,
TestServerBehaviour, TestUsers, TestConfigReloading) and the web/testdata/ files they read. Each
case below names the toolkit test and case it mirrors; its config is written anew here, with
certificates made by trustme, and run against a real listener on loopback with a real TLS
client. A case that differs from the toolkit says why in ``differs`` (docs/security.md); all
others expect what the toolkit expects."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web

from whm_exporter.webconfig import WebSecurity, load_web_config
from whm_exporter.yamlconf import ConfigError

HELLO = "Hello World!"
OK = rf"^200 {HELLO}$"
# Passwords of the toolkit's users file (web_config_users.good.yml), hashed afresh at low cost.
PASSWORDS = {"alice": "alice123", "bob": "bob123", "carol": "carol123", "dave": "dave123"}


@dataclass(frozen=True)
class Client:
    tls: bool = False
    cert: str | None = None  # "client" or "client2", as the toolkit's client certificates
    max_version: ssl.TLSVersion | None = None
    ciphers: str | None = None  # OpenSSL names, in the client's order of preference
    curve: str | None = None
    user: str | None = None
    password: str = ""
    requests: int = 1


@dataclass(frozen=True)
class Case:
    toolkit: str  # the toolkit's test and case name
    config: str | None  # None: no --web.config.file at all
    expect: str  # regex on the outcome: "refused: ...", "<status> <body>" or "error: ..."
    client: Client = field(default_factory=Client)
    differs: str = ""  # why this exporter answers otherwise than the toolkit


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
IF_GIVEN = TLS + "  client_auth_type: VerifyClientCertIfGiven\n"
TLS_CLIENT = Client(tls=True)
# The handshake fails; the server's reason follows.
HANDSHAKE_FAILURE = r"^error: .*\| server: .*"
AES128_CHOSEN = rf"^200 {HELLO} cipher=ECDHE-RSA-AES128-GCM-SHA256$"
AES128_FIRST = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"  # a client's order
USERS = "basic_auth_users:\n" + "".join(f"  {u}: ${u}_hash\n" for u in PASSWORDS)

CASES = [
    # --- TestYAMLFiles: loading (the toolkit also serves each loadable one: so do we) ---
    Case("TestYAMLFiles/path to config yml invalid", "@missing", r"^refused: .*cannot read"),
    Case("TestYAMLFiles/empty config yml", "", OK),
    Case(
        "TestYAMLFiles/invalid config yml (invalid structure)",
        "hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\nay3RiOtykgt4m6m3KOol\n",
        r"^refused: .*\(top level\): Input should be a valid dictionary",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (invalid key)",
        "tls_server_config:\n  cert_filse: server.crt\n",
        r"^refused: .*tls_server_config\.cert_filse: unknown key",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (cert path empty)",
        'tls_server_config:\n  cert_file: ""\n  key_file: server.key\n',
        r"^refused: .*tls_server_config\.cert_file: missing",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (cert empty)",
        'tls_server_config:\n  cert: ""\n  key_file: server.key\n',
        r"^refused: .*tls_server_config\.cert_file: missing",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (key path empty)",
        'tls_server_config:\n  cert_file: server.crt\n  key_file: ""\n',
        r"^refused: .*tls_server_config\.key_file: missing",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (key empty)",
        'tls_server_config:\n  cert_file: server.crt\n  key: ""\n',
        r"^refused: .*tls_server_config\.key_file: missing",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (cert path and key path empty)",
        'tls_server_config:\n  cert_file: ""\n  key_file: ""\n  client_auth_type: "x"\n',
        r"^refused: .*tls_server_config\.cert_file: missing",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (cert path invalid)",
        "tls_server_config:\n  cert_file: somefile\n  key_file: server.key\n",
        r"^refused: .*tls_server_config\.cert_file: cannot read .*somefile: No such file",
    ),
    # The toolkit's file also misspells its cert_file (server.cert); here only the key is wrong.
    Case(
        "TestYAMLFiles/invalid config yml (key path invalid)",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: somefile\n",
        r"^refused: .*tls_server_config\.key_file: cannot read .*somefile: No such file",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (cert path and key path invalid)",
        "tls_server_config:\n  cert_file: somefile\n  key_file: somefile\n",
        r"^refused: .*cannot read .*somefile: No such file",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (invalid ClientAuth)",
        TLS + "  client_ca_file: /dev/null\n",
        r"^refused: .*tls_server_config\.client_ca_file: client CAs are set but"
        r" client_auth_type is not",
    ),
    # The toolkit reads the missing file before it checks the policy; both refuse the file.
    Case(
        "TestYAMLFiles/invalid config yml (invalid ClientCAs filepath)",
        TLS + "  client_ca_file: somefile\n",
        r"^refused: .*tls_server_config\.client_ca_file: ",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (invalid user list)",
        TLS + "basic_auth_users:\n  john: doe\n",
        r"^refused: .*basic_auth_users\.john: not a bcrypt hash",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (bad cipher)",
        IF_GIVEN + "  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048\n",
        r"^refused: .*tls_server_config\.cipher_suites\.0: unknown cipher suite",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (bad curves)",
        IF_GIVEN + "  curve_preferences:\n    - CurveP257\n",
        r"^refused: .*tls_server_config\.curve_preferences\.0: Input should be 'CurveP256'",
    ),
    Case(
        "TestYAMLFiles/invalid config yml (bad TLS version)",
        IF_GIVEN + "  min_version: TLS111\n",
        r"^refused: .*tls_server_config\.min_version: Input should be 'TLS10'",
    ),
    # --- TestServerBehaviour ---
    Case("TestServerBehaviour/empty string YAMLConfigPath and default client", None, OK),
    Case(
        "TestServerBehaviour/empty string YAMLConfigPath and TLS client",
        None,
        r"^error: .*WRONG_VERSION_NUMBER",
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid tls config yml and default client",
        IF_GIVEN,
        r"^error: .*\| server: .*HTTP_REQUEST",
    ),
    Case("TestServerBehaviour/valid tls config yml and tls client", IF_GIVEN, OK, TLS_CLIENT),
    Case(
        "TestServerBehaviour/valid tls config yml (cert and key inline) and tls client",
        "tls_server_config:\n  cert: $cert_inline\n  key: $key_inline\n"
        "  client_auth_type: VerifyClientCertIfGiven\n",
        OK,
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with TLS 1.1 client",
        IF_GIVEN,
        HANDSHAKE_FAILURE + "UNSUPPORTED_PROTOCOL",
        Client(tls=True, max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with all ciphers",
        IF_GIVEN
        + "  cipher_suites:\n"
        + "".join(
            f"  - {c}\n"
            for c in (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
                "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            )
        ),
        OK,
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with some ciphers",
        "$some_ciphers",
        AES128_CHOSEN,
        Client(tls=True, ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with no common cipher",
        "$some_ciphers",
        HANDSHAKE_FAILURE + "NO_SHARED_CIPHER",
        Client(tls=True, ciphers="ECDHE-RSA-AES256-SHA"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with multiple client ciphers",
        "$some_ciphers",
        AES128_CHOSEN,
        Client(tls=True, ciphers=AES128_FIRST),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with multiple client ciphers,"
        " client chooses cipher",
        IF_GIVEN + "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
        "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  prefer_server_cipher_suites: false\n"
        "  min_version: TLS12\n  max_version: TLS12\n",
        AES128_CHOSEN,
        Client(tls=True, ciphers=AES128_FIRST),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with all curves",
        IF_GIVEN + "  curve_preferences:\n    - CurveP256\n    - CurveP384\n    - CurveP521\n"
        "    - X25519\n",
        OK,
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with some curves",
        "$some_curves",
        OK,
        Client(tls=True, curve="secp521r1"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with no common curves",
        "$some_curves",
        HANDSHAKE_FAILURE + "NO_SUITABLE_KEY_SHARE",
        Client(tls=True, curve="secp384r1"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with non-http2 ciphers",
        "${no_http2_ciphers}" + "http_server_config:\n  http2: false\n",
        OK,
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid tls config yml with non-http2 ciphers but http2 enabled",
        "$no_http2_ciphers",
        r"^refused: .*tls_server_config\.cipher_suites: HTTP/2 needs",
        TLS_CLIENT,
    ),
    Case(
        "TestServerBehaviour/valid headers config",
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n",
        OK,
    ),
    Case(
        "TestServerBehaviour/invalid X-Content-Type-Options headers config",
        "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
        r"^refused: .*http_server_config\.headers\.X-Content-Type-Options: must be one of",
    ),
    Case(
        "TestServerBehaviour/invalid X-Frame-Options headers config",
        "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
        r"^refused: .*http_server_config\.headers\.X-Frame-Options: must be one of",
    ),
    Case(
        "TestServerBehaviour/HTTP header that can not be overridden",
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        r"^refused: .*http_server_config\.headers\.Content-Type: cannot be set",
    ),
    Case(
        "TestServerBehaviour/valid tls config yml and tls client with RequireAnyClientCert"
        " (present certificate)",
        TLS + "  client_auth_type: RequireAnyClientCert\n",
        r"^refused: .*client_auth_type: RequireAnyClientCert is not supported",
        Client(tls=True, cert="client"),
        differs="Python's ssl cannot accept a client certificate without verifying it",
    ),
    Case(
        "TestServerBehaviour/valid tls config yml (cert from file, key inline) and tls client"
        " with RequireAnyClientCert (present certificate)",
        "tls_server_config:\n  cert_file: server.crt\n  key: $key_inline\n"
        "  client_auth_type: RequireAnyClientCert\n",
        r"^refused: .*client_auth_type: RequireAnyClientCert is not supported",
        Client(tls=True, cert="client"),
        differs="Python's ssl cannot accept a client certificate without verifying it",
    ),
    Case(
        "TestServerBehaviour/valid tls config yml and tls client with RequireAndVerifyClientCert"
        " (present certificate)",
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client_ca.pem\n",
        OK,
        Client(tls=True, cert="client"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml and tls client with VerifyPeerCertificate"
        " (present good SAN DNS entry)",
        "$client2_sans" + '    - "one"\n    - "test3"\n    - "two"\n',
        OK,
        Client(tls=True, cert="client2"),
    ),
    Case(
        "TestServerBehaviour/valid tls config yml and tls client with VerifyPeerCertificate"
        " (present invalid SAN DNS entries)",
        "$client2_sans" + '    - "bad"\n',
        r"^403 Forbidden",
        Client(tls=True, cert="client2"),
        differs="refused with a 403 after the handshake: Python's ssl has no hook to end the"
        " handshake on a name",
    ),
    Case(
        "TestServerBehaviour/valid rate limiter (no rate limiter set up) that doesn't block",
        "rate_limit:\n  interval: 0\n  burst: 0\n",
        OK,
        Client(requests=11),
    ),
    Case(
        "TestServerBehaviour/valid rate limiter with an interval of one second",
        'rate_limit:\n  interval: "1s"\n  burst: 0\n',
        r"^429 Too Many Requests",
        Client(requests=11),
    ),
    # --- TestUsers ---
    Case("TestUsers/without basic auth", USERS, r"^401 Unauthorized"),
    Case("TestUsers/with correct basic auth", USERS, OK, Client(user="dave", password="dave123")),
    Case("TestUsers/without basic auth and TLS", TLS + USERS, r"^401 Unauthorized", TLS_CLIENT),
    Case(
        "TestUsers/with correct basic auth and TLS",
        TLS + USERS,
        OK,
        Client(tls=True, user="dave", password="dave123"),
    ),
    Case(
        "TestUsers/with another correct basic auth and TLS",
        TLS + USERS,
        OK,
        Client(tls=True, user="carol", password="carol123"),
    ),
    Case(
        "TestUsers/with bad password and TLS",
        TLS + USERS,
        r"^401 Unauthorized",
        Client(tls=True, user="dave", password="bad"),
    ),
    Case(
        "TestUsers/with bad username and TLS",
        TLS + USERS,
        r"^401 Unauthorized",
        Client(tls=True, user="nonexistent", password="nonexistent"),
    ),
]

SNIPPETS = {
    "some_ciphers": IF_GIVEN + "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
    "  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n",
    "some_curves": IF_GIVEN + "  min_version: TLS13\n  curve_preferences:\n  - CurveP521\n",
    "no_http2_ciphers": IF_GIVEN + "  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n"
    "  max_version: TLS12\n",
    "client2_sans": TLS + "  client_auth_type: RequireAndVerifyClientCert\n"
    "  client_ca_file: client_ca.pem\n  client_allowed_sans:\n",
}


@dataclass
class PKI:
    ca: trustme.CA
    server: trustme.LeafCert
    client_ca: trustme.CA
    clients: dict[str, trustme.LeafCert]
    hashes: dict[str, str]


@pytest.fixture(scope="module")
def pki() -> PKI:
    # RSA for the server: the toolkit's cipher cases name ECDHE_RSA suites.
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    client_ca = trustme.CA()
    return PKI(
        ca=ca,
        server=ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA),
        client_ca=client_ca,
        clients={
            "client": client_ca.issue_cert("client.test"),
            "client2": client_ca.issue_cert("test3", "client2@test.example"),
        },
        hashes={
            u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode() for u, p in PASSWORDS.items()
        },
    )


def _inline(pem: bytes) -> str:
    return "|\n" + "".join(f"    {line}\n" for line in pem.decode().splitlines())


def write_config(pki: PKI, folder: Path, text: str) -> Path:
    """The case's config and the files it names, side by side as in the toolkit's testdata."""
    pki.server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    pki.server.private_key_pem.write_to_path(str(folder / "server.key"))
    pki.client_ca.cert_pem.write_to_path(str(folder / "client_ca.pem"))
    values = {
        "cert_inline": _inline(pki.server.cert_chain_pems[0].bytes()),
        "key_inline": _inline(pki.server.private_key_pem.bytes()),
        **{f"{u}_hash": h for u, h in pki.hashes.items()},
    }
    text = Template(Template(text).safe_substitute(SNIPPETS)).substitute(values)
    (folder / "web.yml").write_text(text)
    return folder / "web.yml"


def app(security: WebSecurity | None) -> web.Application:
    """The toolkit's test server: one handler answering Hello World! (and, for the cipher
    cases, which cipher the connection uses)."""

    async def hello(request: web.Request) -> web.Response:
        cipher = request.transport and request.transport.get_extra_info("cipher")
        return web.Response(text=HELLO, headers={"X-Cipher": cipher[0]} if cipher else {})

    application = web.Application()
    if security:
        security.install(application)
    application.router.add_get("/", hello)
    return application


Serve = Callable[[WebSecurity | None], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    asyncio.get_running_loop().set_debug(True)  # for server_side()

    async def start(security: WebSecurity | None) -> int:
        runner = web.AppRunner(app(security), access_log=None)
        await runner.setup()
        runners.append(runner)
        ssl_context = security.ssl_context if security else None
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        port: int = runner.addresses[0][1]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


def client_context(pki: PKI, client: Client) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki.ca.configure_trust(ctx)
    if client.cert:
        pki.clients[client.cert].configure_cert(ctx)
    if client.ciphers:
        ctx.set_ciphers(client.ciphers)
    if client.max_version:
        with warnings.catch_warnings():  # an old client, on purpose
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = client.max_version
    if client.curve:
        ctx.set_ecdh_curve(client.curve)
    return ctx


async def request(pki: PKI, port: int, client: Client) -> str:
    """One request as the toolkit's client makes it, on a new connection; the outcome as
    text."""
    headers = {}
    if client.user:
        creds = f"{client.user}:{client.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
    scheme = "https" if client.tls else "http"
    tls: ssl.SSLContext | bool = client_context(pki, client) if client.tls else False
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{scheme}://127.0.0.1:{port}/", ssl=tls, headers=headers) as resp,
        ):
            outcome = f"{resp.status} {(await resp.text()).strip()}"
            if client.ciphers and "X-Cipher" in resp.headers:
                outcome += f" cipher={resp.headers['X-Cipher']}"
            return outcome
    except (aiohttp.ClientError, ssl.SSLError, OSError) as err:
        cause = err.__cause__ or err.__context__
        return f"error: {type(err).__name__}: {err} ({cause!r})"


def server_side(caplog: pytest.LogCaptureFixture) -> str:
    """Why the listener dropped a connection. asyncio closes a failed handshake without sending
    the TLS alert (the client sees a reset), and logs the reason in debug mode."""
    errors = [r.exc_info[1] for r in caplog.records if r.name == "asyncio" and r.exc_info]
    return "; ".join(str(e) for e in errors)


async def outcome(
    case: Case, pki: PKI, folder: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> str:
    security = None
    if case.config is not None:
        path = folder / "missing.yml"
        if case.config != "@missing":
            path = write_config(pki, folder, case.config)
        try:
            security = load_web_config(path)
        except ConfigError as err:
            return "refused: " + " | ".join(err.problems)
    port = await serve(security)
    result = ""
    for _ in range(case.client.requests):
        result = await request(pki, port, case.client)
        if not result.startswith("200 "):
            break
    if result.startswith("error: "):
        result += f" | server: {server_side(caplog)}"
    return result


@pytest.mark.parametrize("case", CASES, ids=[c.toolkit for c in CASES])
async def test_toolkit_case(
    case: Case, pki: PKI, tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    found = await outcome(case, pki, tmp_path, serve, caplog)
    assert re.search(case.expect, found), f"{case.toolkit}: expected /{case.expect}/, got {found}"


def test_every_toolkit_server_case_is_mirrored() -> None:
    # TestServerBehaviour has 27 cases; docs/security.md lists those that differ, with the reason.
    server = [c for c in CASES if c.toolkit.startswith("TestServerBehaviour/")]
    assert len({c.toolkit for c in server}) == len(server) == 27
    assert [c.toolkit.split("/", 1)[1][:40] for c in server if c.differs] == [
        "valid tls config yml and tls client with",
        "valid tls config yml (cert from file, ke",
        "valid tls config yml and tls client with",
    ]


async def test_toolkit_config_reloading(
    pki: PKI, tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """TestConfigReloading: a config that refuses the client (a client certificate is
    required, none is given) is replaced in place by one that lets it in; the next connection
    is let in without a restart."""
    blocking = TLS + "  client_auth_type: RequireAndVerifyClientCert\n"
    path = write_config(pki, tmp_path, blocking)
    security = load_web_config(path)
    port = await serve(security)
    caplog.set_level(logging.DEBUG, logger="asyncio")
    assert (await request(pki, port, TLS_CLIENT)).startswith("error: ")
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in server_side(caplog)
    write_config(pki, tmp_path, IF_GIVEN)
    assert await request(pki, port, TLS_CLIENT) == f"200 {HELLO}"
