"""The pure selection rules."""

from __future__ import annotations

import re

from whm_exporter.selection import selected, top_senders
from whm_exporter.whm.parse import SenderCount


def test_top_senders_breaks_ties_by_address_so_series_stay_stable() -> None:
    counts = [
        SenderCount("c@x", 5),
        SenderCount("a@x", 5),
        SenderCount("b@x", 9),
        SenderCount("d@x", 1),
    ]
    kept, dropped = top_senders(counts, min_count=2, max_senders=2)
    assert kept == [SenderCount("b@x", 9), SenderCount("a@x", 5)]
    assert dropped == 2


def test_zero_means_no_limit_and_min_count_zero_keeps_all() -> None:
    counts = [SenderCount(f"{i}@x", i) for i in range(5)]
    kept, dropped = top_senders(counts, min_count=0, max_senders=0)
    assert (len(kept), dropped) == (5, 0)


def test_patterns_are_anchored() -> None:
    trash = [re.compile(r"INBOX\.Trash")]
    assert not selected("INBOX.Trash", (), trash)
    assert selected("INBOX.Trash.Old", (), trash)
    assert not selected("INBOX", trash, ())
