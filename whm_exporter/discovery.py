"""Which accounts a target has: listaccts, then list_pops_for per user, cached for ``refresh``.

A failed refresh keeps the last good list (per user, for list_pops_for) and its errors are
reported by the probe that ran it. Explicit ``users:`` of a target are always scraped, whatever
the filters say: the operator named them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from whm_exporter.config import DiscoveryConfig
from whm_exporter.limits import selected
from whm_exporter.whm import parse

T = TypeVar("T")
# (function, subject, params, parser) -> the parsed answer, or None when the call failed (the
# probe has recorded why).
Fetch = Callable[[str, str, Mapping[str, str | int], Callable[[Any], T]], Awaitable[T | None]]


@dataclass(frozen=True, slots=True)
class Inventory:
    """cPanel user -> the accounts to scrape (email addresses, and the username for the main
    mailbox)."""

    users: Mapping[str, tuple[str, ...]]

    @property
    def account_count(self) -> int:
        return sum(len(a) for a in self.users.values())


def merge(
    found: Mapping[str, tuple[str, ...]], explicit: Mapping[str, tuple[str, ...]]
) -> Inventory:
    users = {u: set(a) for u, a in found.items()}
    for user, accounts in explicit.items():
        users.setdefault(user, set()).update(accounts)
    return Inventory({u: tuple(sorted(a)) for u, a in sorted(users.items())})


class Discovery:
    def __init__(self, config: DiscoveryConfig, explicit: Mapping[str, tuple[str, ...]]) -> None:
        self._config = config
        self._explicit = explicit
        self._found: dict[str, tuple[str, ...]] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()

    async def inventory(self, fetch: Fetch[Any], now: Callable[[], float]) -> Inventory:
        if self._config.enabled:
            # One refresh at a time: a probe that arrives during it waits for its result.
            async with self._lock:
                if now() - self._fetched_at >= self._config.refresh:
                    await self._refresh(fetch, now)
        return merge(self._found, self._explicit)

    async def _refresh(self, fetch: Fetch[Any], now: Callable[[], float]) -> None:
        cfg = self._config
        listed = await fetch("listaccts", "", {"want": "user,suspended"}, parse.accounts)
        if listed is None:
            return  # keep the last good list; try again on the next probe
        users = [
            a.user
            for a in listed
            if selected(a.user, cfg.include_users, cfg.exclude_users)
            and not (cfg.skip_suspended and a.suspended)
        ]
        answers = await asyncio.gather(
            *(fetch("list_pops_for", u, {"user": u}, parse.pops) for u in users)
        )
        found: dict[str, tuple[str, ...]] = {}
        for user, pops in zip(users, answers, strict=True):
            if pops is None:
                if user in self._found:
                    found[user] = self._found[user]
                continue
            candidates = [*pops, user] if cfg.main_account else pops
            found[user] = tuple(
                sorted(
                    a for a in candidates if selected(a, cfg.include_accounts, cfg.exclude_accounts)
                )
            )
        self._found = found
        self._fetched_at = now()
