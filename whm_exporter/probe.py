"""One probe: start or join the target's collection, wait as long as the schedule says (never past
the deadline), then serve every answer the target holds that is younger than its ``max_age``,
with how fresh each function's answers are."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

from whm_exporter.collect.state import TargetState
from whm_exporter.families import FAMILIES
from whm_exporter.families.base import Served
from whm_exporter.families.mailboxes import current_function
from whm_exporter.selection import selected
from whm_exporter.snapshot import Snapshot
from whm_exporter.target import Target

log = logging.getLogger("whm_exporter.probe")


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
    # WHM's server-wide answers count every user of the server, listed or not (a new account,
    # a system user such as nobody, a suspended one): all are served but those the target's
    # user filters leave out.
    cfg = state.module.discovery
    named = {u for u in state.named() if selected(u, cfg.include_users, cfg.exclude_users)}
    served = Served(now, state.last_served, named)
    if not look:
        state.last_served = now
    parts: dict[str, Any] = {}
    for family in FAMILIES:
        parts.update(family.serve(state, served))
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
        discovered_users=len(state.accounts),
        discovered_accounts=sum(len(a) for a in state.accounts.values()),
        items=dict(served.items),
        data_age=served.age,
        dropped=dict(served.dropped),
        log=list(tally.log),
        errors_total={
            (f, r): n
            for f, reasons in sorted(state.errors_total.items())
            for r, n in reasons.items()
        },
        parts=parts,
    )


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
    function = current_function(state)
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
