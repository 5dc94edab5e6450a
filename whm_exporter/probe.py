"""One probe: start or join the target's collection, wait as long as the schedule says (never past
the deadline), then serve every answer the target holds that is younger than its ``max_age``,
with how fresh each function's answers are."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import chain
from typing import Any

from whm_exporter.collect.calls import MAILBOX_LIST
from whm_exporter.collect.state import Item, Kept, Kind, TargetState
from whm_exporter.config import ModuleConfig
from whm_exporter.selection import selected
from whm_exporter.snapshot import (
    DiskSample,
    LimitSample,
    MailboxSample,
    MailFlowSample,
    SenderSample,
    Snapshot,
    UserFlags,
    UserSample,
)
from whm_exporter.target import Target
from whm_exporter.whm.parse import Account

log = logging.getLogger("whm_exporter.probe")
STATES = ("fresh", "kept", "missing")


async def probe(target: Target, budget: float, *, look: bool = False) -> Snapshot:
    """Probe ``target`` within ``budget`` seconds. ``look``: a person's ?debug=true, which
    collects as a scrape does but takes nothing from what Prometheus' next scrape counts
    (calls, errors, "fresh"), does not measure the scrape interval, and logs only the calls
    that ended while it waited."""
    state = target.state
    tally, logged = state.tally, state.tally.logged
    started = time.monotonic()
    target.collection.arrive(scrape=not look)
    pending = await target.collection.wait(started + budget)
    now = time.monotonic()
    found = snapshot(target.name, state, now, now - started, budget, pending=pending, look=look)
    _warn_when_over_budget(target, found, now)
    if look and state.tally is tally:
        # Without scrapes the tally only grows: show this probe's calls, not every one since.
        since = max(0, len(found.log) - (tally.logged - logged))
        return replace(found, log=found.log[since:])
    return found


class _Served:
    """Tells served answers from the rest and counts items by state and function."""

    def __init__(self, now: float, fresh_since: float) -> None:
        self.now = now
        self.fresh_since = fresh_since
        self.items: Counter[tuple[str, str]] = Counter()
        self.age: dict[str, float] = {}
        self.expired = 0

    def take(self, items: Iterable[Item[Any]], function: str, max_age: float) -> list[Any]:
        answers = []
        for state in STATES:
            self.items[(function, state)] += 0
        for item in items:
            age = self.now - item.answered_at
            if item.answer is None or age > max_age:
                # Too slow, not refused: WHM's refusals have their own errors and log lines.
                self.expired += item.answer is not None and item.last_ok
                self.items[(function, "missing")] += 1
                continue
            fresh = item.answered_at >= self.fresh_since
            self.items[(function, "fresh" if fresh else "kept")] += 1
            self.age[function] = max(self.age.get(function, 0.0), age)
            answers.append(item.answer)
        return answers


def snapshot(
    name: str,
    state: TargetState,
    now: float,
    duration: float,
    timeout: float,
    *,
    pending: bool,
    look: bool = False,
) -> Snapshot:
    """What the state holds now, as a probe that took ``duration`` of ``timeout`` serves it
    (one that only ``look``s leaves the counts and "fresh" to the next probe)."""
    module = state.module
    served = _Served(now, state.last_served)
    if not look:
        state.last_served = now
    users = state.accounts
    # WHM's server-wide answers count every user of the server, listed or not (a new account,
    # a system user such as nobody, a suspended one): all are served but those the target's
    # user filters leave out.
    cfg = module.discovery
    named = {u for u in state.named() if selected(u, cfg.include_users, cfg.exclude_users)}
    listed: dict[str, Account] = {}
    disk: list[DiskSample] = []
    discovery_done = True
    if state.listaccts is not None:
        forever = float("inf")
        listed = next(iter(served.take([state.listaccts], Kind.LISTACCTS.value, forever)), {})
        pops = served.take(state.pops.values(), module.discovery.function, forever)
        discovery_done = state.listaccts.answer is not None and len(pops) == len(state.pops)
        disk = _disk(state, now)
    dropped: Counter[str] = Counter()
    mailboxes: list[Kept[MailboxSample]] = []
    if module.mailboxes.enabled:
        function = state.mailbox_function or MAILBOX_LIST
        mailboxes = served.take(state.mailboxes.values(), function, module.mailboxes.max_age)
        if folders_dropped := sum(k.dropped for k in mailboxes):
            dropped["whm_mailbox_messages"] = dropped["whm_mailbox_size_bytes"] = folders_dropped
    recipients = module.unique_recipients
    senders: list[Kept[SenderSample]] = []
    totals: list[UserSample] = []
    if recipients.enabled:
        # An outsider's breakdown counts only once answered: WHM may well refuse it (nobody).
        items = (i for i in state.senders.values() if not i.outside or i.answer is not None)
        senders = served.take(items, Kind.SENDERS.value, recipients.max_age)
        if senders_dropped := sum(k.dropped for k in senders):
            dropped["whm_sender_unique_recipients"] = senders_dropped
        for item in state.totals.values():
            for counts in served.take([item], Kind.TOTALS.value, recipients.max_age):
                totals += [UserSample(u, item.subject, n) for u, n in counts.items() if u in named]
    flows: list[MailFlowSample] = []
    limits: dict[str, tuple[LimitSample, LimitSample]] = {}
    # cPanel's limits are per hour: the flags come from the shortest window alone (a longer
    # one would keep a limit "reached" for a day), 0 for users with mail only in a longer
    # window; none at all while the shortest has no answer to serve.
    windows = sorted(state.mail_flow.values(), key=_window_seconds(module))
    flags_served = False
    for flow in windows:
        for records in served.take([flow], Kind.MAIL_FLOW.value, module.mail_flow.max_age):
            shortest = flow is windows[0]
            flags_served = flags_served or shortest
            for r in records.values():
                if r.user not in named:
                    continue
                flows.append(
                    MailFlowSample(
                        r.user,
                        flow.subject,
                        r.sent,
                        r.delivered,
                        r.deferrals,
                        r.failures,
                        r.defer_failures,
                        r.sent_bytes,
                    )
                )
                if shortest:
                    limits[r.user] = _limits(r.user, r.reached_max_emails, r.reached_max_defer_fail)
                elif flags_served and r.user not in limits:
                    limits[r.user] = _limits(r.user, False, False)
    _warn_when_slow(name, state, served.expired)
    tally, up = state.peek_tally()
    if not look:
        state.take_tally()
    return Snapshot(
        up=up,
        duration=duration,
        timeout=timeout,
        deadline_exceeded=pending,
        calls=dict(tally.calls),
        errors=dict(tally.errors),
        # Every function at zero, so rate() and alerts work before the first cancel.
        abandoned={
            f: tally.abandoned[f] for f in {*tally.abandoned, *(f for f, _ in served.items)}
        },
        discovered_users=len(users),
        discovered_accounts=sum(len(a) for a in users.values()),
        discovery_complete=discovery_done,
        items=dict(served.items),
        data_age=served.age,
        mailboxes=list(chain.from_iterable(k.records for k in mailboxes)),
        senders=list(chain.from_iterable(k.records for k in senders)),
        user_totals=sorted(totals, key=lambda t: (t.user, t.window)),
        mail_flow=sorted(flows, key=lambda f: (f.user, f.window)),
        limits=[s for user in sorted(limits) for s in limits[user]],
        user_flags=[
            UserFlags(u, a.outgoing_held, a.outgoing_suspended)
            for u, a in sorted(listed.items())
            if u in users
        ],
        disk=disk,
        dropped=dict(dropped),
        log=list(tally.log),
        errors_total={
            (f, r): n
            for f, reasons in sorted(state.errors_total.items())
            for r, n in reasons.items()
        },
    )


def _disk(state: TargetState, now: float) -> list[DiskSample]:
    """Disk use of each account kept (the main mailbox under its user's name), from the
    discovery answers within ``mailboxes.max_age``, in WHM's order."""
    max_age = state.module.mailboxes.max_age
    samples: list[DiskSample] = []
    for user, item in state.pops.items():
        if item.answer is None or now - item.answered_at > max_age:
            continue
        # A set, not the tuple: a user may have thousands of addresses.
        kept = set(state.accounts[user])
        for mailbox in item.answer.disk:
            account = user if mailbox.main else mailbox.address
            if account in kept:
                samples.append(DiskSample(user, account, mailbox.used, mailbox.quota))
    return samples


def _limits(user: str, max_emails: bool, max_defer_fail: bool) -> tuple[LimitSample, LimitSample]:
    return (
        LimitSample(user, "max_emails_per_hour", max_emails),
        LimitSample(user, "max_defer_fail", max_defer_fail),
    )


def _window_seconds(module: ModuleConfig) -> Callable[[Item[Any]], float]:
    seconds = {w.label: w.seconds for w in module.mail_flow.windows}
    return lambda item: seconds[item.subject]


def _warn_when_slow(name: str, state: TargetState, expired: int) -> None:
    """Once per target (and again after it recovers): answers outlived max_age before the
    collection came back to them."""
    if expired and not state.slow_warned:
        log.warning(
            "a full pass over the target takes longer than max_age: answers expire before they"
            " are asked again; raise load_budget (or max_concurrency without a budget) or"
            " max_age, or filter users",
            extra={"target": name, "expired": expired},
        )
    elif not expired and state.slow_warned:
        log.info("every answer is within max_age again", extra={"target": name})
    state.slow_warned = bool(expired)


def _warn_when_over_budget(target: Target, found: Snapshot, now: float) -> None:
    """Once per target (and again after it fits): at its server's load budget, what the spam
    signal leaves of it does not keep the target's mailboxes within ``mailboxes.max_age``.
    Said before answers expire: when one pass over the mailboxes and address lists (at the
    mean call times measured) would take longer than ``max_age``, or when the oldest mailbox
    answer served is past three quarters of it; with the budget that would do."""
    state, pace = target.state, target.bound.pace
    module = state.module
    rate = pace.budget.rate
    if not rate or not module.mailboxes.enabled or state.listaccts is None:
        return
    if any(item.answer is None for item in state.pops.values()):
        return  # discovery is not complete: the counts are not known yet
    function = state.mailbox_function or MAILBOX_LIST
    work = len(state.mailboxes) * pace.estimate(function)
    work += len(state.pops) * pace.estimate(module.discovery.function)
    signal = pace.signal_load(now)
    left = rate - signal
    max_age = module.mailboxes.max_age
    target_pass = 0.75 * max_age
    oldest = found.data_age.get(function, 0.0)
    passing = work / left if left > 0 else math.inf
    over = passing > max_age or oldest > target_pass
    if over and not state.budget_warned:
        log.warning(
            "at this load budget the mailboxes are not kept within mailboxes.max_age: they"
            " will expire before they are asked again; raise load_budget, raise max_age, or"
            " filter users or accounts",
            extra={
                "target": target.name,
                "load_budget": rate,
                "spam_signal_load": round(signal, 2),
                "pass_seconds": round(max(oldest, passing)) if passing < math.inf else "never",
                "oldest_mailbox_seconds": round(oldest),
                "max_age_seconds": max_age,
                "load_budget_needed": math.ceil((signal + work / target_pass) * 10) / 10,
            },
        )
    elif not over and state.budget_warned:
        log.info(
            "the load budget keeps the target within max_age again", extra={"target": target.name}
        )
    state.budget_warned = over
