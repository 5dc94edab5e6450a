"""Which call comes next, and when a probe may answer: pure functions of a target's state and the
time (no I/O, no clock of their own), so the order is tested with a fake clock.

Priority, highest first:

a. the server-wide answers: per-user totals (and mail flow), one call each;
b. the senders of hot users, when older than the answer that made them hot (exact: a user's
   total is never below any one of its senders' counts, so no spammer hides below it);
c. an early re-list (a server-wide answer named a user listaccts did not), then items never
   answered: discovery, then mailboxes, then the senders of quiet users;
d. everything else, oldest first (and the failures of the kinds whose families say they wait
   their refresh: settings a reseller's token may not read); the few server-wide items
   (settings, cPHulk, the queue, the mail DNS) as soon as they are due, before the rest.

(a) and (b) are the spam signal and (c) makes a new server whole: neither waits for the load
budget. (d) refreshes what is known, only while the budget allows (``refreshing``).

Without usable per-user totals (disabled, role-disabled, failing) every user's senders rank right
after ``listaccts``: nothing else shows the spam signal. Without a load budget they are then
asked at every probe, as the spam signal; with one, those already answered are refreshed first
among (d). An item is asked at most once between two probes (``epoch_start``), and not again
while younger than its function's ``refresh``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from whm_exporter import families
from whm_exporter.collect.state import Item, Kind, Lane, Stage, TargetState
from whm_exporter.config import ModuleConfig

Refresh = Mapping[Kind, float]
# The kinds whose items, once their call failed, wait their refresh before they are asked again
# (as refreshes, in tier (d)): a token refused for good must not cost a call at every probe.
_PATIENT = frozenset(k for f in families.FAMILIES if f.failure_waits_refresh for k in f.kinds)
# The kinds no probe waits for (their families say so): asked beside the probes, not for one.
_BACKGROUND = frozenset(k for f in families.FAMILIES if not f.probe_waits for k in f.kinds)
# The kinds a probe waits for the first call of only, not for a renewal (Exim's queue).
_FIRST_ONLY = frozenset(k for f in families.FAMILIES if not f.refresh_waited for k in f.kinds)
# The lanes items never answered wait in, in the order of tier (c), as the families rank them.
_FIRST_TIME = families.FIRST_TIME
_FIRST_TIME_LANES = tuple(
    (k, s)
    for k in _FIRST_TIME
    for s in (Stage.NEW, Stage.FAILED)
    if not (s is Stage.FAILED and k in _PATIENT)
)
# The lanes of tier (d): answers to renew, and the patient kinds' failures to try again.
_REFRESH_LANES = (
    *((k, Stage.KEPT) for k in _FIRST_TIME),
    *((k, Stage.FAILED) for k in _FIRST_TIME if k in _PATIENT),
)
# The lanes of tier (d) whose heads go as soon as they are due, before the oldest of the rest:
# the few server-wide items (settings, cPHulk, the queue, the mail DNS).
_WHEN_DUE = frozenset(k for f in families.FAMILIES if f.renewed_when_due for k in f.kinds)
_DUE_LANES = tuple(key for key in _REFRESH_LANES if key[0] in _WHEN_DUE)
# Without per-user totals: a new user list, then every sender, answered or not.
_SENDERS_FIRST = (
    (Kind.LISTACCTS, Stage.NEW),
    (Kind.LISTACCTS, Stage.FAILED),
    (Kind.SENDERS, Stage.NEW),
    (Kind.SENDERS, Stage.FAILED),
    (Kind.SENDERS, Stage.KEPT),
)


def waited_for(item: Item[Any]) -> bool:
    """Whether a probe waits for the call in flight for ``item`` (its family says so)."""
    if item.kind in _FIRST_ONLY:
        return item.asked_before == -math.inf
    return item.kind not in _BACKGROUND


def refresh_of(module: ModuleConfig) -> dict[Kind, float]:
    """How long an answer of each kind is not asked again, as its family says."""
    return families.refresh_of(module)


def eligible(item: Item[Any], now: float, epoch: float, refresh: Refresh) -> bool:
    """Not in flight, not asked since the current probe arrived, and (when it has an answer,
    or its kind's failures wait) not asked within its refresh."""
    if item.in_flight or item.attempted_at >= epoch:
        return False
    if item.answer is None and item.kind not in _PATIENT:
        return True
    return now - item.attempted_at >= refresh[item.kind]


def totals_usable(state: TargetState) -> bool:
    """Whether the per-user totals show the spam signal: every window's last call succeeded."""
    return bool(state.totals) and all(t.last_ok for t in state.totals.values())


def _head(lane: Lane, now: float, epoch: float, refresh: Refresh) -> Item[Any] | None:
    # A lane is ordered by last attempt, so if its head may not go, nothing behind it may.
    head = lane.head()
    return head if head is not None and eligible(head, now, epoch, refresh) else None


def _first(
    items: Iterable[Item[Any]], now: float, epoch: float, refresh: Refresh
) -> Item[Any] | None:
    return next((i for i in items if eligible(i, now, epoch, refresh)), None)


def budgeted(state: TargetState) -> bool:
    return state.module.load_budget > 0


def is_refresh(item: Item[Any], urgent: bool) -> bool:
    """Whether a call the schedule handed out waits for the load budget: it renews an answer
    (or tries a patient kind's failure again) and is not the spam signal."""
    if urgent or item.early:
        return False
    return item.answer is not None or (item.kind in _PATIENT and item.attempted_at > -math.inf)


def next_item(
    state: TargetState, now: float, refresh: Refresh, *, refreshing: bool = True
) -> tuple[Item[Any], bool] | None:
    """The item to ask about next and whether it carries the spam signal; None when nothing
    may be asked now (nothing but the spam signal and first answers, unless ``refreshing``).
    (Runs before every call: no allocation but the answer.)"""
    epoch = state.epoch_start
    for item in state.server_wide:
        if eligible(item, now, epoch, refresh):
            return item, True
    for item in state.hot:
        if eligible(item, now, epoch, refresh):
            return item, True
    listing = state.listaccts
    if listing is not None and listing.early and not listing.in_flight:
        # WHM named a user it did not list: a new account's addresses, as a first answer.
        return listing, False
    lanes = state.lanes
    # `function: auto` asks one account first: a server without the list form then costs one
    # failed call, not one per account.
    learning = state.mailbox_function is None and any(
        i.kind is Kind.MAILBOX for i in state.in_flight
    )
    senders_first = not totals_usable(state)
    if senders_first:
        # Right after the user list: the senders are all there is of the spam signal (within
        # the budget, when there is one).
        signal = not budgeted(state)
        for key in _SENDERS_FIRST:
            if key[1] is Stage.KEPT and not (refreshing or signal):
                continue
            if (found := _head(lanes[key], now, epoch, refresh)) is not None:
                return found, found.kind is Kind.SENDERS and (signal or found.answer is None)
    for kind, stage in _FIRST_TIME_LANES:
        if (learning and kind is Kind.MAILBOX) or (senders_first and kind is Kind.SENDERS):
            continue
        # Never answered: a head not asked in this round may go.
        head = lanes[(kind, stage)].head()
        if head is not None and head.attempted_at < epoch:
            return head, False
    if not refreshing:
        return None
    for key in _DUE_LANES:
        if (due := _head(lanes[key], now, epoch, refresh)) is not None:
            return due, False
    oldest: Item[Any] | None = None
    # No mailbox has an answer while the mailbox function is learned, and with senders first,
    # a kept sender that may go went above. Kept senders wait for the totals being asked: those
    # may vouch for them (state.TargetState._confirm).
    waiting = any(t.in_flight or eligible(t, now, epoch, refresh) for t in state.totals.values())
    for key in _REFRESH_LANES:
        if waiting and key[0] is Kind.SENDERS:
            continue
        head = _head(lanes[key], now, epoch, refresh)
        if head is not None and (oldest is None or head.attempted_at < oldest.attempted_at):
            oldest = head
    return (oldest, False) if oldest is not None else None


def first_answers_pending(state: TargetState) -> bool:
    """Whether an item never answered may still be asked in this round, or is being asked
    (a user's addresses bring its mailboxes): such items use the whole bound, not the budget's
    pace."""
    if any(item.answer is None and item.kind not in _BACKGROUND for item in state.in_flight):
        return True
    epoch = state.epoch_start
    for key in _FIRST_TIME_LANES:
        if key[0] in _BACKGROUND:
            continue
        head = state.lanes[key].head()
        if head is not None and head.attempted_at < epoch:
            return True
    return False


def count_eligible(
    state: TargetState, now: float, refresh: Refresh, limit: int, *, waited: bool = False
) -> int:
    """How many items may be asked now, counted up to ``limit`` (``waited``: only those a
    probe waits for)."""
    epoch = state.epoch_start
    count = sum(1 for i in state.server_wide if eligible(i, now, epoch, refresh))
    for (kind, stage), lane in state.lanes.items():
        if count >= limit:
            break
        if waited and (kind in _BACKGROUND or (kind in _FIRST_ONLY and stage is not Stage.NEW)):
            continue
        if stage is Stage.NEW:
            count += len(lane)
            continue
        for item in lane:
            if count >= limit or not eligible(item, now, epoch, refresh):
                break
            count += 1
    return min(count, limit)


def spam_signal_fresh(state: TargetState, now: float, refresh: Refresh) -> bool:
    """Whether every call that shows the spam signal was made since the probe arrived (or may
    not be made again yet)."""
    epoch = state.epoch_start
    if state.urgent_in_flight:
        return False
    if _first(state.server_wide, now, epoch, refresh) or _first(state.hot, now, epoch, refresh):
        return False
    if totals_usable(state):
        return True
    # With a budget, only the senders never answered are part of it.
    stages = (Stage.NEW, Stage.FAILED) if budgeted(state) else tuple(Stage)
    return not any(
        _head(state.lanes[(Kind.SENDERS, stage)], now, epoch, refresh) for stage in stages
    )


def answer_now(
    state: TargetState,
    now: float,
    deadline: float,
    refresh: Refresh,
    *,
    call_seconds: float | None,
    concurrency: float,
) -> bool:
    """A probe answers once the spam signal is fresh and the rest is done or cannot be done
    before its deadline anyway (estimated from the mean call time at ``concurrency``, the calls
    in flight the work left may keep on average). The rest is what was due when the round
    began: what falls due while the probe waits does not hold it, or a pass about as long as
    the refresh would keep every probe waiting for its deadline."""
    if not spam_signal_fresh(state, now, refresh):
        return False
    due = state.epoch_start
    in_flight = sum(
        1 for item in state.in_flight if waited_for(item) and _was_due(item, due, refresh)
    )
    if in_flight == 0 and count_eligible(state, due, refresh, 1, waited=True) == 0:
        return True  # all done
    if call_seconds is None:
        return False  # nothing measured yet: wait for everything (or the deadline)
    capacity = max(0.0, deadline - now) / call_seconds * concurrency
    if capacity >= state.size:
        # Everything could still fit: no need to count what is left (a long deadline would
        # make that count walk every item at every call).
        return False
    left = count_eligible(state, due, refresh, math.floor(capacity) + 1, waited=True)
    return in_flight + left > capacity


def _was_due(item: Item[Any], at: float, refresh: Refresh) -> bool:
    """Whether the call in flight for ``item`` was due at ``at``: a first answer, or one
    renewing an answer then older than its refresh."""
    return item.answer is None or at - item.asked_before >= refresh[item.kind]
