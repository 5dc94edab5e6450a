"""A failure's text is the server's (WHM's reason, a UAPI error list): kept short enough for a
log line and the debug page whatever the server sends."""

from __future__ import annotations

import pytest

from whm_exporter.whm import parse
from whm_exporter.whm.errors import MAX_DETAIL, WHMError


def test_a_long_detail_is_cut_and_says_how_much_was_left_out() -> None:
    err = WHMError("api", "x" * (MAX_DETAIL + 1234))
    assert err.detail == "x" * MAX_DETAIL + "... (1234 more characters)"
    assert str(err) == f"api: {err.detail}"
    assert WHMError("api", "y" * MAX_DETAIL).detail == "y" * MAX_DETAIL


def test_a_megabyte_of_whm_reason_is_kept_short() -> None:
    body = {"metadata": {"result": 0, "reason": "Permission denied " + "z" * 2**20}}
    with pytest.raises(WHMError) as caught:
        parse.data(body, "listaccts")
    assert caught.value.reason == "api"
    assert caught.value.detail.startswith("Permission denied zzz")
    assert len(caught.value.detail) < MAX_DETAIL + 40
