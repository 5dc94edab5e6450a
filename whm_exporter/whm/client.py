"""WHMClient: HTTP to one WHM server, and nothing else.

One aiohttp session per target, ``Authorization: whm user:token``, ``api.version=1`` on every call,
TLS verified by default, a per-call timeout and a cap on the body size. Every failure leaves as a
:class:`WHMError` with its reason class; a body is decoded JSON, never trusted further (that is
the parsers' job).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import orjson
from pydantic import SecretStr

from whm_exporter.config import TLSConfig
from whm_exporter.whm.errors import WHMError

# (function, seconds, outcome) for the exporter's own metrics; outcome is "success" or a reason.
CallObserver = Callable[[str, float, str], None]
# What the operator can change when verification fails, by OpenSSL's verify code (x509_vfy.h):
# an issuer not in the trust store, or a certificate that does not name the host asked for.
_CA_HINT = "is WHM's certificate self-signed or from a private CA? give its CA in tls.ca_file"
_NAME_HINT = "the certificate names another host: give a name it holds in tls.server_name"
_TLS_HINTS = {2: _CA_HINT, 18: _CA_HINT, 19: _CA_HINT, 20: _CA_HINT, 21: _CA_HINT}
_TLS_HINTS |= {62: _NAME_HINT, 64: _NAME_HINT}
# A parameter's values: a tuple repeats the parameter (validate_current_spfs: domain=a&domain=b).
Params = Mapping[str, str | int | tuple[str, ...]]


class StreamReader(Protocol):
    """Reads an answer as it arrives, for answers too big to hold decoded (Exim's queue):
    ``feed`` takes each piece of the body in order, ``finish`` returns what the call gives
    back instead of the decoded body. Either raises ValueError for a text that is not JSON,
    :class:`WHMError` for a broken answer."""

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> Any: ...


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The TLS policy of a module: verify against the system store or ``ca_file``, or not at all."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def new_session(tls: TLSConfig, max_concurrency: int) -> aiohttp.ClientSession:
    """A session for one target; its pool is as large as the calls that may be in flight."""
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(tls), limit=max_concurrency, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    # No cookies: WHM token auth needs none, and a login page's cookies must not follow us.
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class WHMClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        username: str,
        token: SecretStr,
        *,
        request_timeout: float,
        max_response_bytes: int,
        server_name: str | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._session = session
        self._base = url.rstrip("/") + "/json-api/"
        self._token = token.get_secret_value()
        self._headers = {"Authorization": f"whm {username}:{self._token}"}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._max_bytes = max_response_bytes
        self._server_name = server_name
        self._observer = observer

    def __repr__(self) -> str:
        return f"WHMClient({self._base!r})"

    async def call(
        self,
        function: str,
        params: Params | None = None,
        *,
        stream: StreamReader | None = None,
        request_timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """GET one WHM API 1 function and return the decoded JSON body, or what ``stream``
        makes of it. ``request_timeout`` and ``max_bytes`` replace the client's own."""
        started = time.monotonic()
        outcome = "success"
        try:
            return await self._call(function, params or {}, stream, request_timeout, max_bytes)
        except WHMError as err:
            outcome = err.reason
            raise
        except asyncio.CancelledError:
            # No deadline cancels a call: only a stop (shutdown, a replaced target) does.
            outcome = "abandoned"
            raise
        except Exception:
            # A stream reader's own failure (a bug: the runner logs it with its traceback).
            outcome = "protocol"
            raise
        finally:
            if self._observer is not None:
                self._observer(function, time.monotonic() - started, outcome)

    async def _call(
        self,
        function: str,
        params: Params,
        stream: StreamReader | None,
        seconds: float | None,
        max_bytes: int | None,
    ) -> Any:
        query: list[tuple[str, str]] = [("api.version", "1")]
        for key, value in params.items():
            values: Sequence[str | int] = value if isinstance(value, tuple) else (value,)
            query.extend((key, str(v)) for v in values)
        limit = aiohttp.ClientTimeout(total=seconds) if seconds else self._timeout
        cap = max_bytes or self._max_bytes
        try:
            async with self._session.get(
                self._base + function,
                params=query,
                headers=self._headers,
                timeout=limit,
                server_hostname=self._server_name,
                allow_redirects=False,
            ) as resp:
                if resp.status in (401, 403):
                    raise WHMError("auth", f"HTTP {resp.status}: credentials refused")
                if resp.status == 404:
                    raise WHMError("http", "HTTP 404", unknown_function=True, status=404)
                if resp.status != 200:
                    raise WHMError("http", f"HTTP {resp.status}", status=resp.status)
                if stream is not None:
                    return await self._stream(resp, stream, cap)
                body = await self._read(resp, cap)
        except WHMError:
            raise
        except _ReaderFault as fault:
            # Not the exchange's failure: the reader's own, as it was raised.
            cause = fault.__cause__
            assert cause is not None
            raise cause from None
        except TimeoutError:
            raise WHMError("timeout", f"no complete answer within {limit.total}s") from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as err:
            raise WHMError("tls", _tls_detail(err)) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as err:
            # Refused, reset, DNS, or a connection closed mid-body.
            raise WHMError("connect", _describe(err)) from None
        except Exception as err:  # any other failure of the exchange is this call's alone
            raise WHMError("http", _describe(err)) from None
        try:
            return orjson.loads(body)
        except Exception:  # malformed, nested too deep, not UTF-8: this call's failure alone
            snippet = _snippet(body, self._token)
            raise WHMError("protocol", f"answer is not JSON: {snippet}") from None

    async def _read(self, resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """The body, whole."""
        return b"".join([chunk async for chunk in _pieces(resp, cap)])

    async def _stream(self, resp: aiohttp.ClientResponse, reader: StreamReader, cap: int) -> Any:
        """The body handed to ``reader`` piece by piece as it arrives (none of it kept here)."""
        first = b""
        try:
            async for chunk in _pieces(resp, cap):
                first = first or chunk
                reader.feed(chunk)
                # aiohttp hands buffered pieces back without a turn of the loop: each piece
                # costs milliseconds to parse, so let the loop run between them.
                await asyncio.sleep(0)
            return reader.finish()
        except ValueError:  # the reader's parser refused the text
            snippet = _snippet(first, self._token)
            raise WHMError("protocol", f"answer is not JSON: {snippet}") from None
        except (WHMError, aiohttp.ClientError, OSError):
            raise
        except Exception as err:
            raise _ReaderFault() from err


async def _pieces(resp: aiohttp.ClientResponse, cap: int) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive: refused unread when it announces more than the cap,
    cut off once what came is more."""
    if resp.content_length is not None and resp.content_length > cap:
        raise WHMError(
            "protocol", f"answer of {resp.content_length} bytes exceeds the cap of {cap}"
        )
    size = 0
    while chunk := await resp.content.read(65536):
        size += len(chunk)
        if size > cap:
            raise _over(size, cap)
        yield chunk


class _ReaderFault(Exception):
    """A stream reader's own failure (a bug), kept apart from the exchange's failures."""


def _over(size: int, cap: int) -> WHMError:
    # An answer sent without its length is refused once what came is over the cap: at least
    # that big (a queue too big for mail_queue.max_response_bytes says how big, at least).
    return WHMError("protocol", f"answer of at least {size} bytes exceeds the cap of {cap}")


def _describe(err: BaseException) -> str:
    # aiohttp errors name the host and port, never our headers; keep them short for logs.
    text = str(err) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _tls_detail(err: BaseException) -> str:
    """The TLS failure, with the config key that fixes it when there is one."""
    # aiohttp wraps the ssl.SSLCertVerificationError that carries the code.
    cause = getattr(err, "certificate_error", err)
    hint = _TLS_HINTS.get(getattr(cause, "verify_code", 0))
    return f"{_describe(err)} ({hint})" if hint else _describe(err)


def _snippet(body: bytes, token: str) -> str:
    """The start of a body for a log line. The token is redacted before the cut, so that no part
    of it survives a cut through it."""
    text = body.decode("utf-8", "replace")
    if token:  # config refuses an empty token; replacing "" would put <token> everywhere
        text = text.replace(token, "<token>")
    text = text[:80].replace("\n", " ").strip()
    return repr(text) if text else "empty body"
