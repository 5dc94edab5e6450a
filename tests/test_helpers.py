"""The test helpers can fail: an exporter that wrote a series twice would not pass."""

from __future__ import annotations

import pytest
from conftest import WHM, Running, module, samples

from whm_exporter.simulator import Dataset

DATASET = Dataset(accounts=6, users=2, folders=2)


def doubled(text: str, name: str) -> str:
    """The exposition with the first sample of ``name`` written twice, as a buggy exporter
    that emitted a sender twice would write it."""
    lines = text.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith((name + "{", name + " ")))
    return "".join([*lines[: first + 1], lines[first], *lines[first + 1 :]])


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
async def test_a_series_written_twice_fails_the_reader(
    start_whm, start_exporter, accept: str
) -> None:
    whm: WHM = await start_whm(DATASET)
    running: Running = await start_exporter(module(whm.url))
    status, text = await running.get("/probe?target=t", Accept=accept)
    assert status == 200
    assert samples(text)  # the real answer reads
    for name in ("whm_sender_unique_recipients", "whm_mailbox_messages", "whm_up"):
        with pytest.raises(AssertionError, match="twice"):
            samples(doubled(text, name))
