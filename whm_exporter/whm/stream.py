"""A WHM answer read as it arrives, for lists too big to hold decoded (Exim's queue: 100,000
messages are about 17 MB of JSON, and several times that as Python objects).

:class:`Records` hands each record of ``data.<key>[]`` to a consumer as soon as its bytes are
in, and keeps the ``metadata`` for the envelope check at the end; the body itself is never
held. ijson's C backend (yajl) parses each piece; a piece of 64 KiB costs a few milliseconds,
so the event loop is never held long. Pure: bytes in, records out, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ijson  # type: ignore[import-untyped]  # ships no type information
import orjson

from whm_exporter.whm.errors import WHMError
from whm_exporter.whm.parse import data

# An answer with no record at all is small: kept whole, to tell an empty list from none.
_SMALL = 64 * 1024
# ijson names each event by its whole path, so its cost grows with the nesting: a text nested
# 200,000 deep would hold the event loop for minutes. WHM's lists nest a few levels (a queued
# message's recipients are the fourth); deeper is refused, as orjson refuses past 1024.
MAX_DEPTH = 64
# Every byte but the brackets, deleted to count the nesting at C speed. Brackets inside strings
# count too: an address's are balanced ("postmaster@[192.0.2.1]"), and a text that is not has
# no business this deep.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


class Records:
    """``data.<key>[]`` of ``function``'s answer, each record given to ``consume`` in order.
    :meth:`finish` checks the envelope (WHM's own refusal, ``result: 0``, raises as
    :func:`parse.data` does) and returns how many records there were."""

    def __init__(self, function: str, key: str, consume: Callable[[Any], None]) -> None:
        self._function = function
        self._key = key
        self._consume = consume
        # Numbers as float, not Decimal: the consumer checks them as the other parsers do.
        self._found: list[Any] = ijson.sendable_list()
        self._records = ijson.items_coro(self._found, f"data.{key}.item", use_float=True)
        self._meta: list[Any] = ijson.sendable_list()
        self._metadata = ijson.items_coro(self._meta, "metadata", use_float=True)
        self._count = 0
        self._head: bytearray | None = bytearray()
        self._depth = 0

    def feed(self, chunk: bytes) -> None:
        depth = self._depth
        for bracket in chunk.translate(None, _NOT_BRACKETS):
            depth += 1 if bracket in _OPENERS else -1
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH}")
        self._depth = depth
        try:
            self._records.send(chunk)
            self._metadata.send(chunk)
        except ijson.JSONError as err:
            raise ValueError(str(err)) from None
        found = self._found
        if found:
            self._count += len(found)
            for record in found:
                self._consume(record)
            del found[:]
        if self._head is not None:
            self._head += chunk
            if len(self._head) > _SMALL:
                self._head = None

    def finish(self) -> int:
        try:
            # Closing raises for an answer cut short or not JSON.
            self._records.close()
            self._metadata.close()
        except ijson.JSONError as err:
            raise ValueError(str(err)) from None
        data({"metadata": self._meta[0] if self._meta else None}, self._function)
        if self._count == 0:
            self._check_empty()
        return self._count

    def _check_empty(self) -> None:
        """No record came: the answer is small (else it is broken anyway), read whole to tell
        an empty list from none."""
        body = orjson.loads(bytes(self._head)) if self._head is not None else None
        payload = body.get("data") if isinstance(body, dict) else None
        if not isinstance(payload, dict) or not isinstance(payload.get(self._key), list):
            raise WHMError("protocol", f"answer has no data.{self._key} list")
