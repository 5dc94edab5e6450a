"""The simulator's server under load: calls in service share its cores, and a slow-down can
start at a chosen moment.

Processor sharing, as an operating system shares CPUs among runnable processes: each call brings
a service demand (seconds of work on an idle server at normal speed) and progresses at
min(1, cores / calls in service) of a core (no limit on cores: a core each), divided by the
slow-down factor in effect. :class:`Sharing` is the pure model, walking from event to event (a
call ends, the slow-down starts); :class:`Server` runs it on the event loop with one timer for
the next event, recomputed whenever a call arrives or leaves.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

# Work left below this (seconds) is float residue: the call is done.
_RESIDUE = 1e-7


class LoadKnobs(Protocol):
    # Cores of the server (0: as many as there are calls in service).
    cores: int
    # (monotonic time it starts, factor): from then on every call needs factor times its work.
    slowdown: tuple[float, float]


def slowdown_at(slowdown: tuple[float, float], now: float) -> float:
    """The factor in effect at ``now``."""
    start, factor = slowdown
    return factor if now >= start else 1.0


@dataclass(eq=False, slots=True)
class Job:
    """One call in service."""

    remaining: float  # seconds of work left, at normal speed on an idle server


class Sharing:
    """Processor sharing among the calls in service. Times are passed in, so a test can drive
    it with any clock; every method first brings the model up to ``now`` (events in order, so a
    late reading of the clock loses nothing) and returns the calls that ended by then."""

    def __init__(self, now: float) -> None:
        self.jobs: list[Job] = []
        self.at = now
        self.work = 0.0  # core-seconds served, to all calls

    def share(self, cores: int) -> float:
        """The fraction of a core each call in service gets."""
        n = len(self.jobs)
        return 1.0 if not cores or n <= cores else cores / n

    def next_event(self, cores: int, slowdown: tuple[float, float]) -> float | None:
        """When the next call ends or, calls being in service, the slow-down starts."""
        if not self.jobs:
            return None
        rate = self.share(cores) / slowdown_at(slowdown, self.at)
        due = self.at + min(j.remaining for j in self.jobs) / rate
        start = slowdown[0]
        return start if self.at < start < due else due

    def advance(self, now: float, cores: int, slowdown: tuple[float, float]) -> list[Job]:
        ended: list[Job] = []
        while self.jobs and self.at < now:
            due = self.next_event(cores, slowdown)
            assert due is not None
            step = min(due, now)
            share = self.share(cores)
            rate = share / slowdown_at(slowdown, self.at)
            elapsed = step - self.at
            for job in self.jobs:
                job.remaining -= elapsed * rate
            self.work += elapsed * share * len(self.jobs)
            self.at = step
            ended += [j for j in self.jobs if j.remaining <= _RESIDUE]
            self.jobs = [j for j in self.jobs if j.remaining > _RESIDUE]
        self.at = max(self.at, now)
        return ended

    def add(self, job: Job, now: float, cores: int, slowdown: tuple[float, float]) -> list[Job]:
        ended = self.advance(now, cores, slowdown)
        self.jobs.append(job)
        return ended

    def remove(self, job: Job, now: float, cores: int, slowdown: tuple[float, float]) -> list[Job]:
        ended = self.advance(now, cores, slowdown)
        if job in self.jobs:
            self.jobs.remove(job)
        return ended


class Server:
    """:class:`Sharing` on the running event loop, with the knobs read at every event."""

    def __init__(self, knobs: LoadKnobs) -> None:
        self._knobs = knobs
        self._sharing = Sharing(time.monotonic())
        self._waiting: dict[Job, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    async def serve(self, demand: float) -> None:
        """Return once ``demand`` seconds of work have been served to this call."""
        job = Job(demand)
        self._waiting[job] = asyncio.get_running_loop().create_future()
        knobs = self._knobs
        self._settle(self._sharing.add(job, self._now(), knobs.cores, knobs.slowdown))
        try:
            await self._waiting[job]
        except asyncio.CancelledError:
            # The client hung up or the server stops: the others get its share back.
            self._waiting.pop(job, None)
            self._settle(self._sharing.remove(job, self._now(), knobs.cores, knobs.slowdown))
            raise

    def work_seconds(self) -> float:
        """Core-seconds served so far, to every call (those in service too)."""
        self._sync()
        return self._sharing.work

    def slow_down(self, factor: float, at: float) -> None:
        """Every call needs ``factor`` times its work from ``at`` on (1: normal speed)."""
        self._sync()  # the work done until now was at the old factor
        self._knobs.slowdown = (at, factor)
        self._settle([])

    def _sync(self) -> None:
        knobs = self._knobs
        self._settle(self._sharing.advance(self._now(), knobs.cores, knobs.slowdown))

    def _now(self) -> float:
        # The model may be a hair ahead of the clock after an early timer (below).
        return max(time.monotonic(), self._sharing.at)

    def _settle(self, ended: list[Job]) -> None:
        for job in ended:
            future = self._waiting.pop(job, None)  # None: its call was cancelled
            if future is not None and not future.done():
                future.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        knobs = self._knobs
        due = self._sharing.next_event(knobs.cores, knobs.slowdown)
        if due is not None:
            self._due = due
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, due - time.monotonic()), self._tick
            )

    def _tick(self) -> None:
        self._timer = None
        # A loop may run a timer up to its clock's resolution early: the event is due now.
        knobs = self._knobs
        now = max(time.monotonic(), self._due)
        self._settle(self._sharing.advance(now, knobs.cores, knobs.slowdown))
