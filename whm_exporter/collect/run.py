"""The collection of one target: calls in priority order under the server's bound and within its
load budget, going on between scrapes while someone scrapes, and the probes that wait on it.

A probe *arrives* (a new round begins unless another probe is still waiting: then it joins) and
*waits* until the schedule says it may answer, or until its own deadline. The calls go on after
it answered, until every item has been asked since the probe arrived, and stop taking new work
when no probe has come for twice the observed scrape interval (at most ``MAX_IDLE``): WHM is
only loaded while someone is looking. A deadline never cuts a call; it lands in the state.
Nothing raised inside one call escapes it.

Refreshing what is known waits for the server's budget (collect/budget.py): when only that is
left, one worker stays, outside the bound, and looks again once the budget allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from whm_exporter.collect import calls, schedule
from whm_exporter.collect.budget import Pace
from whm_exporter.collect.state import Item, TargetState
from whm_exporter.families.base import Call
from whm_exporter.snapshot import CallRecord
from whm_exporter.whm.client import WHMClient
from whm_exporter.whm.errors import WHMError

log = logging.getLogger("whm_exporter.collect")

MAX_IDLE = 600.0
# A waiting probe looks again at least this often: whether the rest of the work can still fit
# before its deadline changes with time, not only when a call ends.
RECHECK = 0.1
# Outcomes that prove WHM answered and accepted the credentials (whm_up).
ANSWERED = frozenset({"success", "api", "role_disabled"})
# Weight of the newest call in the mean call time that predicts what fits before a deadline.
_SMOOTHING = 0.05
# Outcomes that say WHM is struggling, whatever the latency: back off.
_STRUGGLING = frozenset({"timeout", "connect"})


class Bound(asyncio.Semaphore):
    """The per-server object: one for each WHM server (servers.py keys and keeps them), shared
    by every target naming it. It holds the most calls that may be in flight toward the server,
    and the server's load budget and back-off (``budget``: seconds of WHM time per second, 0 for
    none)."""

    def __init__(self, size: int, budget: float = 0.0) -> None:
        super().__init__(size)
        self.size = size
        self.pace = Pace(budget, size)


class Collection:
    def __init__(
        self,
        name: str,
        state: TargetState,
        bound: Bound,
        client: Callable[[], WHMClient],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.state = state
        self.bound = bound
        self.refresh = schedule.refresh_of(state.module)
        self._client = client
        self._clock = clock
        self._wall = wall
        # Each worker holds one place of the bound and asks one item after another.
        self._workers: set[asyncio.Task[None]] = set()
        # Calls of this collection not yet over.
        self._active = 0
        self._waiters: set[asyncio.Event] = set()
        self._last_arrival = clock()
        self._stopped = False
        # A worker waits outside the bound for the budget to allow the next refresh.
        self._pacing = False
        # Replaced by a reload: works on for the probes already waiting, then takes no more.
        self._retiring = False
        # Mean seconds per call, once one finished.
        self.call_seconds: float | None = None

    # --- probes ----------------------------------------------------------------------------

    def arrive(self, *, scrape: bool = True) -> None:
        """A probe came: a new round (unless it joins a waiting one) and the loop running."""
        now = self._clock()
        self._last_arrival = now
        if not self._waiters:
            self.state.new_epoch(now, scrape=scrape)
        self._hire()

    async def wait(self, deadline: float) -> bool:
        """Until the probe may answer or ``deadline`` (this clock); True when it answers with
        work still pending."""
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            while not self._ready(deadline):
                left = deadline - self._clock()
                if left <= 0:
                    break
                event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RECHECK)):
                        await event.wait()
        finally:
            self._waiters.discard(event)
        return self.pending()

    def _ready(self, deadline: float) -> bool:
        if self._stopped:
            # Answer once the cancelled calls have been counted.
            return not self._active
        # Work never answered goes at the bound's full size; refreshing at the budget's pace.
        size: float = self.bound.size
        if not schedule.first_answers_pending(self.state):
            size = min(size, self.bound.pace.concurrency())
        return schedule.answer_now(
            self.state,
            self._clock(),
            deadline,
            self.refresh,
            call_seconds=self.call_seconds,
            concurrency=size,
        )

    def pending(self) -> bool:
        """Whether calls a probe waits for are in flight or such items may still be asked in
        this round (the background families' go on beside the probes)."""
        if any(schedule.waited_for(item) for item in self.state.in_flight):
            return True
        now = self._clock()
        return schedule.count_eligible(self.state, now, self.refresh, 1, waited=True) > 0

    def _changed(self, *, urgent: bool = True) -> None:
        """Wake the waiting probes when what they wait for may have come: a call of the spam
        signal ended, or no call is left in flight (else they look every RECHECK: waking every
        probe at every call would cost more than the calls)."""
        if urgent or not self._active:
            for event in self._waiters:
                event.set()

    # --- the loop --------------------------------------------------------------------------

    def _idle(self, now: float) -> bool:
        """Whether to take no new work: stopped, or nobody is looking (no probe waits, and
        none came for twice the scrape interval)."""
        if self._stopped:
            return True
        if self._waiters:
            return False
        interval = self.state.interval
        limit = min(2 * interval, MAX_IDLE) if interval else MAX_IDLE
        return self._retiring or now - self._last_arrival > limit

    def _hire(self) -> None:
        """Workers up to the bound's size, when there may be work: at a probe's arrival, and
        after a call whose answer may have brought new items (a user's addresses, a hot user)."""
        if self._idle(self._clock()):
            return
        loop = asyncio.get_running_loop()
        while len(self._workers) < self.bound.size:
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        """Take a place in the bound, ask the next item, again; leave when there is nothing
        to ask now (or nobody looks). When only refreshes are left and the budget (or the
        back-off) holds them back, one worker waits outside the bound and looks again."""
        pace = self.bound.pace
        while True:
            pause = 0.0
            ok = False
            async with self.bound:
                now = self._clock()
                if self._idle(now):
                    return
                allowed = pace.refresh_allowed(now)
                picked = schedule.next_item(self.state, now, self.refresh, refreshing=allowed)
                if picked is None:
                    pause = self._pause(now, allowed)
                    if not pause:
                        return
                else:
                    ok = await self._call(*picked, now)
            if pause:
                self._pacing = True
                try:
                    await asyncio.sleep(pause)
                finally:
                    self._pacing = False
            elif len(self._workers) < self.bound.size and ok:
                # Fewer workers than places: this answer may have brought work for more.
                self._hire()

    def _pause(self, now: float, allowed: bool) -> float:
        """Seconds this worker waits before it looks again (0: it leaves): only one waits, and
        only while a refresh that could go is held back."""
        if allowed or self._pacing or schedule.next_item(self.state, now, self.refresh) is None:
            return 0.0
        # The back-off frees a place when a refresh ends, maybe another target's: look again
        # soon rather than when the budget alone would allow.
        return min(max(self.bound.pace.budget.wait(now), 0.01), 10 * RECHECK)

    async def _call(self, item: Item[Any], urgent: bool, now: float) -> bool:
        """Ask about ``item`` (the caller holds a place in the bound); True when answered."""
        pace = self.bound.pace
        refreshing = schedule.is_refresh(item, urgent)
        self.state.start(item, now, urgent=urgent)
        self._active += 1
        pace.refreshing += refreshing
        ok = abandoned = False
        try:
            ok = await self._ask(item)
        except asyncio.CancelledError:
            abandoned = True
            raise
        finally:
            self._active -= 1
            pace.refreshing -= refreshing
            self.state.finish(item, ok, abandoned=abandoned)
            self._changed(urgent=urgent)
        return ok

    async def _ask(self, item: Item[Any]) -> bool:
        call = calls.plan(item, self.state, self._wall())
        answered = item.answered_at
        while call is not None:
            started = self._clock()
            try:
                body = await self._fetch(call, urgent=item.urgent)
                problems = call.keep(body, self._clock()) or []
            except asyncio.CancelledError:
                self.state.abandon(call.function)
                self._record(call, started, "abandoned", "the collection was stopped")
                raise
            except WHMError as err:
                self._record(call, started, err.reason, err.detail)
                if calls.fallback(self.state, call, err):
                    call = calls.plan(item, self.state, self._wall())
                    continue
                if call.on_error is None:
                    return False
                if (instead := call.on_error(err)) is not None:
                    # A batch split to find the one part the server refuses.
                    call = await self._paced(instead)
                    continue
                # The item failed, unless its family answered it without this part (a batch's
                # last domain left out).
                return item.answered_at != answered
            except Exception as err:
                # A bug or an answer nobody foresaw costs this one item, never its siblings.
                log.exception("WHM call failed unexpectedly", extra={"target": self.name})
                self._record(call, started, "protocol", f"unexpected {type(err).__name__}")
                return False
            self._record(call, started, "success")
            for problem in problems:
                self._record(call, started, problem.reason, problem.detail, part=True)
            if call.then is not None and (following := call.then()) is not None:
                call = await self._paced(following)
                continue
            return True
        # Nothing to ask: its family answered the item without a call (no domain to check).
        return True

    async def _paced(self, call: Call) -> Call:
        """The next call of an item asked in several: it waits for the server's load budget
        and back-off as a refresh would (the item keeps its place in the bound meanwhile)."""
        pace = self.bound.pace
        while True:
            now = self._clock()
            if pace.follow_up_allowed(now):
                return call
            # The back-off frees a place when a refresh ends: look again soon.
            await asyncio.sleep(min(max(pace.budget.wait(now), 0.01), 10 * RECHECK))

    async def _fetch(self, call: Call, *, urgent: bool) -> Any:
        """The call to WHM, charged to the server's budget at its real duration (an abandoned
        call cost WHM its work too) and told to its back-off."""
        pace = self.bound.pace
        started = self._clock()
        charged = pace.started(call.function, started)
        struggling = False
        try:
            return await self._client().call(
                call.endpoint,
                call.params,
                stream=call.stream() if call.stream is not None else None,
                request_timeout=call.timeout,
                max_bytes=call.max_bytes,
            )
        except WHMError as err:
            struggling = err.reason in _STRUGGLING or (err.status or 0) >= 500
            raise
        finally:
            now = self._clock()
            pace.ended(
                call.function,
                charged,
                now - started,
                now,
                struggling=struggling,
                signal=urgent,
            )

    def _record(
        self,
        call: Call,
        started: float,
        outcome: str,
        detail: str = "",
        *,
        part: bool = False,
    ) -> None:
        """A call's outcome, or (``part``) something wrong inside an answer that was kept."""
        seconds = self._clock() - started
        if outcome == "abandoned":
            self.state.tally.log.append(CallRecord(call.function, call.subject, seconds, outcome))
            return
        if not part:
            self.call_seconds = (
                seconds
                if self.call_seconds is None
                else self.call_seconds + _SMOOTHING * (seconds - self.call_seconds)
            )
        first = (call.function, outcome) not in self.state.tally.errors
        self.state.record(
            CallRecord(call.function, call.subject, seconds, outcome, detail),
            answered=outcome in ANSWERED,
            call_ended=not part,
        )
        if outcome != "success":
            # One warning per function and reason per probe; the rest are for the debug page.
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "WHM call failed",
                extra={
                    "target": self.name,
                    "function": call.function,
                    "subject": call.subject,
                    "reason": outcome,
                    "detail": detail,
                },
            )

    async def settled(self) -> None:
        """Until the collection has nothing left to do in this round (or has stopped)."""
        while self._workers:
            await asyncio.wait(set(self._workers))

    # --- stopping --------------------------------------------------------------------------

    def retire(self) -> None:
        """Finish for the probes waiting now; take no new work once they have answered."""
        self._retiring = True

    def cancel(self) -> None:
        """No new calls, those in flight cancelled (and counted as abandoned); waiting probes
        answer with what there is."""
        self._stopped = True
        for worker in self._workers:
            worker.cancel()
        self._changed()
