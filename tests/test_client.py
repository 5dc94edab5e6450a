"""WHMClient against mocked HTTP answers (aioresponses): request form and error classes."""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from conftest import TOKEN
from pydantic import SecretStr

from whm_exporter.config import TLSConfig
from whm_exporter.whm.client import WHMClient, new_session
from whm_exporter.whm.errors import WHMError

URL = "https://whm.test:2087"
ANY = re.compile(r"^https://whm\.test:2087/json-api/.*$")


@pytest.fixture
async def client() -> AsyncIterator[WHMClient]:
    async with aiohttp.ClientSession() as session:
        yield WHMClient(
            session, URL, "reseller", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2048
        )


async def test_call_sends_token_header_and_api_version(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, payload={"metadata": {"result": 1}, "data": {}})
        body = await client.call("list_pops_for", {"user": "bob"})
    assert body == {"metadata": {"result": 1}, "data": {}}
    (_, url), calls = next(iter(mocked.requests.items()))
    assert url.path == "/json-api/list_pops_for"
    assert dict(url.query) == {"api.version": "1", "user": "bob"}
    assert calls[0].kwargs["headers"]["Authorization"] == f"whm reseller:{TOKEN}"


@pytest.mark.parametrize("base", [URL + "/", "https://WHM.X/"])
async def test_a_trailing_slash_in_the_url_makes_no_double_slash(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, base, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2048
        )
        with aioresponses() as mocked:
            mocked.get(re.compile(".*"), payload={"metadata": {"result": 1}})
            await client.call("listaccts")
    (_, url), _ = next(iter(mocked.requests.items()))
    assert str(url).lower() == base.lower() + "json-api/listaccts?api.version=1"


def not_json(text: str) -> str:
    return f"answer is not JSON: {text}"


@pytest.mark.parametrize(
    ("status", "body", "reason", "detail"),
    [
        (401, "<html>Login</html>", "auth", "HTTP 401: credentials refused"),
        (403, "Forbidden", "auth", "HTTP 403: credentials refused"),
        (500, "oops", "http", "HTTP 500"),
        (502, "<html>Bad Gateway</html>", "http", "HTTP 502"),
        (
            200,
            "<html><title>WHM Login</title></html>",
            "protocol",
            not_json("'<html><title>WHM Login</title></html>'"),
        ),
        (200, "", "protocol", not_json("empty body")),
        (200, " \n ", "protocol", not_json("empty body")),
        (200, '{"metadata": {"res', "protocol", not_json("""'{"metadata": {"res'""")),
        (200, "line one\nline two", "protocol", not_json("'line one line two'")),
        (200, "x" * 100, "protocol", not_json(repr("x" * 80))),
        (200, f"<p>{TOKEN}</p>", "protocol", not_json("'<p><token></p>'")),
    ],
)
async def test_failures_are_classified_and_described(
    client: WHMClient, status: int, body: str, reason: str, detail: str
) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, status=status, body=body)
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, err.value.detail) == (reason, detail)
    # The status of an http failure: a 5xx tells the back-off that WHM struggles.
    assert err.value.status == (status if reason == "http" else None)


@pytest.mark.parametrize(("status", "unknown"), [(404, True), (503, False)])
async def test_an_http_failure_keeps_its_status(
    client: WHMClient, status: int, unknown: bool
) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, status=status, body="")
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.status, err.value.unknown_function) == (status, unknown)


async def test_a_redirect_is_not_followed(client: WHMClient) -> None:
    # A login page or another host must not receive the token through a redirect.
    with aioresponses() as mocked:
        mocked.get(ANY, status=302, headers={"Location": URL + "/json-api/elsewhere"})
        mocked.get(ANY, payload={"metadata": {"result": 1}})
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, err.value.detail) == ("http", "HTTP 302")
    assert sum(len(calls) for calls in mocked.requests.values()) == 1


async def test_not_found_marks_an_unknown_function(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, status=404, body="Not Found")
        with pytest.raises(WHMError) as err:
            await client.call("get_mailbox_status_list", {"account": "a@b.c"})
    assert (err.value.reason, err.value.detail, err.value.unknown_function) == (
        "http",
        "HTTP 404",
        True,
    )


def cert_error(code: int, text: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, text)
    err.verify_code = code
    return err


CA_HINT = "is WHM's certificate self-signed or from a private CA? give its CA in tls.ca_file"
NAME_HINT = "the certificate names another host: give a name it holds in tls.server_name"


@pytest.mark.parametrize(
    ("exception", "reason", "detail"),
    [
        (TimeoutError(), "timeout", "no complete answer within 5s"),
        (aiohttp.ServerDisconnectedError(), "connect", "Server disconnected"),
        (ConnectionResetError("reset by peer"), "connect", "reset by peer"),
        (aiohttp.ClientConnectionError("x" * 200), "connect", "x" * 200),
        (aiohttp.ClientConnectionError("x" * 201), "connect", "x" * 197 + "..."),
        (RuntimeError("Session is closed"), "http", "Session is closed"),
        (RuntimeError(), "http", "RuntimeError"),
        (
            cert_error(20, "unable to get local issuer"),
            "tls",
            f"unable to get local issuer ({CA_HINT})",
        ),
        (cert_error(62, "Hostname mismatch"), "tls", f"Hostname mismatch ({NAME_HINT})"),
        (cert_error(10, "certificate has expired"), "tls", "certificate has expired"),
        (ssl.SSLError(1, "handshake failure"), "tls", "handshake failure"),
    ],
)
async def test_exchange_failures_are_classified_and_described(
    client: WHMClient, exception: Exception, reason: str, detail: str
) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, exception=exception)
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, err.value.detail) == (reason, detail)


@pytest.mark.parametrize("size", [2047, 2048])
async def test_a_body_up_to_the_cap_is_read(client: WHMClient, size: int) -> None:
    body = '{"pad": "' + "x" * (size - 11) + '"}'
    assert len(body) == size
    with aioresponses() as mocked:
        mocked.get(ANY, body=body)
        assert await client.call("listaccts") == {"pad": "x" * (size - 11)}


async def test_an_announced_length_over_the_cap_is_refused_unread(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, body="[" + " " * 2047 + "]", headers={"Content-Length": "2049"})
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, err.value.detail) == (
        "protocol",
        "answer of 2049 bytes exceeds the cap of 2048",
    )


async def test_an_announced_length_at_the_cap_is_read(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, body="[" + " " * 2046 + "]", headers={"Content-Length": "2048"})
        assert await client.call("listaccts") == []


async def test_chunks_that_add_up_past_the_cap_are_refused() -> None:
    # Each read is under the cap; together they are over it.
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=90_000
        )
        with aioresponses() as mocked:
            mocked.get(ANY, payload={"text": "z" * 100_000})
            with pytest.raises(WHMError) as err:
                await client.call("listaccts")
    # Two reads: 65,536 bytes, then the rest of the 100,012.
    assert (err.value.reason, err.value.detail) == (
        "protocol",
        "answer of at least 100012 bytes exceeds the cap of 90000",
    )


async def test_a_body_read_in_many_chunks_is_whole() -> None:
    # More than one read of 64 KiB (aioresponses cannot stream much more).
    text = "y" * 100_000
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2**20
        )
        with aioresponses() as mocked:
            mocked.get(ANY, payload={"text": text})
            assert await client.call("listaccts") == {"text": text}


async def test_body_over_the_cap_is_refused(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, body="[" + "1," * 2000 + "1]")
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, "cap" in err.value.detail) == ("protocol", True)


async def test_token_echoed_in_a_broken_body_is_not_repeated(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, body=f"<p>{TOKEN}</p>")
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert TOKEN not in err.value.detail
    assert "<token>" in err.value.detail


# Offsets at which the cut at 80 characters falls inside the token, five characters or more
# from either end.
@pytest.mark.parametrize("offset", range(80 - len(TOKEN) + 5, 80 - 4))
async def test_token_cut_by_the_snippet_never_leaks_even_in_part(
    client: WHMClient, offset: int
) -> None:
    # Redacting after the cut would leave the first part of a token that straddles it.
    with aioresponses() as mocked:
        mocked.get(ANY, body="<" * offset + TOKEN + ">" * 200)
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    pieces = {TOKEN[i : i + 5] for i in range(len(TOKEN) - 4)}
    assert not [p for p in pieces if p in err.value.detail], err.value.detail


@pytest.mark.parametrize(
    "body",
    [
        "[" * 20_000 + "]" * 20_000,
        '{"metadata": {"result": 1}, "data": ' + "[" * 1500 + "]" * 1500 + "}",
        b'{"metadata": {"result": 1}, "data": "\xff\xfe"}',
        '{"metadata": {"result": NaN}}',
        '{"metadata": {"result": Infinity}}',
    ],
)
async def test_undecodable_answers_are_protocol_errors(body: str | bytes) -> None:
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2**20
        )
        with aioresponses() as mocked:
            mocked.get(ANY, body=body)
            with pytest.raises(WHMError) as err:
                await client.call("listaccts")
    assert err.value.reason == "protocol"
    assert len(err.value.detail) < 200


async def test_observer_sees_each_call_with_its_outcome() -> None:
    seen: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session,
            URL,
            "root",
            SecretStr(TOKEN),
            request_timeout=5,
            max_response_bytes=2048,
            observer=lambda f, s, o: seen.append((f, o)),
        )
        with aioresponses() as mocked:
            mocked.get(ANY, payload={"metadata": {"result": 1}})
            mocked.get(ANY, status=401)
            mocked.get(ANY, exception=RuntimeError())
            await client.call("listaccts")
            with pytest.raises(WHMError):
                await client.call("list_pops_for")
            with pytest.raises(WHMError):
                await client.call("listaccts")
    assert seen == [("listaccts", "success"), ("list_pops_for", "auth"), ("listaccts", "http")]


async def test_observer_sees_a_cancelled_call_as_abandoned_with_its_duration() -> None:
    seen: list[tuple[str, float, str]] = []
    started = asyncio.Event()

    async def never(url: Any, **kwargs: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session,
            URL,
            "root",
            SecretStr(TOKEN),
            request_timeout=5,
            max_response_bytes=2048,
            observer=lambda f, s, o: seen.append((f, s, o)),
        )
        with aioresponses() as mocked:
            mocked.get(ANY, callback=never)
            call = asyncio.create_task(client.call("listaccts"))
            await started.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    [(function, seconds, outcome)] = seen
    assert (function, outcome) == ("listaccts", "abandoned")
    assert 0 <= seconds < 5


def test_a_session_holds_no_cookies_and_as_many_connections_as_the_bound() -> None:
    async def check() -> None:
        async with new_session(TLSConfig(), 3) as session:
            assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
            assert session.connector is not None
            assert session.connector.limit == 3

    asyncio.run(check())


# --- a call's own options (Exim's queue, the mail DNS batches) ----------------------------------


class Pieces:
    """A stream reader that keeps what it was fed, piece by piece."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.pieces.append(chunk)

    def finish(self) -> int:
        return sum(len(p) for p in self.pieces)


async def test_a_tuple_repeats_its_parameter(client: WHMClient) -> None:
    # validate_current_spfs takes its domains as domain=a&domain=b.
    with aioresponses() as mocked:
        mocked.get(ANY, payload={"metadata": {"result": 1}})
        await client.call("validate_current_spfs", {"domain": ("a.example", "b.example")})
    (_, url), _ = next(iter(mocked.requests.items()))
    assert url.query.getall("domain") == ["a.example", "b.example"]
    assert url.query["api.version"] == "1"


async def test_a_streamed_answer_is_fed_whole_and_its_reader_answers_for_it() -> None:
    # More than one read of 64 KiB (aioresponses cannot stream much more).
    text = b'{"data": "' + b"q" * 100_000 + b'"}'
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2048
        )
        reader = Pieces()
        with aioresponses() as mocked:
            mocked.get(ANY, body=text)
            # The call's own cap replaces the client's 2 KiB.
            got = await client.call("fetch_mail_queue", stream=reader, max_bytes=2**20)
    assert got == len(text)
    assert b"".join(reader.pieces) == text
    assert len(reader.pieces) > 1


async def test_a_streamed_answer_past_its_cap_is_refused_naming_the_cap(client: WHMClient) -> None:
    reader = Pieces()
    with aioresponses() as mocked:
        mocked.get(ANY, body=b"[" + b"1," * 50_000 + b"1]")
        with pytest.raises(WHMError) as err:
            await client.call("fetch_mail_queue", stream=reader, max_bytes=65536)
    assert (err.value.reason, err.value.detail) == (
        "protocol",
        "answer of at least 100003 bytes exceeds the cap of 65536",
    )
    # Nothing past the cap reached the reader.
    assert sum(len(p) for p in reader.pieces) <= 65536


async def test_a_reader_refusing_the_text_is_a_protocol_error_with_the_start_of_it(
    client: WHMClient,
) -> None:
    class Refusing(Pieces):
        def feed(self, chunk: bytes) -> None:
            raise ValueError("not JSON")

    class Broken(Pieces):
        def feed(self, chunk: bytes) -> None:
            raise ZeroDivisionError("a bug in the reader")

    with aioresponses() as mocked:
        mocked.get(ANY, body="<html>WHM login</html>")
        with pytest.raises(WHMError) as err:
            await client.call("fetch_mail_queue", stream=Refusing())
    assert (err.value.reason, err.value.detail) == (
        "protocol",
        not_json("'<html>WHM login</html>'"),
    )
    # A reader's own bug is not the answer's fault: it leaves as itself, with its traceback.
    with aioresponses() as mocked:
        mocked.get(ANY, body="[]")
        with pytest.raises(ZeroDivisionError):
            await client.call("fetch_mail_queue", stream=Broken())


async def test_a_calls_own_timeout_replaces_the_clients() -> None:
    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2048
        )
        with aioresponses() as mocked:
            mocked.get(ANY, exception=TimeoutError())
            with pytest.raises(WHMError) as err:
                await client.call("fetch_mail_queue", request_timeout=60)
            mocked.get(ANY, payload={"metadata": {"result": 1}})
            await client.call("listaccts")
    assert err.value.detail == "no complete answer within 60s"
    timeouts = [c.kwargs["timeout"].total for calls in mocked.requests.values() for c in calls]
    assert sorted(timeouts) == [5, 60]


async def test_the_loop_runs_between_the_pieces_of_a_streamed_answer() -> None:
    # aiohttp hands back what it holds without a turn of the loop; parsing a piece of Exim's
    # queue takes milliseconds, so without a yield per piece the loop would stall for all.
    turns = 0
    seen: list[int] = []

    class Watching(Pieces):
        def feed(self, chunk: bytes) -> None:
            seen.append(turns)
            super().feed(chunk)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        client = WHMClient(
            session, URL, "root", SecretStr(TOKEN), request_timeout=5, max_response_bytes=2**20
        )
        counter = asyncio.create_task(count_turns())
        with aioresponses() as mocked:
            mocked.get(ANY, body=b"[" + b"1," * 50_000 + b"1]")
            await client.call("fetch_mail_queue", stream=Watching())
        counter.cancel()
    assert len(seen) > 1
    assert all(b > a for a, b in itertools.pairwise(seen))
