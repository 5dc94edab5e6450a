"""Pure selection rules: which users, accounts, folders and senders become series.

Regexes are anchored (full match), as in Prometheus relabelling: ``INBOX.Trash`` does not also
match ``INBOX.Trash.Old``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from whm_exporter.whm.parse import SenderCount


def selected(
    name: str, include: Sequence[re.Pattern[str]], exclude: Sequence[re.Pattern[str]]
) -> bool:
    """Kept when it matches an include pattern (or there are none) and no exclude pattern."""
    if include and not any(p.fullmatch(name) for p in include):
        return False
    return not any(p.fullmatch(name) for p in exclude)


def top_senders(
    counts: Iterable[SenderCount], min_count: int, max_senders: int
) -> tuple[list[SenderCount], int]:
    """Senders at or above ``min_count``, the largest ``max_senders`` of them (0: no limit), ties
    broken by address so the same senders stay across scrapes; and how many were left out."""
    everyone = list(counts)
    eligible = sorted(
        (c for c in everyone if c.count >= min_count), key=lambda c: (-c.count, c.sender)
    )
    kept = eligible[:max_senders] if max_senders else eligible
    return kept, len(everyone) - len(kept)
