"""One collection of one target: plan the calls, run them under the target's bound and the
deadline, and keep every answer and every failure for the Snapshot.

A collection never raises. Results are recorded as calls finish, so when the deadline cuts it
short (or a coalesced waiter stops waiting) what arrived so far is still served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from whm_exporter.discovery import Inventory
from whm_exporter.limits import selected, top_senders
from whm_exporter.snapshot import CallRecord, MailboxSample, SenderSample, Snapshot, UserSample
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

if TYPE_CHECKING:
    from whm_exporter.target import Target

log = logging.getLogger("whm_exporter.probe")
T = TypeVar("T")

MAILBOX_LIST = "get_mailbox_status_list"
MAILBOX_OBJECT = "get_mailbox_status"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
USER_TOTALS = "get_unique_sender_recipient_count_per_user"
_MAILBOX_PARSERS: dict[str, Callable[[Any], list[parse.Folder]]] = {
    MAILBOX_LIST: parse.mailbox_status_list,
    MAILBOX_OBJECT: parse.mailbox_status,
}
# Outcomes that prove WHM answered and accepted the credentials (whm_up).
_ANSWERED = frozenset({"success", "cached", "api", "role_disabled"})


class Probe:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.module = target.module
        self.deadline_exceeded = False
        self.inventory = Inventory({})
        self.calls: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[str] = Counter()
        self.cache_age: dict[str, float] = {}
        self.mailboxes: list[MailboxSample] = []
        self.senders: list[SenderSample] = []
        self.user_totals: list[UserSample] = []
        self.log: list[CallRecord] = []
        self._answered = False
        self._cache_keys: list[Hashable] = []

    async def run(self, deadline: float) -> None:
        """Collect until done or until ``deadline`` (``loop.time()``), whichever comes first."""
        try:
            async with asyncio.timeout_at(deadline):
                self.inventory = await self.target.discovery.inventory(self.fetch, time.monotonic)
                first = await self._learn_mailbox_function()
                async with asyncio.TaskGroup() as tasks:
                    self._plan(tasks, skip=first)
            self.target.cache.keep_only(self._cache_keys)
        except TimeoutError:
            self.deadline_exceeded = True
        except Exception:
            # A bug must not cost the operator the whole target: serve what was collected.
            log.exception("probe of %s failed unexpectedly", self.target.name)

    async def _learn_mailbox_function(self) -> tuple[str, str] | None:
        """With ``function: auto`` and nothing learned yet, scrape one account alone first, so
        that a server without the list form costs one failed call, not one per account."""
        if not self.module.mailboxes.enabled or self.target.knows_mailbox_function():
            return None
        for user, accounts in self.inventory.users.items():
            if accounts:
                await self._mailbox(user, accounts[0])
                return user, accounts[0]
        return None

    def _plan(self, tasks: asyncio.TaskGroup, skip: tuple[str, str] | None) -> None:
        mailboxes = self.module.mailboxes
        recipients = self.module.unique_recipients
        for user, accounts in self.inventory.users.items():
            if mailboxes.enabled:
                for account in accounts:
                    if (user, account) != skip:
                        tasks.create_task(self._mailbox(user, account))
            if recipients.enabled:
                for window in recipients.windows:
                    tasks.create_task(self._senders(user, window.label, window.seconds))
        if recipients.enabled and recipients.per_user_totals:
            for window in recipients.windows:
                tasks.create_task(self._user_totals(window.label, window.seconds))

    def _time_range(self, window: float) -> dict[str, str | int]:
        # WHM refuses an end_time ahead of its own clock (WHM-API-NOTES.md, get_unique_recipient_
        # count_per_sender_for_user): stay end_time_lag behind ours.
        end = int(time.time() - self.module.unique_recipients.end_time_lag)
        return {"start_time": end - int(window), "end_time": end}

    async def _mailbox(self, user: str, account: str) -> None:
        cfg = self.module.mailboxes
        function = self.target.mailbox_function()
        try:
            folders = await self.fetch(
                function,
                account,
                {"account": account},
                _MAILBOX_PARSERS[function],
                cache=(cfg.cache, account),
                raise_unknown=cfg.function == "auto" and function == MAILBOX_LIST,
            )
        except WHMError:
            # This server has no list form: use the object form from now on (per target).
            function = MAILBOX_OBJECT
            folders = await self.fetch(
                MAILBOX_OBJECT,
                account,
                {"account": account},
                parse.mailbox_status,
                cache=(cfg.cache, account),
            )
        if folders is None:
            return
        self.target.learn_mailbox_function(function)
        filtered = bool(cfg.include_folders or cfg.exclude_folders)
        for folder in folders:
            if not filtered or selected(folder.name, cfg.include_folders, cfg.exclude_folders):
                self.mailboxes.append(
                    MailboxSample(user, account, folder.name, folder.messages, folder.vsize)
                )
            else:
                self.dropped["whm_mailbox_messages"] += 1
                self.dropped["whm_mailbox_size_bytes"] += 1

    async def _senders(self, user: str, label: str, seconds: float) -> None:
        cfg = self.module.unique_recipients
        counts = await self.fetch(
            SENDERS,
            f"{user} {label}",
            {"user": user, **self._time_range(seconds)},
            parse.sender_counts,
            cache=(cfg.cache, (user, label)),
        )
        if counts is None:
            return
        kept, dropped = top_senders(counts, cfg.min_count, cfg.max_senders_per_user)
        self.senders.extend(SenderSample(user, c.sender, label, c.count) for c in kept)
        if dropped:
            self.dropped["whm_sender_unique_recipients"] += dropped

    async def _user_totals(self, label: str, seconds: float) -> None:
        cfg = self.module.unique_recipients
        totals = await self.fetch(
            USER_TOTALS,
            label,
            self._time_range(seconds),
            parse.user_totals,
            cache=(cfg.cache, label),
        )
        # WHM counts every user of the server; keep those this target scrapes (the filters and
        # skip_suspended apply to the totals too).
        for total in totals or ():
            if total.user in self.inventory.users:
                self.user_totals.append(UserSample(total.user, label, total.count))

    async def fetch(
        self,
        function: str,
        subject: str,
        params: Mapping[str, str | int],
        parser: Callable[[Any], T],
        *,
        cache: tuple[float, Hashable] | None = None,
        raise_unknown: bool = False,
    ) -> T | None:
        """One WHM call under the target's bound, parsed; None when it failed (recorded here).

        With ``raise_unknown``, an answer saying the server lacks the function is raised instead,
        so the caller can fall back to another function.
        """
        key = (function, cache[1]) if cache is not None and cache[0] > 0 else None
        if cache is not None and key is not None:
            self._cache_keys.append(key)
            hit = self.target.cache.get(key, cache[0], time.monotonic())
            if hit is not None:
                self.cache_age[function] = max(self.cache_age.get(function, 0.0), hit[1])
                self._record(function, subject, 0.0, "cached")
                return hit[0]  # type: ignore[no-any-return]
            self.cache_age.setdefault(function, 0.0)
        started = time.monotonic()
        try:
            async with self.target.semaphore:
                body = await self.target.client.call(function, params)
            result = parser(body)
        except WHMError as err:
            self._record(function, subject, time.monotonic() - started, err.reason, err.detail)
            if raise_unknown and err.unknown_function:
                raise
            return None
        self._record(function, subject, time.monotonic() - started, "success")
        if key is not None:
            self.target.cache.put(key, result, time.monotonic())
        return result

    def _record(
        self, function: str, subject: str, seconds: float, outcome: str, detail: str = ""
    ) -> None:
        self.calls[function] += 1
        self.log.append(CallRecord(function, subject, seconds, outcome, detail))
        if outcome in _ANSWERED:
            self._answered = True
        if outcome in ("success", "cached"):
            return
        self.errors[(function, outcome)] += 1
        # One warning per function and reason per probe; the rest are for the debug page.
        first = self.errors[(function, outcome)] == 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "WHM call failed",
            extra={
                "target": self.target.name,
                "function": function,
                "subject": subject,
                "reason": outcome,
                "detail": detail,
            },
        )

    def snapshot(self, started: float, timeout: float, *, cut_off: bool = False) -> Snapshot:
        """What was collected so far, as seen by a probe that began at ``started`` with
        ``timeout`` to spend; ``cut_off`` when it stopped waiting before the collection ended."""
        return Snapshot(
            up=self._answered,
            duration=time.monotonic() - started,
            timeout=timeout,
            deadline_exceeded=self.deadline_exceeded or cut_off,
            calls=dict(self.calls),
            errors=dict(self.errors),
            discovered_users=len(self.inventory.users),
            discovered_accounts=self.inventory.account_count,
            mailboxes=list(self.mailboxes),
            senders=list(self.senders),
            user_totals=list(self.user_totals),
            dropped=dict(self.dropped),
            cache_age=dict(self.cache_age),
            log=list(self.log),
        )
