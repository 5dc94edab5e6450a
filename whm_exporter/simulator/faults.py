"""Broken and hostile answers the simulator can send instead of the real one, each as a real
server would put it on the wire: wrong statuses, login pages, bad JSON, wrong shapes, bodies too
large, stalls, dribbles and resets. Named by kind for ``Knobs.faults`` and ``--fault``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Fault = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
# Folder and sender names that a careless exporter would turn into invalid exposition.
WEIRD_NAMES = ('INBOX.say "hi"', "INBOX.back\\slash", "INBOX.two\nlines", "INBOX.Überweisungen ✉")
# A WHM reason that forges log lines if written raw: a carriage return and a terminal escape
# that erase what the line said so far, and a Unicode line separator, before fake records.
HOSTILE_REASON = 'denied\r\x1b[2Klevel=error msg="forged"\u2028ts=0 level=info msg=forged'


def _ok(function: str, data: object) -> dict[str, Any]:
    return {
        "data": data,
        "metadata": {"command": function, "reason": "OK", "result": 1, "version": 1},
    }


def _static(status: int, body: str, content_type: str = "text/html") -> Fault:
    async def send(request: web.Request, function: str) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return send


def _json(build: Callable[[str], object]) -> Fault:
    async def send(request: web.Request, function: str) -> web.StreamResponse:
        return web.json_response(build(function))

    return send


def _folders(value: object) -> Callable[[str], object]:
    """A mailbox answer, in the shape the function has, whose INBOX has this messages value."""

    def build(function: str) -> object:
        item = {"guid": "0" * 32, "messages": value, "vsize": 10}
        if function == "get_mailbox_status":
            return _ok(function, {"INBOX": item})
        return _ok(function, {"mailboxes": [{**item, "mailbox": "INBOX"}]})

    return build


def _raw(body: Callable[[str], str]) -> Fault:
    """A body written by hand: what ``json.dumps`` would not write (non-finite numbers, nesting
    deeper than a decoder recurses)."""

    async def send(request: web.Request, function: str) -> web.StreamResponse:
        return web.Response(text=body(function), content_type="application/json")

    return send


def _with_result(result: str) -> Callable[[str], str]:
    """An empty mailbox answer whose ``metadata.result`` is this JSON text."""
    return lambda function: json.dumps(_ok(function, {"mailboxes": []})).replace(
        '"result": 1', f'"result": {result}'
    )


def _deep(depth: int) -> Callable[[str], str]:
    """A mailbox list nested ``depth`` arrays deep: small on the wire, fatal to a recursive
    decoder (20,000 exceeds Python's recursion limit; 200,000 crashed orjson < 3.9.15)."""
    return lambda function: json.dumps(_ok(function, {"mailboxes": None})).replace(
        '"mailboxes": null', '"mailboxes": ' + "[" * depth + "]" * depth
    )


def _api(reason: str) -> Callable[[str], object]:
    return lambda function: {
        "metadata": {"command": function, "reason": reason, "result": 0, "version": 1}
    }


def _duplicates(function: str) -> object:
    item = {"guid": "0" * 32, "mailbox": "INBOX", "messages": 1, "vsize": 1}
    return _ok(function, {"mailboxes": [item, dict(item)]})


def _weird(function: str) -> object:
    if function.startswith("get_unique_recipient"):
        return _ok(
            function,
            {
                "payload": [
                    {
                        "sender": name.removeprefix("INBOX.") + "@x.example",
                        "unique_recipient_count": 3,
                    }
                    for name in WEIRD_NAMES
                ]
            },
        )
    folders = [{"guid": "0" * 32, "mailbox": n, "messages": 2, "vsize": 20} for n in WEIRD_NAMES]
    if function == "get_mailbox_status":
        return _ok(function, {f.pop("mailbox"): f for f in folders})
    return _ok(function, {"mailboxes": folders})


async def _huge_body(request: web.Request, function: str) -> web.StreamResponse:
    """Announces and sends 8 MiB of valid-looking JSON."""
    pad = " " * (8 * 1024 * 1024)
    return web.Response(
        text=json.dumps(_ok(function, {"mailboxes": []})) + pad, content_type="application/json"
    )


async def _huge_chunked(request: web.Request, function: str) -> web.StreamResponse:
    """Streams without a length, far past any sane cap, until the client hangs up."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"data": {"mailboxes": [')
    chunk = b'{"mailbox": "INBOX", "messages": 1, "vsize": 1},' * 1000
    with contextlib.suppress(ConnectionError):  # the client hanging up is the point
        for _ in range(2000):
            await resp.write(chunk)
    return resp


async def _stall_body(request: web.Request, function: str) -> web.StreamResponse:
    """Sends the headers, then nothing."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"data": ')
    await asyncio.sleep(3600)
    return resp


async def _dribble(request: web.Request, function: str) -> web.StreamResponse:
    """A byte every 50 ms, forever: each read succeeds, the answer never ends."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    while True:
        await resp.write(b" ")
        await asyncio.sleep(0.05)


async def _reset(request: web.Request, function: str) -> web.StreamResponse:
    """Half a body, then the connection is torn down."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "500"})
    await resp.prepare(request)
    await resp.write(b'{"data": {"mailboxes": [{"mailbox": "INBOX", ')
    assert request.transport is not None
    request.transport.abort()
    return resp


async def _never(request: web.Request, function: str) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise web.HTTPGatewayTimeout()


FAULTS: dict[str, Fault] = {
    "http401": _static(401, "<html><body>Login required</body></html>"),
    "auth": _static(403, "Forbidden", "text/plain"),
    "http500": _static(500, "Internal Server Error", "text/plain"),
    "http502": _static(502, "<html><head><title>502 Bad Gateway</title></head></html>"),
    "html200": _static(200, "<html><title>WHM Login</title><form>...</form></html>"),
    "empty": _static(200, "", "application/json"),
    "garbage": _static(200, '{"metadata": {"result": 1', "application/json"),
    "list_body": _static(200, "[]", "application/json"),
    "no_data": _json(lambda f: {"metadata": {"command": f, "result": 1, "reason": "OK"}}),
    "api_error": _json(_api("API failure: (XID 7f3a) Something went wrong on the server.")),
    "api_denied": _json(_api("Permission denied")),
    "api_no_reason": _json(lambda f: {"metadata": {"result": 0}}),
    "api_hostile_reason": _json(_api(HOSTILE_REASON)),
    "float_messages": _json(_folders(1.5)),
    "negative": _json(_folders(-3)),
    "huge": _json(_folders(10**30)),
    "nonnumeric": _json(_folders("lots")),
    "long_digits": _json(_folders("9" * 5000)),
    "infinite_result": _raw(_with_result("Infinity")),
    "overflow_result": _raw(_with_result("1e999")),
    "fractional_result": _raw(_with_result("1.9")),
    "deep_nesting": _raw(_deep(20_000)),
    "deeper_nesting": _raw(_deep(200_000)),
    "duplicate_folders": _json(_duplicates),
    "weird_names": _json(_weird),
    "huge_body": _huge_body,
    "huge_chunked": _huge_chunked,
    "stall_body": _stall_body,
    "dribble": _dribble,
    "reset": _reset,
    "slow": _never,
}
