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
well above its own baseline (judged by the median of a window of calls, as Envoy's gradient
controller judges a sampling window), or calls time out, fail to connect or get a 5xx (at most
once per ``COOLDOWN``), and climbs back one call at a time while WHM is well (one step per
``RECOVERY``), as adaptive concurrency limiters do (Envoy, Netflix concurrency-limits). The
baseline is each function's own: a listaccts is slower than a mailbox call by nature. Without a
budget (``load_budget: 0``) neither holds anything back: calls go at ``max_concurrency``.
"""

from __future__ import annotations

import math
import statistics

# Seconds of the budget's rate the bucket may owe: the budget is an average over about this long.
WINDOW = 60.0
# Seconds of the budget's rate it may save while nothing is asked: a short burst after a pause.
BURST = 5.0
# Calls taking over this many times their function's baseline (the median of a window) mean
# WHM is struggling.
TOLERANCE = 2.0
# Latency is judged over windows this long, of at least this many calls; as many calls of a
# function set its first baseline.
WINDOW_SECONDS = 5.0
SAMPLES = 5
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

    __slots__ = (
        "_baseline",
        "_changed",
        "_seeds",
        "_since",
        "_window",
        "ceiling",
        "limit",
        "recent",
    )

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        # Each function's usual call time and when it was last updated; until it has
        # SAMPLES calls, the calls that will set it.
        self._baseline: dict[str, tuple[float, float]] = {}
        self._seeds: dict[str, list[float]] = {}
        # The calls of the current window, each as a multiple of its function's usual time.
        self._window: list[float] = []
        self._since: float | None = None
        # The median of the last window judged.
        self.recent = 1.0
        self._changed = -math.inf

    def observe(self, function: str, seconds: float, now: float, *, struggling: bool) -> None:
        """A call ended after ``seconds``; ``struggling``: it timed out, could not connect or got
        a 5xx, which lowers the limit at once (by half, once per COOLDOWN). Latency is judged
        by window: the median of at least SAMPLES calls over at least WINDOW_SECONDS, so that a
        few slow calls (a stall of this very process, a heavy mailbox) move nothing."""
        if struggling:
            self._cut(0.5, now)
            return
        ratio = self._ratio(function, seconds, now)
        if ratio is None:
            return
        if self._since is None:
            self._since = now
        self._window.append(ratio)
        if now - self._since < WINDOW_SECONDS or len(self._window) < SAMPLES:
            return
        self.recent = statistics.median(self._window)
        self._window.clear()
        self._since = now
        if self.recent > TOLERANCE:
            # The further above the baseline, the deeper the cut, at most by half.
            self._cut(max(0.5, TOLERANCE / self.recent), now)
        elif now - self._changed >= RECOVERY and self.limit < self.ceiling:
            self.limit += 1
            self._changed = now

    def _cut(self, factor: float, now: float) -> None:
        # At 1 already, the trouble still puts off the recovery.
        if now - self._changed >= COOLDOWN:
            self.limit = max(1, math.floor(self.limit * factor))
            self._changed = now

    def _ratio(self, function: str, seconds: float, now: float) -> float | None:
        """The call's time over its function's usual time (None while that is being learned),
        the usual time moving towards it."""
        known = self._baseline.get(function)
        if known is None:
            seeds = self._seeds.setdefault(function, [])
            seeds.append(seconds)
            if len(seeds) >= SAMPLES:
                # A median: one quick draw must not become the norm that all else exceeds.
                self._baseline[function] = (statistics.median(seeds), now)
                del self._seeds[function]
            return None
        baseline, at = known
        weight = 1.0 - math.exp(-max(0.0, now - at) / _BASELINE_SECONDS)
        sample = min(seconds, baseline * TOLERANCE)
        self._baseline[function] = (baseline + weight * (sample - baseline), now)
        return seconds / baseline if baseline > 0 else 1.0

    def baseline(self, function: str) -> float | None:
        known = self._baseline.get(function)
        return None if known is None else known[0]


class Pace:
    """One server's budget and back-off, and the estimate each running call was charged."""

    __slots__ = ("_signal", "backoff", "budget", "call_seconds", "refreshing")

    def __init__(self, rate: float, ceiling: int) -> None:
        self.budget = Budget(rate)
        self.backoff = Backoff(ceiling)
        # Refreshing calls in flight toward the server, of every target naming it.
        self.refreshing = 0
        # WHM time the spam signal spent, decaying over a WINDOW, and when it was last told.
        self._signal = (0.0, -math.inf)
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
        self,
        function: str,
        charged: float,
        seconds: float,
        now: float,
        *,
        struggling: bool,
        signal: bool = False,
    ) -> None:
        """The call charged ``charged`` took ``seconds``; ``signal``: it was the spam signal's,
        which never waits for the budget."""
        if signal:
            self._signal = (self.signal_load(now) * WINDOW + seconds, now)
        self.budget.charge(seconds - charged, now)
        self.backoff.observe(function, seconds, now, struggling=struggling)
        mean = self.call_seconds.get(function)
        self.call_seconds[function] = seconds if mean is None else mean + 0.05 * (seconds - mean)

    def signal_load(self, now: float) -> float:
        """WHM time per second the spam signal spends, over about a WINDOW: what the budget
        has left for refreshing is the rest."""
        spent, at = self._signal  # nothing spent yet: 0 at any time
        return spent * math.exp(-max(0.0, now - at) / WINDOW) / WINDOW

    def refresh_allowed(self, now: float) -> bool:
        """Whether a refresh (neither the spam signal nor a first answer) may start now."""
        if not self.budget.rate:
            return True
        return self.refreshing < self.backoff.limit and self.budget.allows(now)

    def follow_up_allowed(self, now: float) -> bool:
        """Whether the next call of an item asked in several (the mail DNS's batches) may
        start: as a refresh would, its item already one of the calls in flight."""
        if not self.budget.rate:
            return True
        return self.refreshing <= self.backoff.limit and self.budget.allows(now)

    def concurrency(self) -> float:
        """Calls in flight refreshing may keep on average: what a probe expects to fit."""
        if not self.budget.rate:
            return float(self.backoff.ceiling)
        return min(float(self.backoff.limit), self.budget.rate)
