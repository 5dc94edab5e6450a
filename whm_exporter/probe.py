"""One probe: start or join the target's collection, wait as long as the schedule says (never past
the deadline), then serve every answer the target holds that is younger than its ``max_age``,
with how fresh each function's answers are."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from whm_exporter.collect.state import TargetState
from whm_exporter.families import FAMILIES
from whm_exporter.families.base import Served
from whm_exporter.selection import selected
from whm_exporter.snapshot import Snapshot
from whm_exporter.target import Target


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
    found = snapshot(state, now, now - started, budget, pending=pending, look=look)
    target.advice.slow_pass(target.name, found.expired)
    target.advice.load_budget(target, found, now)
    if look and state.tally is tally:
        # Without scrapes the tally only grows: show this probe's calls, not every one since.
        since = max(0, len(found.log) - (tally.logged - logged))
        return replace(found, log=found.log[since:])
    return found


def snapshot(
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
        expired=served.expired,
    )
