"""Answers kept for a while, per target, when a module asks for caching (off by default)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any


class AnswerCache:
    """Parsed answers by key with the time they were fetched. Memory stays bounded by what is
    scraped: :meth:`keep_only` drops every key the last complete probe did not ask for."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, ttl: float, now: float) -> tuple[Any, float] | None:
        """The value and its age when younger than ``ttl``."""
        entry = self._entries.get(key)
        if entry is None or ttl <= 0 or now - entry[0] >= ttl:
            return None
        return entry[1], now - entry[0]

    def put(self, key: Hashable, value: Any, now: float) -> None:
        self._entries[key] = (now, value)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        wanted = set(keys)
        for key in [k for k in self._entries if k not in wanted]:
            del self._entries[key]
