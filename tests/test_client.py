"""WHMClient against mocked HTTP answers (aioresponses): request form and error classes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses
from conftest import TOKEN
from pydantic import SecretStr

from whm_exporter.whm.client import WHMClient
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


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, "<html>Login</html>", "auth"),
        (403, "Forbidden", "auth"),
        (500, "oops", "http"),
        (502, "<html>Bad Gateway</html>", "http"),
        (200, "<html><title>WHM Login</title></html>", "protocol"),
        (200, "", "protocol"),
        (200, '{"metadata": {"res', "protocol"),
    ],
)
async def test_failures_are_classified(
    client: WHMClient, status: int, body: str, reason: str
) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, status=status, body=body)
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert err.value.reason == reason
    assert TOKEN not in str(err.value)


async def test_not_found_marks_an_unknown_function(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, status=404, body="Not Found")
        with pytest.raises(WHMError) as err:
            await client.call("get_mailbox_status_list", {"account": "a@b.c"})
    assert (err.value.reason, err.value.unknown_function) == ("http", True)


async def test_timeout(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, exception=TimeoutError())
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert err.value.reason == "timeout"


async def test_connection_failures(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert err.value.reason == "connect"


async def test_any_other_failure_is_an_error_of_that_call(client: WHMClient) -> None:
    with aioresponses() as mocked:
        mocked.get(ANY, exception=RuntimeError("Session is closed"))
        with pytest.raises(WHMError) as err:
            await client.call("listaccts")
    assert (err.value.reason, err.value.detail) == ("http", "Session is closed")


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
