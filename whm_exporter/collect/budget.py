"""The load this exporter may put on one WHM server, and how much of it background work may use.

Pure arithmetic on times it is told (no clock of its own), shared by every target naming the
server, so it is tested with a fake clock.

:class:`Budget` is a token bucket of WHM time: it fills at ``rate`` seconds of WHM time per
second of wall time (``load_budget``), every call is charged its expected duration when it
starts and corrected to its real duration when it ends (a 5 s listaccts costs 5 s), and
refreshing what is already known may start only while the bucket holds something. The spam
signal and items never answered are charged too but never wait, so after them the bucket is in
debt; the debt is capped at one ``WINDOW`` of the rate, so that what the budget averages over is
about a minute and a first pass does not stall refreshing for longer than that.

:class:`Backoff` is the concurrency background work may use: it drops when WHM's latency rises
well above its own baseline, or calls time out, fail to connect or get a 5xx (at most once per
``COOLDOWN``), and climbs back one call at a time while WHM is well (one step per ``RECOVERY``),
as adaptive concurrency limiters do (Envoy's gradient controller, Netflix concurrency-limits).
The baseline is each function's own: a listaccts is slower than a mailbox call by nature.
"""

from __future__ import annotations

import math

# Seconds of the budget's rate the bucket may owe: the budget is an average over about this long.
WINDOW = 60.0
# Seconds of the budget's rate it may save while nothing is asked: a short burst after a pause.
BURST = 5.0
# A call's latency over this many times its function's baseline means WHM is struggling.
TOLERANCE = 2.0
# Weight of the newest call in the recent latency (relative to the baseline).
_RECENT = 0.2
# Time constant, in seconds, of a function's baseline: it follows a lasting change in minutes
# and a slow-down only when it lasts (samples count at most TOLERANCE times the baseline).
_BASELINE_SECONDS = 600.0
COOLDOWN = 2.0
RECOVERY = 5.0


class Budget:
    """WHM time one server may spend on this exporter; ``rate`` 0 is no budget."""

    __slots__ = ("_at", "balance", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.balance = rate * BURST
        self._at: float | None = None

    def _fill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self.balance = min(self.rate * BURST, self.balance + self.rate * (now - self._at))
        self._at = now if self._at is None else max(self._at, now)

    def charge(self, seconds: float, now: float) -> None:
        """``seconds`` of WHM time spent (negative: given back, when a call took less than it
        was charged); the debt stops at one window's worth."""
        self._fill(now)
        self.balance = max(-self.rate * WINDOW, self.balance - seconds)

    def allows(self, now: float) -> bool:
        """Whether refreshing may start a call now."""
        if not self.rate:
            return True
        self._fill(now)
        return self.balance > 0

    def wait(self, now: float) -> float:
        """Seconds until :meth:`allows` (0 when it does now)."""
        if self.allows(now):
            return 0.0
        return -self.balance / self.rate


class Backoff:
    """The calls in flight background work may use toward one server, from 1 to ``ceiling``."""

    __slots__ = ("_baseline", "_changed", "ceiling", "limit", "recent")

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        # Each function's usual call time (and when it was last updated), and the recent
        # latency relative to it.
        self._baseline: dict[str, tuple[float, float]] = {}
        self.recent = 1.0
        self._changed = -math.inf

    def observe(self, function: str, seconds: float, now: float, *, struggling: bool) -> None:
        """A call ended after ``seconds``; ``struggling``: it timed out, could not connect or got
        a 5xx, which lowers the limit whatever its latency."""
        if not struggling:
            self._latency(function, seconds, now)
        if struggling or self.recent > TOLERANCE:
            if now - self._changed >= COOLDOWN:
                # The further above the baseline, the deeper the cut, at most by half. At 1
                # already, the trouble still puts off the recovery.
                cut = 0.5 if struggling else max(0.5, TOLERANCE / self.recent)
                self.limit = max(1, math.floor(self.limit * cut))
                self._changed = now
        elif now - self._changed >= RECOVERY and self.limit < self.ceiling:
            self.limit += 1
            self._changed = now

    def _latency(self, function: str, seconds: float, now: float) -> None:
        known = self._baseline.get(function)
        if known is None:
            self._baseline[function] = (seconds, now)
            return
        baseline, at = known
        ratio = seconds / baseline if baseline > 0 else 1.0
        self.recent += _RECENT * (ratio - self.recent)
        weight = 1.0 - math.exp(-max(0.0, now - at) / _BASELINE_SECONDS)
        sample = min(seconds, baseline * TOLERANCE)
        self._baseline[function] = (baseline + weight * (sample - baseline), now)

    def baseline(self, function: str) -> float | None:
        known = self._baseline.get(function)
        return None if known is None else known[0]


class Pace:
    """One server's budget and back-off, and the estimate each running call was charged."""

    __slots__ = ("backoff", "budget", "call_seconds", "refreshing")

    def __init__(self, rate: float, ceiling: int) -> None:
        self.budget = Budget(rate)
        self.backoff = Backoff(ceiling)
        # Refreshing calls in flight toward the server, of every target naming it.
        self.refreshing = 0
        # Mean seconds per call by function: what a call is charged when it starts.
        self.call_seconds: dict[str, float] = {}

    def estimate(self, function: str) -> float:
        return self.call_seconds.get(function, 0.0)

    def started(self, function: str, now: float) -> float:
        """A call begins: charged its expected cost, which is returned to correct it later."""
        cost = self.estimate(function)
        self.budget.charge(cost, now)
        return cost

    def ended(
        self, function: str, charged: float, seconds: float, now: float, *, struggling: bool
    ) -> None:
        """The call charged ``charged`` took ``seconds``."""
        self.budget.charge(seconds - charged, now)
        self.backoff.observe(function, seconds, now, struggling=struggling)
        mean = self.call_seconds.get(function)
        self.call_seconds[function] = seconds if mean is None else mean + 0.05 * (seconds - mean)

    def refresh_allowed(self, now: float) -> bool:
        """Whether a refresh (neither the spam signal nor a first answer) may start now."""
        return self.refreshing < self.backoff.limit and self.budget.allows(now)

    def concurrency(self) -> float:
        """Calls in flight refreshing may keep on average: what a probe expects to fit."""
        limit = float(self.backoff.limit)
        return min(limit, self.budget.rate) if self.budget.rate else limit
