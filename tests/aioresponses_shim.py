"""Until aioresponses releases its fix (pnuckowski/aioresponses#288 for #289), its responses
cannot be built with aiohttp >= 3.14, whose ClientResponse requires ``stream_writer``. We keep
current aiohttp (3.14.0 fixes GHSA-jg22-mg44-37j8) and give aioresponses a response class that
supplies the argument. Delete this file when aioresponses > 0.7.9 is out."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import aioresponses.core
from aiohttp.abc import AbstractStreamWriter


class ShimResponse(aiohttp.ClientResponse):
    def __init__(self, *args: Any, stream_writer: Any = None, **kwargs: Any) -> None:
        # A mocked request sent nothing: all aiohttp reads from the writer is its output size.
        writer = stream_writer or cast(AbstractStreamWriter, SimpleNamespace(output_size=0))
        super().__init__(*args, stream_writer=writer, **kwargs)


def install() -> None:
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        aioresponses.core.ClientResponse = ShimResponse  # type: ignore[attr-defined]
